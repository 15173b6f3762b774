"""rossby.crypto: round trips, every-byte tampering, truncation, and the committed vectors.

The tamper and truncation tests walk every offset rather than sampling: the
formats are a few hundred bytes, and "one opaque error, never another
exception" is only believable if no offset is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import struct
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

import rossby.crypto
from rossby.crypto import (
    MAX_RECIPIENTS,
    DeviceKeyfile,
    DeviceKeyPair,
    HawkCredentials,
    InvalidEnvelope,
    InvalidSealed,
    KeyfileError,
    OpenedMessage,
    PublicDeviceKeys,
    RecipientDevice,
    SenderIdentity,
    authorize_signature,
    credentials_aad,
    decode_keyfile,
    encode_keyfile,
    envelope_size,
    key_signature,
    open_envelope,
    peek_header,
    read_keyfile,
    rewrite_cost,
    safety_number,
    scrypt_n_of,
    seal,
    seal_envelope,
    unseal,
    verify_authorize_signature,
    verify_key_signature,
    write_keyfile,
)
from rossby.crypto.envelope import SIGN_LABEL
from rossby.crypto.keyfile import DEFAULT_SCRYPT_N
from rossby.v1 import rossby_pb2

ROOT = Path(__file__).resolve().parent.parent
VECTORS = json.loads((ROOT / "tests" / "vectors" / "envelope_v1.json").read_text())
TEST_N = 2**10  # scrypt cost for tests; the default (2**17) is exercised once


class ScriptedRng:
    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)

    def __call__(self, n: int) -> bytes:
        out = self.answers.pop(0)
        assert len(out) == n
        return out


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass
class Device:
    box: uuid.UUID
    id: uuid.UUID
    keys: DeviceKeyPair

    def recipient(self) -> RecipientDevice:
        return RecipientDevice(self.id, self.keys.encryption_public_bytes)

    def sender(self) -> SenderIdentity:
        return SenderIdentity(self.box, self.id, self.keys.signing_private)


class World:
    """Box A (a1 sends, a2), box B (b1, b2, b3), box C (c1, an outsider)."""

    def __init__(self) -> None:
        self.box_a, self.box_b, self.box_c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        mk = DeviceKeyPair.generate
        self.a1 = Device(self.box_a, uuid.uuid4(), mk())
        self.a2 = Device(self.box_a, uuid.uuid4(), mk())
        self.b1 = Device(self.box_b, uuid.uuid4(), mk())
        self.b2 = Device(self.box_b, uuid.uuid4(), mk())
        self.b3 = Device(self.box_b, uuid.uuid4(), mk())
        self.c1 = Device(self.box_c, uuid.uuid4(), mk())
        self.all = [self.a1, self.a2, self.b1, self.b2, self.b3, self.c1]

    def lookup(self, box: uuid.UUID, device: uuid.UUID) -> Ed25519PublicKey | None:
        for d in self.all:
            if (d.box, d.id) == (box, device):
                return d.keys.signing_public
        return None

    def send(self, body: bytes = b"hello", kind: str = "text", **kw: Any) -> bytes:
        """a1 -> box B, readable by b1, b2 and a2 (not b3: say it was linked later)."""
        readers = [self.b1, self.b2, self.a2]
        return seal_envelope(
            self.a1.sender(),
            self.box_b,
            [d.recipient() for d in readers],
            uuid.uuid4(),
            kind,
            body,
            **kw,
        )

    def open(
        self, data: bytes, dev: Device, box: uuid.UUID | None = None, lookup: Any = None
    ) -> OpenedMessage:
        return open_envelope(
            data,
            my_device_id=dev.id,
            my_encryption_private=dev.keys.encryption_private,
            expected_recipient_box=dev.box if box is None else box,
            sender_lookup=lookup or self.lookup,
        )


@pytest.fixture
def w() -> World:
    return World()


def flips(data: bytes) -> list[bytes]:
    """``data`` with one byte changed, for every offset (two patterns each)."""
    out = []
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            b = bytearray(data)
            b[i] ^= mask
            out.append(bytes(b))
    return out


def assert_only(exc: type[Exception], fn: Callable[[bytes], object], inputs: list[bytes]) -> None:
    for data in inputs:
        with pytest.raises(exc):
            fn(data)


# --------------------------------------------------------------------------- exports


def test_all_is_explicit_and_resolves() -> None:
    assert sorted(rossby.crypto.__all__) == sorted(set(rossby.crypto.__all__))
    for name in rossby.crypto.__all__:
        assert hasattr(rossby.crypto, name), name
    public = {n for n in dir(rossby.crypto) if not n.startswith("_")}
    submodules = {
        "envelope",
        "envelope_v2",
        "errors",
        "keyfile",
        "keylog",
        "keys",
        "link",
        "pqxdh",
        "prekeys",
        "ratchet",
        "safety",
        "sealed",
        "annotations",
    }
    assert public - submodules == set(rossby.crypto.__all__)


def test_errors_share_one_root() -> None:
    for exc in (InvalidEnvelope, InvalidSealed, KeyfileError, rossby.crypto.InvalidBundle):
        assert issubclass(exc, rossby.crypto.CryptoError)


# --------------------------------------------------------------------------- keys


def test_device_key_pair_round_trips_through_raw_bytes() -> None:
    keys = DeviceKeyPair.generate()
    again = DeviceKeyPair.from_private_bytes(
        keys.encryption_private_bytes(), keys.signing_private_bytes()
    )
    assert again.public() == keys.public()
    assert len(keys.encryption_public_bytes) == len(keys.signing_public_bytes) == 32
    assert keys.encryption_private_bytes().hex() not in repr(keys)
    assert keys.signing_private_bytes().hex() not in repr(keys)
    with pytest.raises(ValueError):
        DeviceKeyPair.from_private_bytes(b"\x01" * 31, b"\x02" * 32)


def test_generate_draws_from_injected_rng() -> None:
    a = DeviceKeyPair.generate(rng=ScriptedRng(b"\x01" * 32, b"\x02" * 32))
    b = DeviceKeyPair.from_private_bytes(b"\x01" * 32, b"\x02" * 32)
    assert a.public() == b.public()
    with pytest.raises(ValueError):
        DeviceKeyPair.generate(rng=lambda n: b"short")


def test_key_signature_binds_device_and_key() -> None:
    keys, other = DeviceKeyPair.generate(), DeviceKeyPair.generate()
    device = uuid.uuid4()
    sig = keys.key_signature(device)
    assert sig == key_signature(keys.signing_private, device, keys.encryption_public_bytes)
    assert len(sig) == 64
    ok = verify_key_signature
    assert ok(keys.signing_public_bytes, device, keys.encryption_public_bytes, sig)
    assert ok(keys.signing_public, device, keys.encryption_public, sig)
    assert not ok(keys.signing_public_bytes, uuid.uuid4(), keys.encryption_public_bytes, sig)
    assert not ok(keys.signing_public_bytes, device, other.encryption_public_bytes, sig)
    assert not ok(other.signing_public_bytes, device, keys.encryption_public_bytes, sig)
    assert not ok(keys.signing_public_bytes, device, keys.encryption_public_bytes, sig[:63])
    assert not ok(b"\x00" * 31, device, keys.encryption_public_bytes, sig)
    assert not ok(keys.signing_public_bytes, device, b"\x00" * 33, sig)
    for bad in flips(sig):
        assert not ok(keys.signing_public_bytes, device, keys.encryption_public_bytes, bad)


def test_key_signature_signs_the_documented_string() -> None:
    keys, device = DeviceKeyPair.generate(), uuid.uuid4()
    message = b"rossby/v1/device-keys\x00" + device.bytes + keys.encryption_public_bytes
    keys.signing_public.verify(keys.key_signature(device), message)


def test_authorize_signature_binds_codes_in_order() -> None:
    keys, device = DeviceKeyPair.generate(), uuid.uuid4()
    codes = ["123456", "654321"]
    sig = authorize_signature(keys.signing_private, device, codes)
    assert sig == keys.authorize_signature(device, codes)
    keys.signing_public.verify(sig, b"rossby/v1/authorize\x00" + device.bytes + b"123456\n654321")
    pub = keys.signing_public_bytes
    assert verify_authorize_signature(pub, device, codes, sig)
    assert not verify_authorize_signature(pub, device, list(reversed(codes)), sig)
    assert not verify_authorize_signature(pub, device, ["123456"], sig)
    assert not verify_authorize_signature(pub, uuid.uuid4(), codes, sig)
    assert not verify_authorize_signature(pub, device, codes, b"\x00" * 64)


def test_authorize_refuses_codes_that_would_collide() -> None:
    keys, device = DeviceKeyPair.generate(), uuid.uuid4()
    with pytest.raises(ValueError):
        authorize_signature(keys.signing_private, device, ["12\n34"])
    with pytest.raises(TypeError):
        authorize_signature(keys.signing_private, device, "123456")
    sig = authorize_signature(keys.signing_private, device, ["12", "34"])
    assert not verify_authorize_signature(keys.signing_public, device, ["12\n34"], sig)


# --------------------------------------------------------------------------- sealed


def test_sealed_round_trip_and_binding() -> None:
    keys, other = DeviceKeyPair.generate(), DeviceKeyPair.generate()
    device = uuid.uuid4()
    box = seal(keys.encryption_public_bytes, b"credentials", aad=credentials_aad(device))
    assert len(box) == len(b"credentials") + 49
    assert unseal(keys.encryption_private, box, aad=credentials_aad(device)) == b"credentials"
    assert unseal(keys.encryption_private_bytes(), box, aad=credentials_aad(device))
    with pytest.raises(InvalidSealed):
        unseal(keys.encryption_private, box, aad=credentials_aad(uuid.uuid4()))
    with pytest.raises(InvalidSealed):
        unseal(keys.encryption_private, box)
    with pytest.raises(InvalidSealed):
        unseal(other.encryption_private, box, aad=credentials_aad(device))
    assert unseal(keys.encryption_private, seal(keys.encryption_public, b"")) == b""
    assert seal(keys.encryption_public, b"x") != seal(keys.encryption_public, b"x")


def test_sealed_every_tamper_and_truncation_is_opaque() -> None:
    keys = DeviceKeyPair.generate()
    box = seal(keys.encryption_public_bytes, b"some credentials", aad=b"ctx")

    def op(data: bytes) -> object:
        return unseal(keys.encryption_private, data, aad=b"ctx")

    assert_only(InvalidSealed, op, flips(box))
    assert_only(InvalidSealed, op, [box[:n] for n in range(len(box))])
    assert_only(InvalidSealed, op, [box + b"\x00", b"\x02" + box[1:]])
    # A low-order ephemeral point (all-zero shared secret) is just another failure.
    assert_only(InvalidSealed, op, [b"\x01" + bytes(32) + box[33:]])


def test_seal_refuses_a_low_order_recipient_key() -> None:
    with pytest.raises(ValueError):
        seal(bytes(32), b"x")


# --------------------------------------------------------------------------- envelope


def test_envelope_opens_on_every_listed_device(w: World) -> None:
    env = w.send(b"hi all", now_ms=1_767_225_600_000)
    header = peek_header(env)
    for dev in (w.b1, w.b2):
        msg = w.open(env, dev)
        assert (msg.kind, msg.body, msg.sent_at_ms) == ("text", b"hi all", 1_767_225_600_000)
        assert (msg.sender_box, msg.sender_device) == (w.box_a, w.a1.id)
        assert msg.recipient_box == w.box_b
        assert msg.message_id == header.message_id
    # The sender's other device reads the sync copy from its own box's queue.
    assert w.open(env, w.a2, box=w.box_a).body == b"hi all"


def test_peek_header_reveals_routing_only(w: World) -> None:
    mid = uuid.uuid4()
    env = seal_envelope(
        w.a1.sender(),
        w.box_b,
        [w.b2.recipient(), w.b1.recipient()],
        mid,
        "text",
        b"plaintext-marker",
        now_ms=7,
    )
    h = peek_header(env)
    assert (h.version, h.sender_box, h.sender_device) == (1, w.box_a, w.a1.id)
    assert (h.recipient_box, h.message_id, h.sent_at_ms) == (w.box_b, mid, 7)
    assert h.recipient_devices == tuple(sorted([w.b1.id, w.b2.id], key=lambda u: u.bytes))
    assert b"plaintext-marker" not in env  # the body is not in clear
    with pytest.raises(InvalidEnvelope):
        peek_header(env[:100])


def test_unlisted_devices_cannot_open(w: World) -> None:
    env = w.send()
    for dev in (w.b3, w.c1, w.a1):
        with pytest.raises(InvalidEnvelope):
            w.open(env, dev, box=w.box_b)
    # Claiming a listed id without its private key does not help.
    with pytest.raises(InvalidEnvelope):
        open_envelope(
            env,
            my_device_id=w.b1.id,
            my_encryption_private=w.b3.keys.encryption_private,
            expected_recipient_box=w.box_b,
            sender_lookup=w.lookup,
        )


def test_wrong_expected_box_is_rejected(w: World) -> None:
    """An envelope replayed into another box's queue is refused there."""
    env = w.send()
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1, box=w.box_c)
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1, box=uuid.uuid4())


def test_signature_by_another_key_is_rejected(w: World) -> None:
    env = w.send()
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1, lookup=lambda box, dev: w.c1.keys.signing_public)
    # Re-signed by someone else while still claiming to be a1.
    forged = env[:-64] + w.c1.keys.signing_private.sign(SIGN_LABEL + env[:-64])
    with pytest.raises(InvalidEnvelope):
        w.open(forged, w.b1)


def test_sender_spoofing_is_rejected(w: World) -> None:
    """c1 writes an envelope that claims to come from a1: its own key cannot vouch for it."""
    spoof = SenderIdentity(w.box_a, w.a1.id, w.c1.keys.signing_private)
    env = seal_envelope(spoof, w.box_b, [w.b1.recipient()], uuid.uuid4(), "text", b"pay c1")
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1)


def test_unknown_sender_is_rejected_and_lookup_errors_propagate(w: World) -> None:
    env = w.send()
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1, lookup=lambda box, dev: None)
    with pytest.raises(InvalidEnvelope):
        w.open(env, w.b1, lookup=lambda box, dev: b"\x00" * 31)

    def down(box: uuid.UUID, dev: uuid.UUID) -> bytes | None:
        raise ConnectionError("keystore down")

    with pytest.raises(ConnectionError):
        w.open(env, w.b1, lookup=down)


def test_lookup_is_asked_for_the_claimed_sender(w: World) -> None:
    env = w.send()
    asked: list[tuple[uuid.UUID, uuid.UUID]] = []

    def lookup(box: uuid.UUID, dev: uuid.UUID) -> bytes:
        asked.append((box, dev))
        return w.a1.keys.signing_public_bytes

    w.open(env, w.b1, lookup=lookup)
    assert asked == [(w.box_a, w.a1.id)]


def test_every_flipped_byte_is_invalid_envelope(w: World) -> None:
    env = w.send(b"tamper me", kind="receipt")
    assert_only(InvalidEnvelope, lambda d: w.open(d, w.b2), flips(env))


def test_every_truncation_and_extension_is_invalid_envelope(w: World) -> None:
    env = w.send(b"cut me")
    cuts = [env[:n] for n in range(len(env))] + [env[1:], env + b"\x00", env + env]
    assert_only(InvalidEnvelope, lambda d: w.open(d, w.b1), cuts)
    assert_only(InvalidEnvelope, peek_header, [env[:n] for n in range(107 + 64)])


def test_non_bytes_input_is_invalid_envelope(w: World) -> None:
    with pytest.raises(InvalidEnvelope):
        w.open(bytearray(w.send()), w.b1)  # type: ignore[arg-type]  # the point: not bytes


def _forge(
    w: World,
    content_key: bytes,
    plaintext: bytes | None = None,
    table: Callable[[bytes], bytes] | None = None,
    **kw: Any,
) -> bytes:
    """An envelope re-built and re-signed by a1 itself, to reach the checks past the signature."""
    env = w.send(b"x", rng=ScriptedRng(os.urandom(32), content_key), **kw)
    n = struct.unpack_from(">H", env, 105)[0]
    fixed, tbl = env[:107], env[107 : 107 + 64 * n]
    if table is not None:
        tbl = table(tbl)
    body = env[107 + 64 * n : -64]
    if plaintext is not None:
        body = ChaCha20Poly1305(content_key).encrypt(bytes(12), plaintext, fixed + tbl)
    signed = fixed + tbl + body
    return signed + w.a1.keys.signing_private.sign(SIGN_LABEL + signed)


def test_forged_but_signed_structures_are_still_invalid(w: World) -> None:
    """Even the genuine sender cannot get non-canonical bytes past the parser."""
    key = os.urandom(32)
    assert w.open(_forge(w, key), w.b1).body == b"x"

    def pt(kind: bytes, body: bytes, pad: bytes) -> bytes:
        return bytes([len(kind)]) + kind + struct.pack(">I", len(body)) + body + pad

    ok_pad = bytes(64 - len(pt(b"text", b"x", b"")))
    assert w.open(_forge(w, key, pt(b"text", b"x", ok_pad)), w.b1).body == b"x"
    bad = [
        pt(b"text", b"x", ok_pad[:-1] + b"\x01"),  # non-zero padding
        pt(b"text", b"x", ok_pad[:-1]),  # not a multiple of 64
        pt(b"text", b"x", ok_pad + bytes(64)),  # more padding than needed
        pt(b"Text", b"x", ok_pad),  # kind outside the alphabet
        pt(b"", b"x", bytes(58)),  # empty kind
        bytes([33]) + b"t" * 63,  # kind longer than 32 bytes
        pt(b"text", b"", b"")[:-4] + struct.pack(">I", 1000) + bytes(55),  # body past the end
        b"",
    ]
    for plaintext in bad:
        with pytest.raises(InvalidEnvelope):
            w.open(_forge(w, key, plaintext), w.b1)

    def swap(tbl: bytes) -> bytes:  # unsorted recipient table
        return tbl[64:128] + tbl[:64] + tbl[128:]

    with pytest.raises(InvalidEnvelope):
        w.open(_forge(w, key, table=swap), w.b1)

    def dup(tbl: bytes) -> bytes:  # one device listed twice
        return tbl[:64] + tbl[:64] + tbl[128:]

    with pytest.raises(InvalidEnvelope):
        w.open(_forge(w, key, table=dup), w.b1)


def test_seal_rejects_misuse(w: World) -> None:
    def send(recipients: list[RecipientDevice], kind: str = "text") -> bytes:
        return seal_envelope(w.a1.sender(), w.box_b, recipients, uuid.uuid4(), kind, b"")

    with pytest.raises(ValueError):
        send([])
    with pytest.raises(ValueError):
        send([w.b1.recipient(), w.b1.recipient()])
    with pytest.raises(ValueError, match="own recipient"):
        send([w.b1.recipient(), w.a1.recipient()])
    with pytest.raises(ValueError):
        send([RecipientDevice(uuid.uuid4(), bytes(32))])  # low-order point
    with pytest.raises(ValueError):
        send([RecipientDevice(uuid.uuid4(), b"short")])
    for kind in ("", "Text", "tëxt", "1text", "a" * 33, "text message"):
        with pytest.raises(ValueError):
            send([w.b1.recipient()], kind)
    key = w.b1.keys.encryption_public_bytes
    too_many = [RecipientDevice(uuid.uuid4(), key) for _ in range(MAX_RECIPIENTS + 1)]
    with pytest.raises(ValueError):
        send(too_many)
    with pytest.raises(ValueError):
        w.send(now_ms=-1)


def test_max_recipients_is_allowed(w: World) -> None:
    key = DeviceKeyPair.generate()
    ids = [uuid.uuid4() for _ in range(MAX_RECIPIENTS - 1)] + [w.b1.id]
    recipients = [RecipientDevice(i, key.encryption_public) for i in ids[:-1]]
    recipients.append(w.b1.recipient())
    env = seal_envelope(w.a1.sender(), w.box_b, recipients, uuid.uuid4(), "text", b"all")
    assert len(env) == envelope_size(MAX_RECIPIENTS, "text", 3)
    assert w.open(env, w.b1).body == b"all"
    # Two devices sharing one X25519 key still get distinct wrap keys.
    shared = DeviceKeyPair.generate()
    d1, d2 = uuid.uuid4(), uuid.uuid4()
    env = seal_envelope(
        w.a1.sender(),
        w.box_b,
        [
            RecipientDevice(d1, shared.encryption_public),
            RecipientDevice(d2, shared.encryption_public),
        ],
        uuid.uuid4(),
        "text",
        b"twins",
    )
    tbl = env[107 : 107 + 128]
    assert tbl[16:64] != tbl[80:128]


def test_recipient_order_does_not_matter(w: World) -> None:
    mid, rng_bytes = uuid.uuid4(), (os.urandom(32), os.urandom(32))
    outs = {
        seal_envelope(
            w.a1.sender(),
            w.box_b,
            [d.recipient() for d in order],
            mid,
            "text",
            b"same",
            now_ms=1,
            rng=ScriptedRng(*rng_bytes),
        )
        for order in ([w.b1, w.b2, w.a2], [w.a2, w.b2, w.b1], [w.b2, w.a2, w.b1])
    }
    assert len(outs) == 1


@pytest.mark.parametrize("size", [0, 1, 55, 56, 57, 119, 120, 4096, 60000])
def test_envelope_size_and_padding(w: World, size: int) -> None:
    env = w.send(b"\xaa" * size)
    assert len(env) == envelope_size(3, "text", size)
    assert (len(env) - 107 - 3 * 64 - 16 - 64) % 64 == 0
    assert w.open(env, w.b1).body == b"\xaa" * size


def test_note_to_self_reads_in_own_box(w: World) -> None:
    env = seal_envelope(
        w.a1.sender(), w.box_a, [w.a2.recipient()], uuid.uuid4(), "note", b"remember"
    )
    assert w.open(env, w.a2).body == b"remember"


@settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=600),
    kind=st.from_regex(r"[a-z][a-z0-9._-]{0,31}", fullmatch=True),
    now_ms=st.integers(min_value=0, max_value=2**64 - 1),
)
def test_envelope_round_trip_property(body: bytes, kind: str, now_ms: int) -> None:
    w = World()
    env = w.send(body, kind=kind, now_ms=now_ms)
    msg = w.open(env, w.b2)
    assert (msg.kind, msg.body, msg.sent_at_ms) == (kind, body, now_ms)
    assert len(env) == envelope_size(3, kind, len(body))


# --------------------------------------------------------------------------- keyfile


def _keyfile(full: bool = True) -> DeviceKeyfile:
    if not full:
        return DeviceKeyfile(uuid.uuid4(), DeviceKeyPair.generate())
    return DeviceKeyfile(
        device_id=uuid.uuid4(),
        keys=DeviceKeyPair.generate(),
        box_id=uuid.uuid4(),
        hawk=HawkCredentials("box.device", os.urandom(32)),
        server="127.0.0.1:1205",
        home_region="dc1",
    )


def _same(a: DeviceKeyfile, b: DeviceKeyfile) -> None:
    assert (a.device_id, a.box_id, a.hawk, a.server, a.home_region) == (
        b.device_id,
        b.box_id,
        b.hawk,
        b.server,
        b.home_region,
    )
    assert a.keys.encryption_private_bytes() == b.keys.encryption_private_bytes()
    assert a.keys.signing_private_bytes() == b.keys.signing_private_bytes()


@pytest.mark.parametrize("full", [True, False])
def test_keyfile_round_trip(tmp_path: Path, full: bool) -> None:
    kf = _keyfile(full)
    path = tmp_path / "device.key"
    write_keyfile(path, kf, "hunter2", scrypt_n=TEST_N)
    _same(read_keyfile(path, "hunter2"), kf)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kf.keys.signing_private_bytes() not in path.read_bytes()
    assert kf.hawk is None or kf.hawk.key.hex() not in repr(kf)


def test_keyfile_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_keyfile(tmp_path / "k", _keyfile(), "pw", scrypt_n=TEST_N)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_keyfile_rewrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "k"
    first, second = _keyfile(), _keyfile()
    write_keyfile(path, first, "pw", scrypt_n=TEST_N)
    path.chmod(0o644)  # a rewrite must not inherit loosened permissions
    write_keyfile(path, second, "pw", scrypt_n=TEST_N)
    _same(read_keyfile(path, "pw"), second)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temp files left


def test_keyfile_wrong_passphrase_and_damage_are_one_error(tmp_path: Path) -> None:
    data = encode_keyfile(_keyfile(), "right", scrypt_n=TEST_N)
    with pytest.raises(KeyfileError):
        decode_keyfile(data, "wrong")
    with pytest.raises(KeyfileError):
        decode_keyfile(data, b"")

    def op(d: bytes) -> object:
        return decode_keyfile(d, "right")

    # Header bytes (incl. cost, salt, nonce), then a sample of the ciphertext.
    tampered = flips(data)
    assert_only(KeyfileError, op, tampered[: 2 * 36] + tampered[2 * 36 :: 37])
    assert_only(KeyfileError, op, [data[:n] for n in range(0, len(data), 7)] + [data + b"\x00"])
    with pytest.raises(FileNotFoundError):
        read_keyfile(tmp_path / "missing", "right")


def test_keyfile_refuses_crafted_costs_without_computing_them() -> None:
    data = bytearray(encode_keyfile(_keyfile(), "pw", scrypt_n=TEST_N))
    data[5] = 40  # 2**40 * 8 * 128 bytes of scrypt memory
    with pytest.raises(KeyfileError):
        decode_keyfile(bytes(data), "pw")
    data[5], data[7] = 10, 0  # p = 0
    with pytest.raises(KeyfileError):
        decode_keyfile(bytes(data), "pw")


def test_keyfile_parameters_live_in_the_header() -> None:
    kf = _keyfile()
    data = encode_keyfile(kf, "pw", scrypt_n=2**11)
    assert data[:5] == b"RSKF\x01" and data[5:8] == bytes([11, 8, 1])
    assert scrypt_n_of(data) == 2**11
    with pytest.raises(KeyfileError):
        scrypt_n_of(b"nope")
    for n in (3, 1, 0, 2**30):
        with pytest.raises(ValueError):
            encode_keyfile(kf, "pw", scrypt_n=n)


def test_keyfile_default_cost() -> None:
    kf = _keyfile(full=False)
    data = encode_keyfile(kf, "pw")
    assert scrypt_n_of(data) == 2**17
    assert data[5:8] == bytes([17, 8, 1])
    _same(decode_keyfile(data, "pw"), kf)


def test_a_rewrite_raises_a_cheaper_file_to_the_minimum_and_never_lowers_one() -> None:
    kf = _keyfile(full=False)
    old = encode_keyfile(kf, "pw", scrypt_n=2**10)
    assert rewrite_cost(old, 2**11) == 2**11
    assert rewrite_cost(encode_keyfile(kf, "pw", scrypt_n=2**12), 2**11) == 2**12
    assert rewrite_cost(old) == DEFAULT_SCRYPT_N == 2**17


def test_keyfile_passphrase_is_normalised() -> None:
    kf = _keyfile(full=False)
    composed = unicodedata.normalize("NFC", "crème brûlée")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    data = encode_keyfile(kf, composed, scrypt_n=TEST_N)
    _same(decode_keyfile(data, decomposed), kf)


# --------------------------------------------------------------------------- safety numbers


def _pubs(n: int) -> list[PublicDeviceKeys]:
    return [DeviceKeyPair.generate().public() for _ in range(n)]


def test_safety_number_is_the_same_on_both_sides() -> None:
    box_a, box_b = uuid.uuid4(), uuid.uuid4()
    devs_a, devs_b = _pubs(2), _pubs(3)
    mine = safety_number(box_a, devs_a, box_b, devs_b)
    theirs = safety_number(box_b, list(reversed(devs_b)), box_a, list(reversed(devs_a)))
    assert mine == theirs
    assert len(mine.digits) == 60 and mine.digits.isdigit()
    assert len(mine.groups) == 12 and all(len(g) == 5 for g in mine.groups)
    assert str(mine) == " ".join(mine.groups)
    assert len(mine.qr_payload) == 65 and mine.qr_payload[0] == 0x01
    assert mine.matches(theirs.qr_payload)
    # Duplicates in a server's listing do not change the number.
    assert safety_number(box_a, devs_a + devs_a[:1], box_b, devs_b) == mine


def test_safety_number_changes_with_any_device_key() -> None:
    box_a, box_b = uuid.uuid4(), uuid.uuid4()
    devs_a, devs_b = _pubs(2), _pubs(3)
    base = safety_number(box_a, devs_a, box_b, devs_b)
    new = DeviceKeyPair.generate().public()
    variants = [
        (devs_a, [*devs_b[:2], new]),  # a device replaced
        (devs_a, [*devs_b, new]),  # a device added behind B's back
        (devs_a, devs_b[:2]),  # a device removed
        ([devs_a[0], PublicDeviceKeys(new.encryption_public, devs_a[1].signing_public)], devs_b),
        ([devs_a[0], PublicDeviceKeys(devs_a[1].encryption_public, new.signing_public)], devs_b),
    ]
    for va, vb in variants:
        other = safety_number(box_a, va, box_b, vb)
        assert other.digits != base.digits
        assert not base.matches(other.qr_payload)
    assert safety_number(uuid.uuid4(), devs_a, box_b, devs_b).digits != base.digits
    # Only the changed party's half moves.
    changed = safety_number(box_a, devs_a, box_b, [*devs_b[:2], new])
    low_is_a = box_a.bytes < box_b.bytes
    same_half = slice(0, 30) if low_is_a else slice(30, 60)
    assert changed.digits[same_half] == base.digits[same_half]


def test_safety_number_rejects_empty_or_malformed() -> None:
    with pytest.raises(ValueError):
        safety_number(uuid.uuid4(), [], uuid.uuid4(), _pubs(1))
    with pytest.raises(ValueError):
        safety_number(uuid.uuid4(), [PublicDeviceKeys(b"x", b"y")], uuid.uuid4(), _pubs(1))


# --------------------------------------------------------------------------- committed vectors


def _vec_keys(name: str) -> DeviceKeyPair:
    d = VECTORS["devices"][name]
    return DeviceKeyPair.from_private_bytes(
        bytes.fromhex(d["encryption_private"]), bytes.fromhex(d["signing_private"])
    )


def _vec_id(name: str) -> uuid.UUID:
    return uuid.UUID(VECTORS["devices"][name]["device_id"])


def test_vectors_devices() -> None:
    for name, d in VECTORS["devices"].items():
        keys = _vec_keys(name)
        assert keys.encryption_public_bytes.hex() == d["encryption_public"]
        assert keys.signing_public_bytes.hex() == d["signing_public"]


def test_vectors_signatures() -> None:
    v = VECTORS["signatures"]
    keys, device = _vec_keys(v["device"]), uuid.UUID(v["device_id"])
    assert keys.key_signature(device).hex() == v["key_signature"]
    assert keys.authorize_signature(device, v["codes"]).hex() == v["authorize_signature"]


def test_vectors_sealed_credentials() -> None:
    v = VECTORS["sealed"]
    keys = _vec_keys(v["recipient"])
    aad = bytes.fromhex(v["aad"])
    assert aad == credentials_aad(_vec_id(v["recipient"]))
    out = seal(
        keys.encryption_public_bytes,
        bytes.fromhex(v["plaintext"]),
        aad=aad,
        rng=ScriptedRng(bytes.fromhex(v["ephemeral_private"])),
    )
    assert out.hex() == v["sealed"]
    plain = unseal(keys.encryption_private, bytes.fromhex(v["sealed"]), aad=aad)
    creds = rossby_pb2.HawkCredentials.FromString(plain)
    assert (creds.id, creds.algorithm, len(creds.key)) == (
        f"{VECTORS['envelope']['sender_box']}.{_vec_id('a1')}",
        "sha256",
        32,
    )


def test_vectors_envelope() -> None:
    v = VECTORS["envelope"]
    sender_box, recipient_box = uuid.UUID(v["sender_box"]), uuid.UUID(v["recipient_box"])
    sender = _vec_keys(v["sender"])
    out = seal_envelope(
        SenderIdentity(sender_box, _vec_id(v["sender"]), sender.signing_private),
        recipient_box,
        [RecipientDevice(_vec_id(n), _vec_keys(n).encryption_public) for n in v["recipients"]],
        uuid.UUID(v["message_id"]),
        v["kind"],
        bytes.fromhex(v["body"]),
        now_ms=v["now_ms"],
        rng=ScriptedRng(bytes.fromhex(v["ephemeral_private"]), bytes.fromhex(v["content_key"])),
    )
    assert out.hex() == v["envelope"]

    def lookup(box: uuid.UUID, dev: uuid.UUID) -> bytes | None:
        ok = (box, dev) == (sender_box, _vec_id(v["sender"]))
        return sender.signing_public_bytes if ok else None

    for name in v["recipients"]:
        box = sender_box if name.startswith("a") else recipient_box
        msg = open_envelope(
            bytes.fromhex(v["envelope"]),
            my_device_id=_vec_id(name),
            my_encryption_private=_vec_keys(name).encryption_private,
            expected_recipient_box=box,
            sender_lookup=lookup,
        )
        assert msg.body.hex() == v["body"] and msg.kind == v["kind"]
        assert msg.sent_at_ms == v["now_ms"] and str(msg.message_id) == v["message_id"]


def test_vectors_keyfile() -> None:
    v = VECTORS["keyfile"]
    keys = _vec_keys(v["device"])
    kf = DeviceKeyfile(
        device_id=_vec_id(v["device"]),
        keys=keys,
        box_id=uuid.UUID(v["box_id"]),
        hawk=HawkCredentials(v["hawk_id"], bytes.fromhex(v["hawk_key"]), "sha256"),
        server=v["server"],
        home_region=v["home_region"],
    )
    out = encode_keyfile(
        kf,
        v["passphrase"],
        scrypt_n=v["scrypt_n"],
        rng=ScriptedRng(bytes.fromhex(v["salt"]), bytes.fromhex(v["nonce"])),
    )
    assert out.hex() == v["keyfile"]
    _same(decode_keyfile(bytes.fromhex(v["keyfile"]), v["passphrase"]), kf)


def test_vectors_safety_number() -> None:
    v = VECTORS["safety"]

    def pubs(names: list[str]) -> list[PublicDeviceKeys]:
        return [_vec_keys(n).public() for n in names]

    number = safety_number(
        uuid.UUID(v["box_a"]), pubs(v["devices_a"]), uuid.UUID(v["box_b"]), pubs(v["devices_b"])
    )
    assert number.digits == v["digits"] and str(number) == v["groups"]
    assert number.qr_payload.hex() == v["qr_payload"]


def test_docs_carry_the_committed_vectors() -> None:
    """docs/envelope.md quotes the same bytes, so the prose cannot drift from the code."""
    doc = (ROOT / "docs" / "envelope.md").read_text()
    for section, key in [
        ("signatures", "key_signature"),
        ("signatures", "authorize_signature"),
        ("sealed", "sealed"),
        ("envelope", "envelope"),
        ("keyfile", "keyfile"),
        ("safety", "groups"),
        ("safety", "qr_payload"),
    ]:
        assert VECTORS[section][key] in doc, (section, key)
