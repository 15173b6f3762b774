"""Every error path of the API answers a typed status with a stable reason,
and writes nothing partial."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid

import grpc

from rossby.client.hawk import HawkSigner
from rossby.crypto import DeviceKeyPair
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api, MakeApi
from tests.api.device import SERVICE, Device, contact, email, reason
from tests.support.grpc_errors import expect, refused

C = grpc.StatusCode


async def raw(
    api: Api, method: str, payload: bytes, metadata: list[tuple[str, str]] | None = None
) -> bytes:
    call = api.channel.unary_unary(
        SERVICE + method, request_serializer=None, response_deserializer=None
    )
    return await call(payload, metadata=metadata or [], timeout=30)  # type: ignore[no-any-return]  # grpc is untyped


# -- Register -----------------------------------------------------------------


async def test_register_rejects_malformed_input(api: Api) -> None:
    dev = Device(api, email("x"))
    good = dev.register_request()

    def variant(**changes: object) -> pb.RegisterRequest:
        r = pb.RegisterRequest()
        r.CopyFrom(good)
        for k, v in changes.items():
            if k == "contacts":
                assert isinstance(v, list)
                del r.contacts[:]
                r.contacts.extend(v)
            elif k == "keys":
                assert isinstance(v, pb.DeviceKeys)
                r.keys.CopyFrom(v)
            else:
                setattr(r, k, v)
        return r

    bad_sig = pb.DeviceKeys()
    bad_sig.CopyFrom(good.keys)
    bad_sig.key_signature = bytes(64)
    short_key = pb.DeviceKeys()
    short_key.CopyFrom(good.keys)
    short_key.encryption_key = b"\x01" * 31
    other_device = DeviceKeyPair.generate()
    foreign_sig = pb.DeviceKeys()
    foreign_sig.CopyFrom(good.keys)
    foreign_sig.key_signature = other_device.key_signature(dev.device_id)
    cases = [
        (variant(device_id="not-a-uuid"), "MALFORMED_ID"),
        (variant(device_id=str(dev.device_id).upper()), "MALFORMED_ID"),
        (variant(contacts=[]), "TOO_FEW"),
        (variant(contacts=[contact(email(f"c{i}")) for i in range(4)]), "TOO_MANY"),
        (
            variant(contacts=[pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value="no-at-sign")]),
            "CONTACT_INVALID_EMAIL",
        ),
        (
            variant(contacts=[pb.Contact(kind=pb.CONTACT_KIND_PHONE, value="+1 555")]),
            "CONTACT_INVALID_PHONE",
        ),
        (variant(contacts=[pb.Contact(value="a@b.co")]), "CONTACT_KIND_UNSPECIFIED"),
        (
            variant(contacts=[contact("Same@Example.com"), contact("same@example.com")]),
            "DUPLICATE_CONTACT",
        ),
        (variant(keys=bad_sig), "KEY_SIGNATURE_INVALID"),
        (variant(keys=foreign_sig), "KEY_SIGNATURE_INVALID"),
        (variant(keys=short_key), "KEYS_INVALID"),
        (variant(device_name="x" * 65), "DEVICE_NAME_INVALID"),
    ]
    for request, why in cases:
        await expect(C.INVALID_ARGUMENT, why, dev.public("Register", request, pb.RegisterResponse))
    assert list(api.outbox.glob("*.json")) == []  # nothing was sent for any of them


async def test_register_garbage_bytes_is_invalid_argument(api: Api) -> None:
    await expect(C.INVALID_ARGUMENT, "INVALID_ARGUMENT", raw(api, "Register", b"\xff\xff\xff"))


async def test_contact_taken_is_already_exists_once_the_code_is_proven(api: Api) -> None:
    taken = email("taken")
    await Device(api, taken).join()
    second = Device(api, taken)
    await second.register()  # answered like a free contact (docs/security.md)
    right = second.codes()[0]
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    await expect(C.PERMISSION_DENIED, "CODE_INVALID", second.authorize([wrong]))
    await expect(C.ALREADY_EXISTS, "CONTACT_TAKEN", second.authorize([right]))
    registration = await api.store.get_registration(second.device_id)
    assert registration is not None and not registration.completed
    assert await api.store.get_box(registration.box_id) is None  # no box was made


async def test_resend_is_rate_limited(make_api: MakeApi) -> None:
    api = await make_api(resend_interval=3600)
    dev = Device(api, email("resend"))
    await dev.register()
    first = await api.store.get_registration(dev.device_id)
    refusal = await refused(dev.register(), "RATE_LIMITED")
    assert int(refusal["retry_after_seconds"]) <= 3600  # within the interval, never past it
    assert await api.store.get_registration(dev.device_id) == first  # nothing was re-sent
    api.clock.advance(3601)
    await dev.register()
    again = await api.store.get_registration(dev.device_id)
    # Fresh codes went out (the code itself may repeat by chance), and the
    # one now in the outbox works.
    assert again is not None and first is not None
    assert again.sent_at >= first.sent_at + 3600
    await dev.authorize()


async def test_same_device_id_with_other_keys_is_refused(api: Api) -> None:
    dev = Device(api, email("dup"))
    await dev.register()
    impostor = Device(api, *dev.contacts)
    impostor.device_id = dev.device_id
    await expect(C.ALREADY_EXISTS, "DEVICE_EXISTS", impostor.register())


# -- Authorize ----------------------------------------------------------------


async def test_authorize_unknown_device(api: Api) -> None:
    dev = Device(api, email("ghost"))
    await expect(C.NOT_FOUND, "REGISTRATION_NOT_FOUND", dev.authorize(["123456"]))


async def test_wrong_code_then_brute_force_stops_at_five(api: Api) -> None:
    dev = Device(api, email("brute"))
    await dev.register()
    right = dev.codes()[0]
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        err = await expect(C.PERMISSION_DENIED, "CODE_INVALID", dev.authorize([wrong]))
        info = error_info(err)
        assert info is not None and info.metadata["attempts_left"] == str(left)
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", dev.authorize([wrong]))
    # Even the right code is refused now: a new registration is needed.
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", dev.authorize([right]))


async def test_concurrent_brute_force_is_counted_exactly(api: Api) -> None:
    dev = Device(api, email("burst"))
    await dev.register()
    right = dev.codes()[0]
    wrongs = [f"{(int(right) + i) % 10**6:06d}" for i in range(1, 21)]
    results = await asyncio.gather(*(dev.authorize([w]) for w in wrongs), return_exceptions=True)
    assert all(isinstance(r, grpc.aio.AioRpcError) for r in results)
    denied = [
        r
        for r in results
        if isinstance(r, grpc.aio.AioRpcError) and r.code() == C.PERMISSION_DENIED
    ]
    assert len(denied) <= 5  # never more than the limit of wrong guesses are compared
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", dev.authorize([right]))


async def test_expired_code(api: Api) -> None:
    dev = Device(api, email("late"))
    await dev.register()
    codes = dev.codes()
    api.clock.advance(601)
    await expect(C.FAILED_PRECONDITION, "CODE_EXPIRED", dev.authorize(codes))


async def test_authorize_needs_proof_of_the_signing_key(api: Api) -> None:
    dev = Device(api, email("proof"))
    await dev.register()
    codes = dev.codes()
    forged = pb.AuthorizeRequest(
        device_id=str(dev.device_id),
        codes=codes,
        signature=DeviceKeyPair.generate().authorize_signature(dev.device_id, codes),
    )
    await expect(
        C.PERMISSION_DENIED, "BAD_SIGNATURE", dev.public("Authorize", forged, pb.AuthorizeResponse)
    )
    await expect(C.INVALID_ARGUMENT, "CODE_COUNT", dev.authorize([*codes, "000000"]))


async def test_racing_registrations_for_one_contact_have_one_winner(api: Api) -> None:
    shared = email("race")
    devices = [Device(api, shared) for _ in range(2)]
    await devices[0].register()
    code0 = devices[0].codes()
    await devices[1].register()
    code1 = devices[1].codes()
    results = await asyncio.gather(
        devices[0].authorize(code0), devices[1].authorize(code1), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, pb.AuthorizeResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 1
    assert (losers[0].code(), reason(losers[0])) == (C.ALREADY_EXISTS, "CONTACT_TAKEN")


# -- Hawk -----------------------------------------------------------------------


def fetch_bytes() -> bytes:
    return pb.FetchRequest(limit=5).SerializeToString()


async def test_hawk_missing_header(api: Api) -> None:
    await expect(C.UNAUTHENTICATED, "HAWK_MISSING", raw(api, "Fetch", fetch_bytes()))


async def test_hawk_replay_is_refused(api: Api) -> None:
    dev = await Device(api, email("replay")).join()
    assert dev.signer is not None
    payload = fetch_bytes()
    metadata = dev.signer.sign(SERVICE + "Fetch", payload)
    await raw(api, "Fetch", payload, metadata)
    await expect(C.UNAUTHENTICATED, "HAWK_REPLAY", raw(api, "Fetch", payload, metadata))


async def test_hawk_stale_timestamp_carries_server_time(api: Api) -> None:
    dev = await Device(api, email("skew")).join()
    assert dev.signer is not None
    skewed = HawkSigner(
        dev.signer.credentials_id,
        dev.hawk_key,
        "127.0.0.1",
        api.server.port,
        clock=lambda: time.time() - 120,
    )
    payload = fetch_bytes()
    err = await expect(
        C.UNAUTHENTICATED,
        "HAWK_STALE",
        raw(api, "Fetch", payload, skewed.sign(SERVICE + "Fetch", payload)),
    )

    info = error_info(err)
    assert info is not None and abs(int(info.metadata["ts"]) - time.time()) < 5
    # The SDK's signer verifies tsm, corrects its clock and succeeds.
    dev.signer = skewed
    await dev.fetch()
    assert 110 < skewed.offset < 130


async def test_hawk_tampered_payload(api: Api) -> None:
    dev = await Device(api, email("tamper")).join()
    assert dev.signer is not None
    metadata = dev.signer.sign(SERVICE + "Fetch", fetch_bytes())
    other = pb.FetchRequest(limit=6).SerializeToString()
    await expect(C.UNAUTHENTICATED, "HAWK_BAD_PAYLOAD_HASH", raw(api, "Fetch", other, metadata))


async def test_hawk_signed_for_another_method(api: Api) -> None:
    dev = await Device(api, email("method")).join()
    assert dev.signer is not None
    payload = pb.AckRequest(through=1).SerializeToString()
    metadata = dev.signer.sign(SERVICE + "Fetch", payload)
    await expect(C.UNAUTHENTICATED, "HAWK_BAD_MAC", raw(api, "Ack", payload, metadata))


async def test_hawk_wrong_key(api: Api) -> None:
    dev = await Device(api, email("wrongkey")).join()
    assert dev.signer is not None
    dev.signer = HawkSigner(
        dev.signer.credentials_id, secrets.token_bytes(32), "127.0.0.1", api.server.port
    )
    await expect(C.UNAUTHENTICATED, "HAWK_BAD_MAC", dev.fetch())


async def test_hawk_unknown_device(api: Api) -> None:
    dev = await Device(api, email("unknown")).join()
    dev.signer = HawkSigner(
        f"{dev.box_id}.{uuid.uuid4()}", dev.hawk_key, "127.0.0.1", api.server.port
    )
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", dev.fetch())


async def test_a_device_cannot_read_another_box(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    await alice.send((bob.box_id, b"for bob only", None))
    # Alice names Bob's box in her Hawk id, signing with her own key.
    alice.signer = HawkSigner(
        f"{bob.box_id}.{alice.device_id}", alice.hawk_key, "127.0.0.1", api.server.port
    )
    await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", alice.fetch())
    assert [m.ciphertext for m in (await bob.fetch()).messages] == [b"for bob only"]


# -- Send / Fetch ---------------------------------------------------------------


async def test_send_validation_fails_whole_and_writes_nothing(make_api: MakeApi) -> None:
    api = await make_api(max_recipients=3, max_message_bytes=100)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    mid = uuid.uuid4()
    cases: list[tuple[list[tuple[uuid.UUID | str, bytes, uuid.UUID | None]], str]] = [
        ([(bob.box_id, b"ok", None), (bob.box_id, b"x" * 101, None)], "MESSAGE_TOO_LARGE"),
        ([(bob.box_id, b"ok", None), ("nope", b"x", None)], "MALFORMED_ID"),
        ([(bob.box_id, b"", None)], "EMPTY_MESSAGE"),
        ([(bob.box_id, b"a", mid), (bob.box_id, b"b", mid)], "DUPLICATE_MESSAGE"),
        ([(bob.box_id, b"a", None)] * 4, "TOO_MANY"),
        ([], "TOO_FEW"),
    ]
    for items, why in cases:
        await expect(C.INVALID_ARGUMENT, why, alice.send(*items))
    assert (await bob.fetch()).messages == []
    await expect(C.INVALID_ARGUMENT, "TOO_MANY", bob.fetch(limit=501))


async def test_pending_cap_rejects_and_drops_nothing(make_api: MakeApi) -> None:
    api = await make_api(pending_cap=3)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    for i in range(3):
        reply = await alice.send((bob.box_id, f"m{i}".encode(), None))
        assert reply.results[0].outcome == pb.SEND_OUTCOME_QUEUED
    over = await alice.send((bob.box_id, b"m3", None))
    assert (over.results[0].outcome, over.results[0].code, over.results[0].reason) == (
        pb.SEND_OUTCOME_REJECTED,
        8,
        "PENDING_CAP",
    )  # google.rpc.Code.RESOURCE_EXHAUSTED
    assert [m.ciphertext for m in await bob.drain()] == [b"m0", b"m1", b"m2"]


async def test_request_key_for_unknown_contact_is_not_found(api: Api) -> None:
    dev = await Device(api, email("asker")).join()
    await expect(C.NOT_FOUND, "NOT_FOUND", dev.request_key(email("nobody")))
    await expect(C.INVALID_ARGUMENT, "CONTACT_INVALID_EMAIL", dev.request_key("not an email@"))


async def test_request_key_by_box_id(api: Api) -> None:
    bob_contact = email("bob")
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, bob_contact).join()
    by_id = await alice.call(
        "RequestKey", pb.RequestKeyRequest(box_id=str(bob.box_id)), pb.RequestKeyResponse
    )
    assert by_id == await alice.request_key(bob_contact)
    cases = [
        (pb.RequestKeyRequest(), C.INVALID_ARGUMENT, "TARGET_REQUIRED"),
        (
            pb.RequestKeyRequest(contact=contact(bob_contact), box_id=str(bob.box_id)),
            C.INVALID_ARGUMENT,
            "TARGET_REQUIRED",
        ),
        (pb.RequestKeyRequest(box_id="nope"), C.INVALID_ARGUMENT, "MALFORMED_ID"),
        (pb.RequestKeyRequest(box_id=str(uuid.uuid4())), C.NOT_FOUND, "NOT_FOUND"),
    ]
    for request, code, why in cases:
        await expect(code, why, alice.call("RequestKey", request, pb.RequestKeyResponse))


async def test_a_full_size_group_send_passes_the_transport(make_api: MakeApi) -> None:
    # 80 recipients x 64 KiB = 5 MiB, above gRPC's default 4 MiB request cap.
    api = await make_api(max_recipients=80)
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    body = b"x" * 65_536
    reply = await alice.send(*[(bob.box_id, body, None) for _ in range(80)])
    assert [r.outcome for r in reply.results] == [pb.SEND_OUTCOME_QUEUED] * 80


async def test_page_token_beyond_int64_is_harmless(api: Api) -> None:
    dev = await Device(api, email("big")).join()
    page = await dev.fetch(after=2**64 - 1)
    assert list(page.messages) == [] and not page.more
