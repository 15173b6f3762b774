"""``--crypto real``: the harness's devices speak the real v2 protocol to each other.

Each simulated device publishes a signed prekey, one-time X25519 and ML-KEM
prekeys and a last-resort key (UploadPrekeys) before the run; a sender
claims a bundle (ClaimPrekeys) the first time it writes to a box, runs
PQXDH and starts a Double Ratchet, and every message is a v2 envelope
sealed per recipient box; a receiver looks the sender's identity keys up
once (RequestKey by box id), verifies the signature, runs PQXDH respond on
a first message and ratchet-decrypts the content key. The primitives,
formats and protocol steps are the SDK's own (``rossby.crypto``); what the
harness leaves out is the SDK's state file, pinning and key log, which cost
little per message and would only blur the figure this mode exists for:
the client's cryptography CPU per message (recorded as the pseudo-calls
``crypto: seal`` and ``crypto: open``, process CPU time, not wall time).

Every simulated device is the only device of its own box (as in the rest
of the harness), so a box has one reader and a session is per
(device, peer device). A device keeps every session it has with a peer and
tries them all when a message arrives: when two devices start sessions with
each other at once, each keeps sending on the one it set up last, and the
other still has it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from rossby.client.vault import PrekeyVault
from rossby.client.wire import bundle_from
from rossby.crypto import SenderIdentity
from rossby.crypto.envelope_v2 import (
    DeviceEntry,
    ParsedEnvelope,
    draft_envelope,
    open_body,
    parse_envelope,
    seal_draft,
    verify_envelope,
)
from rossby.crypto.errors import CryptoError
from rossby.crypto.pqxdh import Bundle, IdentityKeys, InitialHeader, initiate, respond
from rossby.crypto.prekeys import (
    PrekeySecret,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
)
from rossby.crypto.ratchet import RatchetSession
from rossby.loadtest.codec import read_stamp
from rossby.loadtest.device import SimDevice
from rossby.loadtest.stats import Recorder
from rossby.v1 import rossby_pb2 as pb

KIND = "loadtest"
POOL = 100
"""One-time prekeys of each kind per device, as the SDK publishes; a device whose
pool runs dry is claimed with its last-resort key, as in production."""
MAX_SESSIONS = 4
"""Sessions kept per peer device (the newest first)."""

CRYPTO_PREFIX = "crypto: "
"""Recorder names of the CPU-time pseudo-calls; the report keeps them apart from RPCs."""
SEAL = CRYPTO_PREFIX + "seal"
OPEN = CRYPTO_PREFIX + "open"
LAST_RESORT = "crypto: last-resort claims"


@dataclass
class _Session:
    ratchet: RatchetSession
    #: Our PQXDH header, sent with every message until the peer answers on the session.
    initial: InitialHeader | None = None


@dataclass
class _DeviceCrypto:
    """One simulated device's secrets and sessions."""

    device: SimDevice
    identity: IdentityKeys
    #: The private halves of the published prekeys, kept as the SDK keeps them.
    vault: PrekeyVault
    sessions: dict[uuid.UUID, list[_Session]] = field(default_factory=dict)
    #: Recipient box -> its (only) device's identity, learned from a claim.
    readers: dict[str, IdentityKeys] = field(default_factory=dict)
    #: Sender device -> its identity, learned from RequestKey.
    senders: dict[uuid.UUID, IdentityKeys] = field(default_factory=dict)
    #: Claimed bundles not yet used for a session, by device.
    bundles: dict[uuid.UUID, Bundle] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def keep(self, peer: uuid.UUID, session: _Session) -> None:
        kept = self.sessions.setdefault(peer, [])
        kept.insert(0, session)
        del kept[MAX_SESSIONS:]


def _bundle(b: pb.PrekeyBundle) -> Bundle:
    """The harness trusts the keystore for identity keys (it has no pins)."""
    keys = b.device.keys
    identity = IdentityKeys(uuid.UUID(b.device.device_id), keys.encryption_key, keys.signing_key)
    return bundle_from(b, identity)


class RealCrypto:
    """The ``PayloadCodec`` of ``--crypto real``; one per load-generating process."""

    def __init__(self, recorder: Recorder, rpc_timeout: float) -> None:
        self._rec = recorder
        self._timeout = rpc_timeout
        self._devices: dict[uuid.UUID, _DeviceCrypto] = {}

    async def prepare(self, device: SimDevice, deadline: float) -> None:
        signing = device.keys.signing_private
        did = device.device_id
        vault = PrekeyVault()
        signed = generate_signed_prekey(signing, did, vault.take_ids(1))
        last_resort = generate_kem_prekeys(signing, did, vault.take_ids(1), 1, last_resort=True)
        one_time = generate_one_time_prekeys(vault.take_ids(POOL), POOL)
        kem = generate_kem_prekeys(signing, did, vault.take_ids(POOL), POOL)
        for pool, keys in (
            (vault.signed, [signed]),
            (vault.last_resort, last_resort),
            (vault.one_time, one_time),
            (vault.kem, kem),
        ):
            pool.update((k.key_id, k.private) for k in keys)

        def published(k: PrekeySecret) -> pb.SignedPrekey:
            return pb.SignedPrekey(key_id=k.key_id, public_key=k.public, signature=k.signature)

        await device.call(
            "UploadPrekeys",
            pb.UploadPrekeysRequest(
                signed_prekey=published(signed),
                one_time_prekeys=[
                    pb.OneTimePrekey(key_id=k.key_id, public_key=k.public) for k in one_time
                ],
                one_time_kem_prekeys=[published(k) for k in kem],
                last_resort_kem_prekey=published(last_resort[0]),
            ),
            pb.UploadPrekeysResponse,
            deadline,
        )
        self._devices[did] = _DeviceCrypto(device, IdentityKeys.of(did, device.keys), vault)

    # -- sending ---------------------------------------------------------------

    async def seal(
        self, sender: SimDevice, boxes: Sequence[str], message_id: str, body: bytes
    ) -> dict[str, bytes]:
        me = self._devices[sender.device_id]
        out: dict[str, bytes] = {}
        async with me.lock:
            for box in boxes:
                if box not in me.readers:
                    await self._claim(me, box)
                cpu = time.process_time()
                out[box] = await self._seal_one(me, box, uuid.UUID(message_id), body)
                self._rec.ok_call(SEAL, time.process_time() - cpu)
        return out

    async def _claim(self, me: _DeviceCrypto, box: str) -> None:
        """Learn the box's device and a bundle to start a session with it."""
        reply = await me.device.call(
            "ClaimPrekeys",
            pb.ClaimPrekeysRequest(box_id=box),
            pb.ClaimPrekeysResponse,
            self._timeout,
        )
        if len(reply.bundles) != 1:
            raise CryptoError(f"box {box}: expected one device with prekeys")
        bundle = _bundle(reply.bundles[0])
        if bundle.kem_last_resort:
            self._rec.event(LAST_RESORT)
        me.readers[box] = bundle.identity
        me.bundles[bundle.identity.device_id] = bundle

    async def _seal_one(
        self, me: _DeviceCrypto, box: str, message_id: uuid.UUID, body: bytes
    ) -> bytes:
        reader = me.readers[box].device_id
        sender = SenderIdentity(
            uuid.UUID(me.device.box_id), me.device.device_id, me.device.keys.signing_private
        )
        draft = draft_envelope(sender, uuid.UUID(box), [reader], message_id)
        kept = me.sessions.get(reader)
        bundle = me.bundles.pop(reader, None)
        if kept:
            session = kept[0]
            message = await session.ratchet.encrypt(draft.content_key, draft.associated_data)
        elif bundle is not None:
            # First contact (PQXDH 3.3, Double Ratchet 7): K is the first ratchet message.
            header, secret, ad = initiate(me.device.keys.encryption_private, me.identity, bundle)
            ratchet, message = await RatchetSession.initiate(
                secret,
                bundle.signed_prekey,
                draft.content_key,
                draft.associated_data,
                session_ad=ad,
            )
            session = _Session(ratchet, initial=header)
            me.keep(reader, session)
        else:
            raise CryptoError(f"no session and no bundle for box {box}")
        entry = DeviceEntry(session.initial, message)
        return seal_draft(draft, {reader: entry}, KIND, body)

    # -- receiving -------------------------------------------------------------

    async def open(self, receiver: SimDevice, message: pb.QueuedMessage) -> float | None:
        me = self._devices.get(receiver.device_id)
        if me is None:
            return None
        async with me.lock:
            try:
                sender = await self._sender(me, message)
                cpu = time.process_time()
                body = await self._open_one(me, sender, bytes(message.ciphertext))
                self._rec.ok_call(OPEN, time.process_time() - cpu)
            except CryptoError:
                return None
        return read_stamp(body)

    async def _sender(self, me: _DeviceCrypto, message: pb.QueuedMessage) -> IdentityKeys:
        device_id = uuid.UUID(message.sender_device_id)
        known = me.senders.get(device_id)
        if known is not None:
            return known
        reply = await me.device.call(
            "RequestKey",
            pb.RequestKeyRequest(box_id=message.sender_box_id),
            pb.RequestKeyResponse,
            self._timeout,
        )
        for d in reply.devices:
            if d.device_id == str(device_id):
                found = IdentityKeys(device_id, d.keys.encryption_key, d.keys.signing_key)
                me.senders[device_id] = found
                return found
        raise CryptoError("the sender device is not in its box")

    async def _open_one(self, me: _DeviceCrypto, sender: IdentityKeys, data: bytes) -> bytes:
        parsed = parse_envelope(
            data,
            my_device_id=me.device.device_id,
            expected_recipient_box=uuid.UUID(me.device.box_id),
        )
        if parsed.header.sender_device != sender.device_id:
            raise CryptoError("the envelope names another sender")
        verify_envelope(parsed, sender.signing_public)
        entry = parsed.entry
        for session in me.sessions.get(sender.device_id, []):
            try:
                key = await session.ratchet.decrypt(entry.ratchet_message, parsed.associated_data)
            except CryptoError:
                continue
            session.initial = None  # the peer answered on it: stop resending PQXDH
            return open_body(parsed, key)[1]
        if entry.initial is None:
            raise CryptoError("no session decrypts this message")
        return await self._respond(me, sender, parsed)

    async def _respond(
        self, me: _DeviceCrypto, sender: IdentityKeys, parsed: ParsedEnvelope
    ) -> bytes:
        """A first message (PQXDH 3.4): agree on SK with the prekeys its header names."""
        entry = parsed.entry
        header = entry.initial
        assert header is not None
        used = me.vault.first_contact(header)
        secret, ad = respond(
            me.device.keys.encryption_private,
            me.identity,
            sender,
            header,
            signed_prekey_private=used.signed,
            one_time_prekey_private=used.one_time,
            kem_private=used.kem,
        )
        ratchet, key = await RatchetSession.respond(
            secret, used.signed, entry.ratchet_message, parsed.associated_data, session_ad=ad
        )
        _, body = open_body(parsed, key)
        me.vault.spend(used)
        me.keep(sender.device_id, _Session(ratchet))
        return body


__all__ = ["CRYPTO_PREFIX", "LAST_RESORT", "OPEN", "SEAL", "RealCrypto"]
