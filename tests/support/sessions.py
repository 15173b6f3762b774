"""Devices with prekeys and PQXDH + Double Ratchet sessions between them, for the v2 crypto tests.

Everything goes through the real ``rossby.crypto`` code: a ``Party`` is a
device with real keys and a real prekey set, ``first_contact`` runs PQXDH
and the ratchet's first message exactly as a client would.
"""

from __future__ import annotations

import dataclasses
import uuid

from rossby.crypto import (
    Bundle,
    DeviceKeyPair,
    IdentityKeys,
    InitialHeader,
    PrekeySecret,
    RatchetSession,
    SenderIdentity,
    generate_kem_prekeys,
    generate_one_time_prekeys,
    generate_signed_prekey,
    initiate,
    respond,
)


class ScriptedRng:
    """Answers a fixed list of byte strings, in order, checking each requested length."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)

    def __call__(self, n: int) -> bytes:
        out = self.answers.pop(0)
        assert len(out) == n, (len(out), n)
        return out


@dataclasses.dataclass
class Party:
    """One device: identity keys, a signed prekey, one-time pools and a last-resort KEM key."""

    box: uuid.UUID
    id: uuid.UUID
    keys: DeviceKeyPair
    signed: PrekeySecret
    one_time: dict[int, PrekeySecret]
    kem: dict[int, PrekeySecret]
    last_resort: PrekeySecret

    @classmethod
    def make(cls, box: uuid.UUID | None = None, pool: int = 3) -> Party:
        keys = DeviceKeyPair.generate()
        device = uuid.uuid4()
        sign = keys.signing_private
        return cls(
            box=box or uuid.uuid4(),
            id=device,
            keys=keys,
            signed=generate_signed_prekey(sign, device, 1),
            one_time={k.key_id: k for k in generate_one_time_prekeys(100, pool)},
            kem={k.key_id: k for k in generate_kem_prekeys(sign, device, 200, pool)},
            last_resort=generate_kem_prekeys(sign, device, 999, 1, last_resort=True)[0],
        )

    @property
    def identity(self) -> IdentityKeys:
        return IdentityKeys.of(self.id, self.keys)

    def sender(self) -> SenderIdentity:
        return SenderIdentity(self.box, self.id, self.keys.signing_private)

    def bundle(self, *, one_time: bool = True, last_resort: bool = False) -> Bundle:
        """What a claim would answer: the lowest unclaimed keys, or the last-resort KEM key."""
        opk = min(self.one_time.values(), key=lambda k: k.key_id) if one_time else None
        kem = self.last_resort if last_resort else min(self.kem.values(), key=lambda k: k.key_id)
        return Bundle(
            identity=self.identity,
            signed_prekey_id=self.signed.key_id,
            signed_prekey=self.signed.public,
            signed_prekey_signature=self.signed.signature,
            one_time_prekey_id=None if opk is None else opk.key_id,
            one_time_prekey=None if opk is None else opk.public,
            kem_prekey_id=kem.key_id,
            kem_prekey=kem.public,
            kem_prekey_signature=kem.signature,
            kem_last_resort=last_resort,
        )

    def respond_to(self, peer: Party, header: InitialHeader) -> tuple[bytes, bytes]:
        """PQXDH respond with the prekeys the header names; one-time privates are then deleted."""
        opk = None
        if header.one_time_prekey_id is not None:
            opk = self.one_time.pop(header.one_time_prekey_id).private
        kem = self.last_resort if header.kem_last_resort else self.kem.pop(header.kem_prekey_id)
        return respond(
            self.keys.encryption_private,
            self.identity,
            peer.identity,
            header,
            signed_prekey_private=self.signed.private,
            one_time_prekey_private=opk,
            kem_private=kem.private,
        )


@dataclasses.dataclass
class Pair:
    """A live session, each side's half, after the first message was received."""

    alice: RatchetSession
    bob: RatchetSession
    header: InitialHeader
    first_message: bytes


async def first_contact(
    alice: Party, bob: Party, plaintext: bytes = b"first", ad: bytes = b"ad", **bundle: bool
) -> Pair:
    """Alice claims Bob's bundle, runs PQXDH and sends; Bob responds and decrypts."""
    header, sk, session_ad = initiate(
        alice.keys.encryption_private, alice.identity, bob.bundle(**bundle)
    )
    a, message = await RatchetSession.initiate(
        sk, bob.signed.public, plaintext, ad, session_ad=session_ad
    )
    sk_b, session_ad_b = bob.respond_to(alice, header)
    b, got = await RatchetSession.respond(
        sk_b, bob.signed.private, message, ad, session_ad=session_ad_b
    )
    assert got == plaintext
    return Pair(a, b, header, message)


def clone(session: RatchetSession) -> RatchetSession:
    """An independent copy through the persisted form, as a client reloading state.bin gets."""
    return RatchetSession.from_json(session.to_json())
