"""Register and RequestKey are no oracles of who is registered (issue 16,
finding 5), through a real channel on each backend.

* Register answers a registered, a pending and a free contact the same way
  and sends each its code; only the holder of the code learns, at
  Authorize, that the contact belongs to a box. Re-registering one pending
  device id with candidate contacts answers DEVICE_EXISTS whatever they are.
* RequestKey answers an unknown, a hidden (not discoverable) and a blocked
  box with the same status, reason, message and metadata, after the same
  store reads (the timing is measured in bench/requestkey_timing.py; no
  timed assertions here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from rossby.contacts import normalize
from rossby.server.notify import read_outbox_code
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import Device, email, reason
from tests.api.test_abuse_limits import outbox
from tests.api.test_accounts import set_rule, update_profile


async def answer(call: Awaitable[object]) -> tuple[Any, ...]:
    """Everything a client sees of an answer: status, reason, message,
    metadata, or the response bytes."""
    try:
        reply = await call
    except grpc.aio.AioRpcError as err:
        info = error_info(err)
        metadata = dict(info.metadata) if info is not None else {}
        return (err.code(), reason(err), err.details(), metadata)
    assert hasattr(reply, "SerializeToString")
    return ("OK", reply.SerializeToString())


def code_for(api: Api, value: str) -> str | None:
    return read_outbox_code(api.outbox, normalize("email", value))


async def test_register_answers_alike_for_registered_pending_and_free(api: Api) -> None:
    registered, pending, free = email("registered"), email("pending"), email("free")
    await Device(api, registered).join()
    await Device(api, pending).register()  # someone else's registration, not authorized
    before = outbox(api)
    probes = {c: Device(api, c) for c in (registered, pending, free)}
    answers = {c: await answer(d.register()) for c, d in probes.items()}
    assert answers[registered] == answers[pending] == answers[free], answers
    assert answers[free][0] == "OK"
    after = outbox(api)
    changed = [path for path, body in after.items() if before.get(path) != body]
    for c in (registered, pending, free):  # a fresh code went to each
        assert any(c in path for path in changed), (c, changed)
        assert code_for(api, c) is not None
    # The device-id variant of the probe: a pending device id re-registered
    # with candidate contacts answers the same for each.
    prober = Device(api, email("prober"))
    await prober.register()
    redo = {}
    for c in (registered, pending, free):
        prober.contacts = [c]
        redo[c] = await answer(prober.register())
    assert redo[registered] == redo[pending] == redo[free], redo
    assert redo[free][:2] == (grpc.StatusCode.ALREADY_EXISTS, "DEVICE_EXISTS")


async def test_only_the_code_holder_learns_the_contact_is_taken(api: Api) -> None:
    taken = email("owner")
    owner = await Device(api, taken).join()
    again = Device(api, taken, name="new phone")
    await again.register()
    # A wrong code answers as for any registration.
    right = again.codes()[0]
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    free = Device(api, email("free"))
    await free.register()
    miss_taken = await answer(again.authorize([wrong]))
    miss_free = await answer(free.authorize([wrong if wrong != free.codes()[0] else right]))
    assert miss_taken == miss_free and miss_taken[1] == "CODE_INVALID"
    # The right code: CONTACT_TAKEN, and nothing changed for the owner.
    took = await answer(again.authorize([right]))
    assert took[:2] == (grpc.StatusCode.ALREADY_EXISTS, "CONTACT_TAKEN")
    assert "link" in took[2]
    found = await owner.request_key(taken)
    assert found.box_id == str(owner.box_id) and len(found.devices) == 1


class Reads:
    """The real store, recording which methods were called (for the
    constant-work check; every call still reaches the store)."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self._inner = inner
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._log.append(name)
            return attr(*args, **kwargs)

        return call


async def test_request_key_answers_unknown_hidden_and_blocked_alike(
    api: Api, tmp_path: Path
) -> None:
    caller = await Device(api, email("caller")).join()
    hidden = await Device(api, email("hidden")).join()
    blocker = await Device(api, email("blocker")).join()
    await update_profile(hidden, discoverable=False)
    await set_rule(blocker, caller.box_id, pb.SENDER_RULE_BLOCKED)
    unknown = email("nobody")
    service = api.server.service
    assert service is not None and service.inbox.accounts is not None
    inbox, accounts = service.inbox, service.inbox.accounts
    log: list[str] = []
    # Recording proxies stand in for the store and the account store (every call passes on).
    inbox.store = Reads(inbox.store, log)  # type: ignore[assignment]
    accounts.accounts = Reads(accounts.accounts, log)  # type: ignore[assignment]
    seen: dict[str, tuple[tuple[Any, ...], list[str]]] = {}
    probe: Callable[[str], Awaitable[object]] = caller.request_key
    for case, value in (
        ("unknown", unknown),
        ("hidden", hidden.contacts[0]),
        ("blocked", blocker.contacts[0]),
    ):
        log.clear()
        got = await answer(probe(value))
        seen[case] = (got, sorted(log))
    assert seen["unknown"][0] == seen["hidden"][0] == seen["blocked"][0], seen
    assert seen["unknown"][0][:2] == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    assert seen["unknown"][1] == seen["hidden"][1] == seen["blocked"][1], seen
