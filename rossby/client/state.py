"""What a device remembers between runs, in its home directory.

Layout of ``--home`` (directory mode 0700)::

    device.key   the keyfile (rossby.crypto.keyfile): private keys, device and
                 box id, Hawk credentials, server address. Passphrase-encrypted.
    state.bin    everything else (below), encrypted under a key derived from
                 the device's signing key, so it opens only after device.key.
    lock         held (flock) while a client has the home open.

``state.bin`` holds the address book (contact -> box), the pinned device keys
of every box we have resolved, the bounded set of message ids already
processed, messages held because their sender is not known yet, and the
forward-secrecy records (rossby.client.vault): the private halves of this
device's prekeys and a ratchet session per peer device. It is
encrypted rather than merely 0600 because the address book is exactly the
metadata end-to-end encryption is meant to keep private, and authenticated
because a pin that someone else can rewrite protects nothing.

Format: ``b"RSST" || 0x01 || nonce (12) || ChaCha20-Poly1305(JSON, aad = the
first 17 bytes)``, key = ``HKDF-SHA256(ikm = Ed25519 private key, salt =
"rossby/client/state", info = "rossby/client/state" 0x00 || device id)``.
Deriving the key costs nothing per run, unlike a second scrypt.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rossby.client.errors import HomeLocked, WrongPassphrase
from rossby.client.vault import (
    DeviceSessions,
    PrekeyVault,
    SessionKey,
    b64,
    sessions_from_doc,
    sessions_to_doc,
    unb64,
)
from rossby.contacts import NormalizedContact, normalize
from rossby.crypto import DeviceKeyPair
from rossby.crypto.keyfile import write_private_file
from rossby.crypto.keylog import ChainState

KEYFILE = "device.key"
#: A key rotation stages the new keyfile here, then renames it over KEYFILE.
NEXT_KEYFILE = "device.key.next"
STATE = "state.bin"
LOCK = "lock"

MAX_SEEN = 10_000
"""Message ids remembered for dedupe. Repeats come from just below the cursor
(the settle window) or from a run that stopped before its ack, so the ids of
the last few thousand messages are all that can ever come back honestly.
A server that replays an *older* message (its id long forgotten) is caught
by the per-sender floors instead (``SeenSet``)."""
MAX_FLOORS = 10_000
"""Senders (box.device) with a floor of their own; beyond it the lowest
floor is folded into the floor every other sender shares."""
MAX_HELD = 256
"""Messages kept for senders we cannot look up yet; bounded so a stranger
cannot fill the disk."""

_MAGIC = b"RSST"
_VERSION = 0x01
_LABEL = b"rossby/client/state"
_NONCE = 12


class SeenSet:
    """Which messages were processed: a bounded window of ids, and below it
    per-sender floors of the *signed* send time.

    The ids alone are not enough: once an id falls out of the window, a
    malicious server could deliver that message again and it would look
    new. So when an id falls out, its sender's floor rises to the message's
    ``sent_at_ms`` (signed by the sender, so the server cannot change it),
    and a verified message whose id is unknown but whose send time is at or
    below its sender's floor is a replay. A sender's messages are processed
    roughly in its own clock's order, so a genuine message only falls below
    the floor if it took longer to arrive than 10,000 newer messages from the
    same sender took to be processed. Ids added without a sender (our own
    sends, states written before the floors existed) fall out without
    raising anything.
    """

    def __init__(
        self,
        items: Iterable[str] = (),
        maxlen: int = MAX_SEEN,
        *,
        origins: Mapping[str, tuple[str, int]] | None = None,
        floors: Mapping[str, int] | None = None,
        floor_all: int = -1,
        max_floors: int = MAX_FLOORS,
    ) -> None:
        self._maxlen = maxlen
        self._max_floors = max_floors
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        #: id -> (sender "box.device", signed sent_at_ms), for the floors.
        self._origin: dict[str, tuple[str, int]] = {}
        self.floors: dict[str, int] = dict(floors or {})
        #: The floor of every sender without one of its own.
        self.floor_all = floor_all
        origins = origins or {}
        for item in items:
            origin = origins.get(item)
            self.add(item, *(origin if origin is not None else (None, 0)))

    def add(self, item: str, sender: str | None = None, sent_at_ms: int = 0) -> None:
        if item in self._set:
            return
        if len(self._order) >= self._maxlen:
            old = self._order.popleft()
            self._set.discard(old)
            origin = self._origin.pop(old, None)
            if origin is not None:
                self._raise_floor(*origin)
        self._order.append(item)
        self._set.add(item)
        if sender is not None:
            self._origin[item] = (sender, sent_at_ms)

    def _raise_floor(self, sender: str, sent_at_ms: int) -> None:
        if sent_at_ms <= self.floor_of(sender):
            return
        if sender not in self.floors and len(self.floors) >= self._max_floors:
            lowest = min(self.floors, key=self.floors.__getitem__)
            self.floor_all = max(self.floor_all, self.floors.pop(lowest))
        self.floors[sender] = sent_at_ms

    def floor_of(self, sender: str) -> int:
        return max(self.floors.get(sender, -1), self.floor_all)

    def replayed(self, sender: str, sent_at_ms: int) -> bool:
        """A verified message not in the window: at or below its sender's floor?"""
        return sent_at_ms <= self.floor_of(sender)

    def origins(self) -> dict[str, tuple[str, int]]:
        return dict(self._origin)

    def __contains__(self, item: object) -> bool:
        return item in self._set

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)


@dataclass(frozen=True, slots=True)
class PinnedDevice:
    device_id: uuid.UUID
    name: str
    encryption_key: bytes
    signing_key: bytes


@dataclass(slots=True)
class Pin:
    """The device keys of one box as we first saw them (or last accepted them)."""

    box_id: uuid.UUID
    devices: dict[uuid.UUID, PinnedDevice]
    pinned_at_ms: int
    changed_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class HeldEnvelope:
    """A queued message we acked but could not verify yet (unknown sender)."""

    position: int
    message_id: str
    sender_box: str
    sender_device: str
    received_at_ms: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class PendingLink:
    """A new device that joined a link offer and waits for its approval."""

    offer_id: uuid.UUID
    mac_key: bytes


MAX_PREVIOUS_KEYS = 2
"""X25519 private keys kept after rotations, so messages senders sealed to
the old key before they saw the new one still open."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """How to reach the server over TLS; chosen at init/join, kept in state.

    ``ca`` (PEM) replaces the system trust store; ``client_cert`` and
    ``client_key`` (PEM) answer a server that asks for mutual TLS.
    """

    ca: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    server_name: str | None = None


@dataclass(slots=True)
class ClientState:
    server: str
    hawk_address: str
    device_name: str
    own_contacts: list[NormalizedContact]
    book: dict[NormalizedContact, uuid.UUID] = field(default_factory=dict)
    pins: dict[uuid.UUID, Pin] = field(default_factory=dict)
    seen: SeenSet = field(default_factory=SeenSet)
    rejected: SeenSet = field(default_factory=SeenSet)
    held: list[HeldEnvelope] = field(default_factory=list)
    #: Per box: the key log as verified up to its head (fork/rollback pins).
    logs: dict[uuid.UUID, ChainState] = field(default_factory=dict)
    pending_link: PendingLink | None = None
    previous_keys: list[bytes] = field(default_factory=list)
    #: What this box holds about others ("blocked" / "accepted"), as set here.
    rules: dict[uuid.UUID, str] = field(default_factory=dict)
    #: This box's own accept_from, as last read or set ("anyone" if unknown).
    accept_from: str = "anyone"
    #: None: plaintext gRPC.
    tls: TlsConfig | None = None
    #: Private halves of this device's published prekeys (rossby.client.vault).
    prekeys: PrekeyVault = field(default_factory=PrekeyVault)
    #: Ratchet sessions per (peer box, peer device).
    sessions: dict[SessionKey, DeviceSessions] = field(default_factory=dict)

    def contact_of(self, box_id: uuid.UUID) -> NormalizedContact | None:
        """The first contact we know ``box_id`` by (sorted, so it is stable)."""
        known = sorted(
            (c for c, b in self.book.items() if b == box_id), key=lambda c: (c.kind.value, c.value)
        )
        return known[0] if known else None


def contact_key(contact: NormalizedContact) -> str:
    return f"{contact.kind.value}:{contact.value}"


def parse_contact_key(key: str) -> NormalizedContact:
    kind, _, value = key.partition(":")
    return normalize(kind, value)


def _to_doc(state: ClientState) -> dict[str, Any]:
    return {
        "v": 1,
        "server": state.server,
        "tls": None
        if state.tls is None
        else {
            "ca": b64(state.tls.ca) if state.tls.ca else None,
            "client_cert": b64(state.tls.client_cert) if state.tls.client_cert else None,
            "client_key": b64(state.tls.client_key) if state.tls.client_key else None,
            "server_name": state.tls.server_name,
        },
        "hawk_address": state.hawk_address,
        "device_name": state.device_name,
        "own_contacts": [contact_key(c) for c in state.own_contacts],
        "book": {contact_key(c): str(b) for c, b in state.book.items()},
        "pins": {
            str(box): {
                "pinned_at_ms": pin.pinned_at_ms,
                "changed_at_ms": pin.changed_at_ms,
                "devices": {
                    str(d.device_id): {
                        "name": d.name,
                        "enc": b64(d.encryption_key),
                        "sig": b64(d.signing_key),
                    }
                    for d in pin.devices.values()
                },
            }
            for box, pin in state.pins.items()
        },
        "seen": list(state.seen),
        "seen_origin": {k: [o[0], o[1]] for k, o in state.seen.origins().items()},
        "seen_floors": state.seen.floors,
        "seen_floor_all": state.seen.floor_all,
        "rejected": list(state.rejected),
        "held": [
            {
                "position": h.position,
                "message_id": h.message_id,
                "sender_box": h.sender_box,
                "sender_device": h.sender_device,
                "received_at_ms": h.received_at_ms,
                "ciphertext": b64(h.ciphertext),
            }
            for h in state.held
        ],
        "logs": {
            str(box): {
                "seq": log.seq,
                "head": b64(log.head),
                "devices": {str(d): [b64(k[0]), b64(k[1])] for d, k in log.devices.items()},
                "retired": sorted(str(d) for d in log.retired),
            }
            for box, log in state.logs.items()
        },
        "pending_link": None
        if state.pending_link is None
        else {
            "offer_id": str(state.pending_link.offer_id),
            "mac_key": b64(state.pending_link.mac_key),
        },
        "previous_keys": [b64(k) for k in state.previous_keys],
        "rules": {str(b): r for b, r in state.rules.items()},
        "accept_from": state.accept_from,
        "prekeys": state.prekeys.to_doc(),
        "sessions": sessions_to_doc(state.sessions),
    }


def _from_doc(doc: dict[str, Any]) -> ClientState:
    if doc.get("v") != 1:
        raise ValueError("unknown state version")
    pins: dict[uuid.UUID, Pin] = {}
    for box, p in doc["pins"].items():
        box_id = uuid.UUID(box)
        devices = {
            uuid.UUID(d): PinnedDevice(
                uuid.UUID(d), str(v["name"]), unb64(v["enc"]), unb64(v["sig"])
            )
            for d, v in p["devices"].items()
        }
        pins[box_id] = Pin(box_id, devices, int(p["pinned_at_ms"]), p.get("changed_at_ms"))
    logs: dict[uuid.UUID, ChainState] = {}
    for box, entry in doc.get("logs", {}).items():
        box_id = uuid.UUID(box)
        logs[box_id] = ChainState(
            box_id,
            int(entry["seq"]),
            unb64(entry["head"]),
            {uuid.UUID(d): (unb64(k[0]), unb64(k[1])) for d, k in entry["devices"].items()},
            {uuid.UUID(d) for d in entry["retired"]},
        )
    pending = doc.get("pending_link")
    tls_doc = doc.get("tls")
    tls = (
        None
        if tls_doc is None
        else TlsConfig(
            ca=unb64(tls_doc["ca"]) if tls_doc.get("ca") else None,
            client_cert=unb64(tls_doc["client_cert"]) if tls_doc.get("client_cert") else None,
            client_key=unb64(tls_doc["client_key"]) if tls_doc.get("client_key") else None,
            server_name=tls_doc.get("server_name"),
        )
    )
    return ClientState(
        tls=tls,
        server=str(doc["server"]),
        hawk_address=str(doc["hawk_address"]),
        device_name=str(doc["device_name"]),
        own_contacts=[parse_contact_key(c) for c in doc["own_contacts"]],
        book={parse_contact_key(c): uuid.UUID(b) for c, b in doc["book"].items()},
        pins=pins,
        seen=SeenSet(
            doc["seen"],
            origins={str(k): (str(v[0]), int(v[1])) for k, v in doc.get("seen_origin", {}).items()},
            floors={str(k): int(v) for k, v in doc.get("seen_floors", {}).items()},
            floor_all=int(doc.get("seen_floor_all", -1)),
        ),
        rejected=SeenSet(doc["rejected"]),
        held=[
            HeldEnvelope(
                int(h["position"]),
                str(h["message_id"]),
                str(h["sender_box"]),
                str(h["sender_device"]),
                int(h["received_at_ms"]),
                unb64(h["ciphertext"]),
            )
            for h in doc["held"]
        ],
        logs=logs,
        pending_link=None
        if pending is None
        else PendingLink(uuid.UUID(pending["offer_id"]), unb64(pending["mac_key"])),
        previous_keys=[unb64(k) for k in doc.get("previous_keys", [])],
        rules={uuid.UUID(b): str(r) for b, r in doc.get("rules", {}).items()},
        accept_from=str(doc.get("accept_from", "anyone")),
        # Absent from states written before forward secrecy (issue 18).
        prekeys=PrekeyVault.from_doc(doc.get("prekeys")),
        sessions=sessions_from_doc(doc.get("sessions")),
    )


def state_key(keys: DeviceKeyPair, device_id: uuid.UUID) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=_LABEL, info=_LABEL + b"\x00" + device_id.bytes
    ).derive(keys.signing_private_bytes())


def encode_state(state: ClientState, key: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    header = _MAGIC + bytes([_VERSION]) + nonce
    plaintext = json.dumps(_to_doc(state), sort_keys=True, separators=(",", ":")).encode()
    return header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)


def decode_state(data: bytes, key: bytes) -> ClientState:
    """Decrypt and parse; any damage is reported like a keyfile that will not open."""
    header_len = len(_MAGIC) + 1 + _NONCE
    try:
        if data[:4] != _MAGIC or len(data) < header_len or data[4] != _VERSION:
            raise ValueError
        header = data[:header_len]
        plaintext = ChaCha20Poly1305(key).decrypt(header[5:], data[header_len:], header)
        return _from_doc(json.loads(plaintext))
    except (ValueError, KeyError, TypeError, AttributeError, InvalidTag):
        raise WrongPassphrase(
            "the state file does not open: it is damaged, or belongs to another device"
        ) from None


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600, durable on return."""
    write_private_file(path, data)


def make_home(home: Path) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(home, 0o700)


class HomeLock:
    """An exclusive ``flock`` on ``<home>/lock`` for the client's lifetime.

    Non-blocking: a second ``rossby client fetch`` in another terminal
    should say so at once rather than hang.
    """

    def __init__(self, home: Path) -> None:
        self._path = home / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HomeLocked(f"{self._path.parent} is in use by another rossby client") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = [
    "KEYFILE",
    "MAX_FLOORS",
    "MAX_HELD",
    "MAX_SEEN",
    "NEXT_KEYFILE",
    "STATE",
    "ClientState",
    "HeldEnvelope",
    "HomeLock",
    "PendingLink",
    "Pin",
    "PinnedDevice",
    "SeenSet",
    "contact_key",
    "decode_state",
    "encode_state",
    "make_home",
    "parse_contact_key",
    "state_key",
    "write_private",
]
