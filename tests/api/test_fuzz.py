"""Fuzzing every RPC through a real channel against a real server.

Each case is one call of raw bytes on a blocking gRPC channel (from a worker
thread, while the server keeps serving on the test's event loop). Cases come
in five families:

* ``raw``: random bytes;
* ``typed``: messages of the RPC's request type with random field values,
  built from the protobuf descriptor (so every field, unknown enum values,
  huge integers, odd strings);
* ``near``: requests that are nearly valid (real box ids, real keys, real
  codes), with one or more parts wrong, too long, too many or malformed;
* ``truncated`` and ``mutated``: a near-valid request cut short, or with
  random bytes flipped, inserted or dropped.

Signed RPCs are mostly called with a correct Hawk header over the exact
(mutated) bytes, so the case gets past Hawk into the handler; the rest go
unsigned, with a garbage or tampered header, signed for another method or
with a stale timestamp.

Every answer must be OK or a status from the RPC's documented set with a
``google.rpc.ErrorInfo`` (domain ``rossby.v1``, a documented reason); never
INTERNAL or UNKNOWN. A signed OK answer carries a valid
``server-authorization`` trailer. Nothing is written by a call that fails:
checked through the store (registrations, boxes, contact claims, the code
outbox, the queues: a box holds exactly the messages answered QUEUED).
After all cases the server still answers health checks and a normal call.

The RPCs outside the six core ones (linking, keys, profile, ...) get the
raw and typed families only, with the same answer rules; Subscribe also gets
near-valid resume points, and its first event (or error) is read.

Case counts are printed (``-s``; ``ROSSBY_FUZZ_REASONS=1`` adds a tally of
reasons) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rossby.client.hawk import HawkSigner
from rossby.contacts import normalize
from rossby.crypto import DeviceKeyPair
from rossby.crypto.keys import key_signature
from rossby.errors import DOMAIN
from rossby.hawk import verify_server_authorization
from rossby.server.notify import read_outbox_code
from rossby.server.sizes import request_limits
from rossby.status import error_info
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import Api
from tests.api.device import SERVICE, Device, email
from tests.serverproc import health_status

T = TypeVar("T", bound=Message)
C = grpc.StatusCode

CORE = ("Register", "Authorize", "RequestKey", "Send", "Fetch", "Ack")
METHODS = pb.DESCRIPTOR.services_by_name["Rossby"].methods_by_name
PUBLIC = frozenset({"Register", "Authorize"})
CASES = {"sqlite": 500, "cassandra": 250}  # per core RPC
OTHER_CASES = {"sqlite": 50, "cassandra": 25}  # per other RPC
TIMEOUT = 20.0
TRANSPORT_LIMIT = 4 * 1024 * 1024  # grpc's default max receive message size
CODE_ATTEMPTS = 10**6  # so wrong-code fuzzing never locks the registrations
STREAMS = 10**4  # Subscribe streams per device

#: Non-OK codes each core RPC may answer (UNAVAILABLE/STORE_UNAVAILABLE is
#: tolerated everywhere: a store under load may time out).
ALLOWED: dict[str, frozenset[grpc.StatusCode]] = {
    "Register": frozenset({C.INVALID_ARGUMENT, C.ALREADY_EXISTS, C.RESOURCE_EXHAUSTED}),
    "Authorize": frozenset(
        {
            C.INVALID_ARGUMENT,
            C.NOT_FOUND,
            C.PERMISSION_DENIED,
            C.FAILED_PRECONDITION,
            C.ALREADY_EXISTS,
        }
    ),
    "RequestKey": frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND, C.UNAUTHENTICATED}),
    "Send": frozenset({C.INVALID_ARGUMENT, C.UNAUTHENTICATED}),
    "Fetch": frozenset({C.INVALID_ARGUMENT, C.UNAUTHENTICATED}),
    "Ack": frozenset({C.INVALID_ARGUMENT, C.UNAUTHENTICATED}),
}
NEVER = frozenset({C.INTERNAL, C.UNKNOWN, C.UNIMPLEMENTED, C.DEADLINE_EXCEEDED})

REGISTER_FAULTS = (
    "pool", "no_contacts", "many_contacts", "bad_email", "bad_phone", "phone", "kind",
    "long_contact", "odd_contact", "duplicate_contact", "taken", "sig_other_device",
    "sig_random", "key_sizes", "low_order", "id_form", "name", "no_keys",
)  # fmt: skip
AUTHORIZE_FAULTS = (
    "digit", "swap", "more_codes", "fewer_codes", "odd_codes", "newline", "long_codes",
    "sig_random", "sig_empty", "sig_other", "unknown_device", "id_form",
)  # fmt: skip
REQUEST_KEY_FAULTS = (
    "mine", "variant", "unknown", "phone", "kind", "odd", "by_box", "both", "box_form", "neither",
)  # fmt: skip
SEND_FAULTS = (
    "unknown_box", "box_form", "id_form", "empty", "max_size", "too_large", "repeat", "none",
    "too_many", "ephemeral",
)  # fmt: skip

U64 = 2**64 - 1
#: Contact kinds: unspecified, and numbers the enum does not know (proto3
#: enums are open, so they parse).
ODD_KINDS = [pb.ContactKind.ValueType(k) for k in (0, 3, 7, -1, 2**31 - 1)]
EDGE_INTS = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, U64)


def documented_reasons() -> frozenset[str]:
    """Every reason in the table of docs/api.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    return frozenset(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))


# -- answers --------------------------------------------------------------------------


@dataclass
class Answer:
    code: grpc.StatusCode
    reason: str = ""
    domain: str = ""
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    family: str
    payload: bytes
    auth: str = "valid"  # signed RPCs: valid|none|garbage|tampered|wrong_method|stale
    header: str = ""  # the garbage header, for auth == "garbage"


def parse(message_type: type[T], payload: bytes) -> T | None:
    try:
        return message_type.FromString(payload)
    except (DecodeError, RuntimeWarning, ValueError):
        return None


def canonical_uuid(value: str) -> uuid.UUID | None:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
    return parsed if str(parsed) == value else None


# -- strategies -------------------------------------------------------------------------

ASCII = st.characters(min_codepoint=32, max_codepoint=126)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(ASCII, max_size=40),
    st.sampled_from(["", " ", "\x00", "\n", "é", "\ud7ff", "💥" * 10, "a" * 300, "A" * 70_000]),
)


def int_field(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (*EDGE_INTS, low, high, -1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, U64),
    FieldDescriptor.TYPE_FIXED64: (0, U64),
}


def scalar(fd: FieldDescriptor, strings: st.SearchStrategy[str], depth: int) -> Any:
    t = fd.type
    if t in INT_RANGES:
        return int_field(*INT_RANGES[t])
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_STRING:
        return strings
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=80), st.sampled_from([b"", bytes(32), b"\xff" * 64, bytes(70_000)])
        )
    if t == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), int_field(-(2**31), 2**31 - 1))
    assert fd.message_type is not None
    return typed_message(fd.message_type, strings, depth + 1)


def typed_message(
    desc: Descriptor, strings: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``desc`` with random contents in every field."""
    cls = GetMessageClass(desc)
    if depth > 3:
        return st.just(cls())
    fields: dict[str, Any] = {}
    for fd in desc.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            continue  # maps: their entries are covered by raw bytes
        one = scalar(fd, strings, depth)
        fields[fd.name] = st.lists(one, max_size=4) if fd.is_repeated else one

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []
        for name in chosen:
            value = draw(fields[name])
            fd = desc.fields_by_name[name]
            if fd.is_repeated:
                target = getattr(message, name)
                for item in value:
                    if fd.message_type is not None:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif fd.message_type is not None:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


def truncations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def cut(draw: st.DrawFn) -> bytes:
        data = draw(valid)
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]

    return cut()


def mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid))
        for _ in range(draw(st.integers(1, 6))):
            op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
            at = draw(st.integers(0, len(data)))
            if op == "insert" or not data:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == "delete":
                del data[min(at, len(data) - 1)]
            elif op == "flip":
                data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
            else:
                data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        return bytes(data)

    return mutate()


def families(near: st.SearchStrategy[bytes], desc: Descriptor, strings: Any) -> Any:
    """Near-valid requests weigh most; the rest splits among the others."""
    typed = typed_message(desc, strings).map(lambda m: m.SerializeToString())
    return st.one_of(
        near.map(lambda p: ("near", p)),
        near.map(lambda p: ("near", p)),
        truncations(near).map(lambda p: ("truncated", p)),
        mutations(near).map(lambda p: ("mutated", p)),
        typed.map(lambda p: ("typed", p)),
        st.binary(max_size=600).map(lambda p: ("raw", p)),
    )


SIGNED_AUTH = st.sampled_from(
    ["valid"] * 6 + ["none", "garbage", "tampered", "wrong_method", "stale", "unknown_id"]
)
GARBAGE_HEADER = st.one_of(
    st.text(ASCII, max_size=120),
    st.text(ASCII, max_size=300).map(lambda t: "Hawk " + t),
    st.sampled_from(['Hawk id="a.b", ts="1", nonce="x", mac="y"', "Bearer x", "Hawk", "x" * 5000]),
)


def cases(near: st.SearchStrategy[bytes], desc: Descriptor, strings: Any, signed: bool) -> Any:
    auth = SIGNED_AUTH if signed else st.sampled_from(["none"] * 4 + ["garbage"])
    return st.builds(
        lambda fp, a, h: Case(fp[0], fp[1], a, h),
        families(near, desc, strings),
        auth,
        GARBAGE_HEADER,
    )


# -- the fuzzer -------------------------------------------------------------------------


class Fuzzer:
    """Runs in a worker thread; reaches the server's loop only for store reads."""

    def __init__(
        self,
        api: Api,
        loop: asyncio.AbstractEventLoop,
        backend: str,
        sender: Device,
        recipient: Device,
        pending: list[Device],
    ) -> None:
        self.api = api
        self.loop = loop
        self.backend = backend
        self.sender = sender
        self.recipient = recipient
        self.pending = pending
        self.channel = grpc.insecure_channel(api.target)
        assert sender.signer is not None and sender.box_id and recipient.box_id
        self.signer = sender.signer
        self.stale = HawkSigner(
            sender.signer.credentials_id,
            sender.hawk_key,
            "127.0.0.1",
            api.server.port,
            clock=lambda: api.clock() - 3600,
        )
        self.stranger = HawkSigner(
            f"{sender.box_id}.{uuid.uuid4()}", os.urandom(32), "127.0.0.1", api.server.port
        )
        self.boxes = (str(sender.box_id), str(recipient.box_id))
        self.reasons = documented_reasons()
        self.size_limits = request_limits(api.server.settings)
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        # Send bookkeeping: (box, message id) -> (ciphertext, position).
        self.queued: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.cursor = 0  # the sender device's cursor, as answered
        self.completed: dict[str, str] = {}  # pending device id -> box id answered
        self.strings = st.one_of(
            ODD_TEXT,
            st.uuids().map(str),
            st.sampled_from([*self.boxes, str(sender.device_id), self.boxes[0].upper()]),
        )

    # -- plumbing ---------------------------------------------------------

    def store(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def metadata(self, method: str, case: Case) -> tuple[list[tuple[str, str]], Any]:
        path = SERVICE + method
        payload = case.payload
        if case.auth == "none":
            return [], None
        if case.auth == "garbage":
            return [("authorization", case.header)], None
        if case.auth == "tampered":
            return self.signer.sign(path, payload + b"\x00"), None
        if case.auth == "wrong_method":
            other = "Fetch" if method != "Fetch" else "Ack"
            return self.signer.sign(SERVICE + other, payload), None
        if case.auth == "stale":
            return self.stale.sign(path, payload), None
        if case.auth == "unknown_id":
            return self.stranger.sign(path, payload), None
        signed = self.signer.sign_request(path, payload)
        return signed.metadata, signed

    def call(self, method: str, case: Case) -> Answer:
        if METHODS[method].server_streaming:
            return self.open_stream(method, case)
        metadata, signed = self.metadata(method, case)
        rpc = self.channel.unary_unary(SERVICE + method)
        try:
            body, call = rpc.with_call(case.payload, metadata=metadata, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            info = error_info(exc)
            answer = Answer(code)
            if info is not None:
                answer.reason, answer.domain = info.reason, info.domain
            return answer
        trailers = {k: v for k, v in call.trailing_metadata() or () if isinstance(v, str)}
        answer = Answer(C.OK, body=body, trailers=trailers)
        if signed is not None:
            header = trailers.get("server-authorization")
            assert header, f"{method}: signed OK answer without server-authorization"
            verify_server_authorization(
                header,
                self.sender.hawk_key,
                ts=signed.ts,
                nonce=signed.nonce,
                resource=SERVICE + method,
                host="127.0.0.1",
                port=self.api.server.port,
                payload=body,
            )
        return answer

    def open_stream(self, method: str, case: Case) -> Answer:
        """Open a server stream and read its first event (or its error)."""
        metadata, _ = self.metadata(method, case)
        stream = self.channel.unary_stream(SERVICE + method)(
            case.payload, metadata=metadata, timeout=TIMEOUT
        )
        try:
            first = next(stream)
        except StopIteration:
            return Answer(C.OK)
        except grpc.RpcError as exc:
            info = error_info(exc)
            answer = Answer(exc.code())
            if info is not None:
                answer.reason, answer.domain = info.reason, info.domain
            return answer
        finally:
            stream.cancel()
        return Answer(C.OK, body=first)

    def judge(self, method: str, case: Case, answer: Answer) -> None:
        where = f"{method} {case.family}/{case.auth} {case.payload[:60]!r}"
        counts = self.counts[method]
        counts["cases"] += 1
        counts[case.family] += 1
        counts[answer.code.name] += 1
        if answer.reason:
            counts[f"reason {answer.reason}"] += 1
        assert answer.code not in NEVER, f"{where}: answered {answer.code.name}"
        if answer.code is C.OK:
            return
        if answer.code is C.RESOURCE_EXHAUSTED and len(case.payload) > TRANSPORT_LIMIT:
            return  # refused by grpc itself before any handler: no ErrorInfo
        assert answer.reason, f"{where}: {answer.code.name} without an ErrorInfo reason"
        assert answer.domain == DOMAIN, f"{where}: ErrorInfo domain {answer.domain!r}"
        if answer.code is C.UNAVAILABLE:
            assert answer.reason == "STORE_UNAVAILABLE", f"{where}: {answer.reason}"
            counts["store_unavailable"] += 1
            return
        if answer.reason == "REQUEST_TOO_LARGE":  # any method, only when it is
            limit = self.size_limits[f"/rossby.v1.Rossby/{method}"]
            assert answer.code is C.RESOURCE_EXHAUSTED and len(case.payload) > limit, where
            return
        if method in ALLOWED:
            assert answer.code in ALLOWED[method], f"{where}: {answer.code.name} {answer.reason}"
            assert answer.reason in self.reasons, f"{where}: undocumented reason {answer.reason}"
            if method not in PUBLIC and case.auth != "valid":
                assert answer.code is C.UNAUTHENTICATED, (
                    f"{where}: a bad Hawk header answered {answer.code.name} {answer.reason}"
                )

    def run(
        self,
        method: str,
        strategy: Any,
        count: int,
        before: Callable[[Case], Any] = lambda case: None,
        after: Callable[[Case, Answer, Any], None] = lambda case, answer, state: None,
    ) -> None:
        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def one(case: Case) -> None:
            state = before(case)
            answer = self.call(method, case)
            self.judge(method, case, answer)
            after(case, answer, state)

        one()

    # -- Register ----------------------------------------------------------

    def register_near(self) -> st.SearchStrategy[bytes]:
        """A valid registration, then up to two faults."""
        taken = self.sender.contacts[0]
        pool = [uuid.UUID(int=n) for n in range(1, 4)]  # reused: resends, DEVICE_EXISTS
        pool_keys = {
            d: DeviceKeyPair.from_private_bytes(d.bytes * 2, d.bytes[::-1] * 2) for d in pool
        }

        @st.composite
        def near(draw: st.DrawFn) -> bytes:
            faults = set(draw(st.lists(st.sampled_from(REGISTER_FAULTS), max_size=2)))
            if "pool" in faults:
                device_id = draw(st.sampled_from(pool))
                keys = pool_keys[device_id]
            else:
                device_id = draw(st.uuids(version=4))
                keys = DeviceKeyPair.from_private_bytes(
                    draw(st.binary(min_size=32, max_size=32)),
                    draw(st.binary(min_size=32, max_size=32)),
                )
            tag = device_id.hex[:12]
            contacts = [
                pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value=f"fz{i}-{tag}@example.com")
                for i in range(draw(st.integers(1, 3)))
            ]
            if "pool" in faults:
                contacts = [pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value=f"pool-{tag}@example.com")]
            first = contacts[0]
            if "no_contacts" in faults:
                contacts = []
            if "many_contacts" in faults:
                contacts += [
                    pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value=f"m{i}-{tag}@example.com")
                    for i in range(4)
                ]
            if "bad_email" in faults:
                first.value = draw(st.sampled_from(["no-at-sign", "a@", "@b", "a b@c.d", "a@b@c"]))
            if "bad_phone" in faults:
                first.kind = pb.CONTACT_KIND_PHONE
                first.value = draw(st.sampled_from(["+1 555", "0", "+999999999999999999", "tel"]))
            if "phone" in faults:
                first.kind = pb.CONTACT_KIND_PHONE
                first.value = f"+1415555{draw(st.integers(0, 9999)):04d}"
            if "kind" in faults:
                first.kind = draw(st.sampled_from(ODD_KINDS))
            if "long_contact" in faults:
                first.value = "x" * 250 + "@example.com"
            if "odd_contact" in faults:
                first.value = draw(ODD_TEXT)
            if "duplicate_contact" in faults:
                contacts.append(pb.Contact(kind=first.kind, value=first.value.upper()))
            if "taken" in faults:
                first.value = draw(st.sampled_from([taken, taken.upper(), f"  {taken} "]))
            pub = keys.public()
            enc, signing, signature = pub.encryption_public, pub.signing_public, b""
            signature = keys.key_signature(device_id)
            if "sig_other_device" in faults:
                signature = keys.key_signature(uuid.uuid4())
            if "sig_random" in faults:
                signature = draw(st.binary(min_size=64, max_size=64))
            if "key_sizes" in faults:
                enc = draw(st.binary(max_size=40))
                signing = draw(st.binary(max_size=40))
                signature = draw(st.binary(max_size=80))
            if "low_order" in faults:
                enc = bytes(32)
                signature = key_signature(keys.signing_private_bytes(), device_id, enc)
            text_id = str(device_id)
            if "id_form" in faults:
                text_id = draw(
                    st.sampled_from(
                        [text_id.upper(), "{" + text_id + "}", text_id.replace("-", ""), "", "x"]
                    )
                )
            name = "phone"
            if "name" in faults:
                name = draw(
                    st.one_of(st.sampled_from(["a" * 65, "tab\t", "nl\n", "é" * 64]), ODD_TEXT)
                )
            request = pb.RegisterRequest(device_id=text_id, contacts=contacts, device_name=name)
            if "no_keys" not in faults:
                request.keys.CopyFrom(
                    pb.DeviceKeys(encryption_key=enc, signing_key=signing, key_signature=signature)
                )
            return request.SerializeToString()

        return near()

    def outbox(self) -> dict[str, int]:
        root = self.api.outbox
        if not root.exists():
            return {}
        return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    def register_before(self, case: Case) -> Any:
        request = parse(pb.RegisterRequest, case.payload)
        device_id = canonical_uuid(request.device_id) if request is not None else None
        existing = self.store(self.api.store.get_registration(device_id)) if device_id else None
        return device_id, existing, self.outbox()

    def register_after(self, case: Case, answer: Answer, state: Any) -> None:
        device_id, before, outbox = state
        if answer.code is C.OK:
            assert device_id is not None
            got = self.store(self.api.store.get_registration(device_id))
            assert got is not None and not got.completed, "Register OK but no registration"
            request = parse(pb.RegisterRequest, case.payload)
            assert request is not None and len(got.contact_hashes) == len(request.contacts)
            return
        # Nothing written: neither the registration nor a code sent.
        if device_id is not None:
            after = self.store(self.api.store.get_registration(device_id))
            assert after == before, f"failed Register ({answer.reason}) changed the registration"
        assert self.outbox() == outbox, f"failed Register ({answer.reason}) sent a code"

    # -- Authorize ---------------------------------------------------------

    def authorize_near(self) -> st.SearchStrategy[bytes]:
        """The right codes and signature for a pending (or the sender's
        completed) registration, then up to two faults."""
        real = {str(d.device_id): d.codes() for d in [*self.pending, self.sender]}
        targets = [*self.pending, self.sender]

        @st.composite
        def near(draw: st.DrawFn) -> bytes:
            faults = set(draw(st.lists(st.sampled_from(AUTHORIZE_FAULTS), max_size=2)))
            target = draw(st.sampled_from(targets))
            codes = list(real[str(target.device_id)])
            if "digit" in faults:
                i = draw(st.integers(0, len(codes) - 1))
                codes[i] = f"{(int(codes[i]) + draw(st.integers(1, 9))) % 10**6:06d}"
            if "swap" in faults:
                codes = codes[::-1]
            if "more_codes" in faults:
                codes.append("123456")
            if "fewer_codes" in faults:
                codes = codes[:-1]
            if "odd_codes" in faults:
                codes = draw(st.lists(ODD_TEXT, min_size=1, max_size=3))
            if "newline" in faults:
                codes = [c + "\n" for c in codes]
            if "long_codes" in faults:
                codes = ["9" * 10_000 for _ in codes]
            signature = b""
            if "\n" not in "".join(codes):
                signature = target.keys.authorize_signature(target.device_id, codes)
            if "sig_random" in faults:
                signature = draw(st.binary(min_size=64, max_size=64))
            if "sig_empty" in faults:
                signature = b""
            if "sig_other" in faults:
                signature = target.keys.authorize_signature(target.device_id, ["1"])
            device_id = str(target.device_id)
            if "unknown_device" in faults:
                device_id = str(draw(st.uuids()))
            if "id_form" in faults:
                device_id = draw(st.sampled_from([device_id.upper(), "", "x", self.boxes[0]]))
            return pb.AuthorizeRequest(
                device_id=device_id, codes=codes, signature=signature
            ).SerializeToString()

        return near()

    def authorize_state(self, device_id: uuid.UUID) -> Any:
        registration = self.store(self.api.store.get_registration(device_id))
        if registration is None:
            return None
        box = self.store(self.api.store.get_box(registration.box_id))
        owners = [self.store(self.api.store.lookup_contact(h)) for h in registration.contact_hashes]
        return registration.box_id, box is not None, owners, registration.completed

    def authorize_before(self, case: Case) -> Any:
        request = parse(pb.AuthorizeRequest, case.payload)
        device_id = canonical_uuid(request.device_id) if request is not None else None
        return device_id, self.authorize_state(device_id) if device_id else None

    def authorize_after(self, case: Case, answer: Answer, state: Any) -> None:
        device_id, before = state
        if answer.code is C.OK:
            assert device_id is not None
            reply = pb.AuthorizeResponse.FromString(answer.body)
            box_id, exists, owners, completed = self.authorize_state(device_id)
            assert exists and completed and reply.box_id == str(box_id)
            assert all(owner == box_id for owner in owners), "Authorize OK, contacts unclaimed"
            # A retried Authorize answers the same box.
            assert self.completed.setdefault(str(device_id), reply.box_id) == reply.box_id
            return
        if device_id is None or before is None:
            return
        _, existed, owners, completed = before
        _, exists, owners_after, completed_after = self.authorize_state(device_id)
        if answer.reason != "CONTACT_TAKEN":  # that one leaves an unreachable box (docs/api.md)
            assert exists == existed, f"failed Authorize ({answer.reason}) created the box"
        assert owners_after == owners, f"failed Authorize ({answer.reason}) claimed contacts"
        assert completed_after == completed

    # -- RequestKey -----------------------------------------------------------

    def request_key_near(self) -> st.SearchStrategy[bytes]:
        """A lookup of the recipient by e-mail, then up to two faults."""
        mine, theirs = self.sender.contacts[0], self.recipient.contacts[0]

        @st.composite
        def near(draw: st.DrawFn) -> bytes:
            faults = set(draw(st.lists(st.sampled_from(REQUEST_KEY_FAULTS), max_size=2)))
            contact = pb.Contact(kind=pb.CONTACT_KIND_EMAIL, value=theirs)
            box_id = ""
            if "mine" in faults:
                contact.value = mine
            if "variant" in faults:
                contact.value = draw(st.sampled_from([theirs.upper(), f" {theirs}\t"]))
            if "unknown" in faults:
                contact.value = f"nobody-{draw(st.uuids()).hex[:8]}@example.com"
            if "phone" in faults:
                contact.kind, contact.value = pb.CONTACT_KIND_PHONE, "+14155550100"
            if "kind" in faults:
                contact.kind = draw(st.sampled_from(ODD_KINDS))
            if "odd" in faults:
                contact.value = draw(ODD_TEXT)
            if "by_box" in faults or "both" in faults:
                box_id = draw(st.sampled_from(self.boxes))
            if "box_form" in faults:
                box_id = draw(st.sampled_from([self.boxes[1].upper(), "x", str(uuid.uuid4())]))
            request = pb.RequestKeyRequest(box_id=box_id)
            if not ({"by_box", "box_form", "neither"} & faults) or "both" in faults:
                request.contact.CopyFrom(contact)
            return request.SerializeToString()

        return near()

    def request_key_after(self, case: Case, answer: Answer, state: Any) -> None:
        if answer.code is C.OK:
            reply = pb.RequestKeyResponse.FromString(answer.body)
            assert reply.box_id in self.boxes, "RequestKey answered a box nobody asked for"
            assert reply.devices, "RequestKey answered a box without devices"

    # -- Send -----------------------------------------------------------------

    def send_near(self) -> st.SearchStrategy[bytes]:
        """One to three messages to real boxes, then up to two faults."""
        pool = [str(uuid.uuid4()) for _ in range(6)]  # reused ids: DUPLICATE answers
        recipient = st.sampled_from([self.boxes[1], self.boxes[1], self.boxes[1], self.boxes[0]])

        @st.composite
        def near(draw: st.DrawFn) -> bytes:
            faults = set(draw(st.lists(st.sampled_from(SEND_FAULTS), max_size=2)))
            messages = [
                pb.OutgoingMessage(
                    recipient_box_id=draw(recipient),
                    message_id=draw(st.one_of(st.uuids().map(str), st.sampled_from(pool))),
                    ciphertext=draw(st.binary(min_size=1, max_size=200)),
                )
                for _ in range(draw(st.integers(1, 3)))
            ]
            first = messages[0]
            if "unknown_box" in faults:
                first.recipient_box_id = str(draw(st.uuids()))
            if "box_form" in faults:
                first.recipient_box_id = draw(
                    st.sampled_from([self.boxes[1].upper(), "", "x", self.boxes[1][:-1]])
                )
            if "id_form" in faults:
                first.message_id = draw(st.sampled_from([pool[0].upper(), "", "1", pool[0] + " "]))
            if "empty" in faults:
                first.ciphertext = b""
            if "max_size" in faults:
                first.ciphertext = os.urandom(65_536)
            if "too_large" in faults:
                first.ciphertext = bytes(65_537)
            if "repeat" in faults:
                messages.append(pb.OutgoingMessage())
                messages[-1].CopyFrom(first)
            if "none" in faults:
                messages = []
            if "too_many" in faults:  # refused whole before anything is written
                messages = [
                    pb.OutgoingMessage(
                        recipient_box_id=self.boxes[1],
                        message_id=str(uuid.uuid4()),
                        ciphertext=b"m",
                    )
                    for _ in range(1001)
                ]
            return pb.SendRequest(
                messages=messages, ephemeral="ephemeral" in faults
            ).SerializeToString()

        return near()

    def send_after(self, case: Case, answer: Answer, state: Any) -> None:
        if answer.code is not C.OK:
            return  # the final queue comparison proves nothing was written
        request = parse(pb.SendRequest, case.payload)
        assert request is not None, "Send answered OK to bytes that do not parse"
        reply = pb.SendResponse.FromString(answer.body)
        assert len(reply.results) == len(request.messages)
        for m, r in zip(request.messages, reply.results, strict=True):
            assert (r.recipient_box_id, r.message_id) == (m.recipient_box_id, m.message_id)
            key = (m.recipient_box_id, m.message_id)
            if r.outcome == pb.SEND_OUTCOME_QUEUED:
                assert not request.ephemeral, "an ephemeral message was queued"
                assert key not in self.queued, f"{key} queued twice"
                self.queued[key] = (bytes(m.ciphertext), r.position)
            elif r.outcome == pb.SEND_OUTCOME_DUPLICATE:
                assert not request.ephemeral
                assert key in self.queued, f"DUPLICATE for {key}, never queued"
                assert self.queued[key][1] == r.position, "a duplicate moved"
            elif r.outcome == pb.SEND_OUTCOME_EPHEMERAL:
                assert request.ephemeral, "EPHEMERAL outcome for a stored send"
            else:
                assert r.outcome == pb.SEND_OUTCOME_REJECTED, f"outcome {r.outcome}"
                assert r.reason in self.reasons and r.code != 0, (r.code, r.reason)
                if m.recipient_box_id in self.boxes:
                    raise AssertionError(f"send to a real box rejected: {r.reason}")

    # -- Fetch and Ack ----------------------------------------------------------

    def position(self) -> st.SearchStrategy[int]:
        """Positions that exist now, edges and anything. Fixed when built:
        a strategy must not depend on state that changes between cases."""
        known = sorted({p for (_, p) in self.queued.values()} | {self.cursor, 1})
        return st.one_of(st.sampled_from(EDGE_INTS), st.sampled_from(known), st.integers(0, U64))

    def fetch_near(self) -> st.SearchStrategy[bytes]:
        limit = st.one_of(st.sampled_from([0, 1, 100, 500, 501, 2**32 - 1]), st.integers(0, 1000))
        return st.builds(
            lambda a, n: pb.FetchRequest(after=a, limit=n).SerializeToString(),
            self.position(),
            limit,
        )

    def fetch_after(self, case: Case, answer: Answer, state: Any) -> None:
        if answer.code is not C.OK:
            return
        request = parse(pb.FetchRequest, case.payload)
        assert request is not None
        reply = pb.FetchResponse.FromString(answer.body)
        assert len(reply.messages) <= (request.limit or 100)
        positions = [m.position for m in reply.messages]
        assert positions == sorted(set(positions)), "Fetch out of order"
        assert reply.cursor >= self.cursor, "the cursor went back"
        for m in reply.messages:
            key = (self.boxes[0], m.message_id)
            assert key in self.queued, f"Fetch returned {key}, never queued"
            assert self.queued[key] == (m.ciphertext, m.position)

    def ack_near(self) -> st.SearchStrategy[bytes]:
        return self.position().map(lambda t: pb.AckRequest(through=t).SerializeToString())

    def ack_after(self, case: Case, answer: Answer, state: Any) -> None:
        if answer.code is not C.OK:
            return
        request = parse(pb.AckRequest, case.payload)
        assert request is not None
        cursor = pb.AckResponse.FromString(answer.body).cursor
        assert cursor >= self.cursor, f"ack moved the cursor back: {self.cursor} -> {cursor}"
        assert cursor <= max(self.cursor, request.through), "ack passed its position"
        self.cursor = cursor

    # -- the run ----------------------------------------------------------------

    def strategy(self, method: str, near: st.SearchStrategy[bytes]) -> Any:
        desc = pb.DESCRIPTOR.services_by_name["Rossby"].methods_by_name[method].input_type
        return cases(near, desc, self.strings, signed=method not in PUBLIC)

    def core(self, n: int) -> None:
        self.run(
            "Register",
            self.strategy("Register", self.register_near()),
            n,
            self.register_before,
            self.register_after,
        )
        self.run(
            "Authorize",
            self.strategy("Authorize", self.authorize_near()),
            n,
            self.authorize_before,
            self.authorize_after,
        )
        self.run(
            "RequestKey",
            self.strategy("RequestKey", self.request_key_near()),
            n,
            after=self.request_key_after,
        )
        self.run("Send", self.strategy("Send", self.send_near()), n, after=self.send_after)
        self.run("Fetch", self.strategy("Fetch", self.fetch_near()), n, after=self.fetch_after)
        self.run("Ack", self.strategy("Ack", self.ack_near()), n, after=self.ack_after)

    def others(self, n: int) -> None:
        # Real box ids, but not the calling device's own id: a device may
        # legitimately revoke itself or rotate its keys, which would end the run.
        strings = st.one_of(
            ODD_TEXT, st.uuids().map(str), st.sampled_from([*self.boxes, self.boxes[0].upper()])
        )
        for method in METHODS.values():
            if method.name in CORE or method.client_streaming:
                continue
            typed = typed_message(method.input_type, strings)
            family = st.one_of(
                typed.map(lambda m: ("typed", m.SerializeToString())),
                typed.map(lambda m: ("typed", m.SerializeToString())),
                st.binary(max_size=300).map(lambda p: ("raw", p)),
            )
            families = [family]
            if method.name == "Subscribe":  # resume points, as for Fetch
                families.append(self.subscribe_near().map(lambda p: ("near", p)))
            for one in families:
                strategy = st.builds(
                    lambda fp, a, h: Case(fp[0], fp[1], a, h),
                    one,
                    st.sampled_from(["valid", "valid", "valid", "none"]),
                    GARBAGE_HEADER,
                )
                self.run(method.name, strategy, n)

    def subscribe_near(self) -> st.SearchStrategy[bytes]:
        limit = st.sampled_from([0, 1, 100, 500, 501, 2**32 - 1])
        return st.builds(
            lambda a, n: pb.SubscribeRequest(after=a, limit=n).SerializeToString(),
            self.position(),
            limit,
        )

    def oversized(self) -> None:
        """Past the transport limit, and just under it, on every core RPC."""
        for method in CORE:
            for size in (TRANSPORT_LIMIT - 1024, TRANSPORT_LIMIT + 1024):
                payload = pb.SendRequest(
                    messages=[
                        pb.OutgoingMessage(
                            recipient_box_id=self.boxes[1],
                            message_id=str(uuid.uuid4()),
                            ciphertext=bytes(size),
                        )
                    ]
                ).SerializeToString()
                case = Case("oversized", payload, "valid" if method not in PUBLIC else "none")
                answer = self.call(method, case)
                self.judge(method, case, answer)
                if method == "Send" and answer.code is C.OK:
                    raise AssertionError("a 4 MiB ciphertext was accepted")

    def queue(self, device: Device) -> dict[str, tuple[bytes, int]]:
        """Every message of the device's box from its cursor on, by id."""
        assert device.box_id is not None
        found: dict[str, tuple[bytes, int]] = {}
        after = 0
        while True:
            page = self.store(
                self.api.store.fetch(device.box_id, device.device_id, after=after, limit=500)
            )
            for m in page.messages:
                found.setdefault(str(m.message_id), (m.ciphertext, m.position))
            if not page.more:
                return found
            after = page.messages[-1].position

    def summary(self) -> list[str]:
        lines = []
        for method, c in self.counts.items():
            codes = " ".join(f"{k}={v}" for k, v in sorted(c.items()) if k.isupper() and k != "OK")
            fams = " ".join(
                f"{k}={c[k]}"
                for k in ("near", "truncated", "mutated", "typed", "raw", "oversized")
                if c[k]
            )
            lines.append(
                f"fuzz[{self.backend}] {method}: {c['cases']} cases ({fams}); OK={c['OK']} {codes}"
            )
            if os.environ.get("ROSSBY_FUZZ_REASONS"):
                reasons = sorted((k[7:], v) for k, v in c.items() if k.startswith("reason "))
                lines.append("    " + " ".join(f"{k}={v}" for k, v in reasons))
        return lines


async def test_fuzz_every_rpc(
    make_api: Callable[..., Any], backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    # Limits raised so fuzzing reaches deeper code: wrong codes never lock a
    # registration, opened-then-cancelled streams never hit STREAM_LIMIT, and
    # one device sending and changing its account as fast as it can is not
    # rate-limited (those limits have their own tests: test_send_limits.py).
    # Nor are thousands of Register/Authorize cases from one address
    # (test_abuse_limits.py); the per-contact code limit stays on, fuzzed too.
    api: Api = await make_api(
        code_attempts=CODE_ATTEMPTS,
        stream_limit=STREAMS,
        send_rate_per_device=0,
        account_rate_per_device=0,
        register_rate_per_address=0,
        authorize_failures_per_address=0,
    )
    sender = await Device(api, email("fuzz-sender")).join()
    recipient = await Device(api, email("fuzz-recipient")).join()
    pending = [Device(api, email(f"fuzz-pending{i}"), email(f"fuzz-alt{i}")) for i in range(3)]
    for device in pending:
        await device.register()
    fuzzer = Fuzzer(api, asyncio.get_running_loop(), backend, sender, recipient, pending)
    fuzzer.cursor = (await sender.fetch()).cursor  # the head when it joined (not 0 on Cassandra)
    try:
        await asyncio.to_thread(fuzzer.core, CASES[backend])
        await asyncio.to_thread(fuzzer.oversized)

        # Nothing partial: the recipient's box (whose device never acks)
        # holds exactly the messages answered QUEUED; the sender's own box
        # (acked and compacted by the Ack cases) holds nothing else.
        got = await asyncio.to_thread(fuzzer.queue, recipient)
        want = {mid: v for (box, mid), v in fuzzer.queued.items() if box == fuzzer.boxes[1]}
        assert got == want, (
            f"recipient queue: {len(set(got) - set(want))} unexpected, "
            f"{len(set(want) - set(got))} missing"
        )
        mine = await asyncio.to_thread(fuzzer.queue, sender)
        for mid, value in mine.items():
            assert fuzzer.queued.get((fuzzer.boxes[0], mid)) == value, f"unexpected {mid}"
        # Registrations that never authorized did not get a box.
        for device in pending:
            if str(device.device_id) not in fuzzer.completed:
                registration = await api.store.get_registration(device.device_id)
                assert registration is not None
                assert await api.store.get_box(registration.box_id) is None
                normalized = normalize("email", device.contacts[0])
                assert read_outbox_code(api.outbox, normalized) is not None

        await asyncio.to_thread(fuzzer.others, OTHER_CASES[backend])
        # The server is still up and serving real calls.
        status = await asyncio.to_thread(health_status, api.target)
        assert status == health_pb2.HealthCheckResponse.SERVING
        await sender.fetch()
    finally:
        fuzzer.channel.close()
        lines = fuzzer.summary()
        total = sum(c["cases"] for c in fuzzer.counts.values())
        lines.append(
            f"fuzz[{backend}]: {total} cases, {time.monotonic() - started:.1f}s,"
            f" {len(fuzzer.queued)} messages queued"
        )
        with capsys.disabled():
            print("\n" + "\n".join(lines))
