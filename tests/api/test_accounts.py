"""Accounts through the real API on each backend: device linking,
revocation, key rotation, the key log, contacts, profiles, sender rules.

The raw-API tests play each device's client part by hand (the crypto comes
from ``rossby.crypto``), so they see exactly what the server answers; the
key-log tests at the end use the SDK, whose verification is the point.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict, Unpack

import grpc
import pytest

from rossby.client import KeyChangeWarning, RossbyClient
from rossby.client.errors import KeyLogError, LinkError
from rossby.client.hawk import HawkSigner
from rossby.contacts import normalize
from rossby.crypto import DeviceKeyPair, credentials_aad, unseal
from rossby.crypto.keylog import ChainState, ChangeKind, replay, sign_change
from rossby.crypto.link import (
    LinkKeys,
    confirm_message,
    derive_link_keys,
    join_transcript,
    mac,
    mac_ok,
    new_passphrase,
    sign_complete,
)
from rossby.server.notify import read_outbox_code
from rossby.status import error_info
from rossby.store import Device as StoreDevice
from rossby.store import DeviceKeys as StoreDeviceKeys
from rossby.store import DeviceState, parse_store_url
from rossby.store.accounts import KeyLogEntry, LinkState
from rossby.store.cassandra.driver import PROTOCOL_VERSION
from rossby.v1 import rossby_pb2 as pb
from tests.api.conftest import FAST, PASS, Api, Join
from tests.api.device import Device, contact, email, reason
from tests.support.grpc_errors import expect

C = grpc.StatusCode


def keys_pb(d: Device) -> pb.DeviceKeys:
    pub = d.keys.public()
    return pb.DeviceKeys(
        encryption_key=pub.encryption_public,
        signing_key=pub.signing_public,
        key_signature=d.keys.key_signature(d.device_id),
    )


# -- linking by hand ------------------------------------------------------------


@dataclass
class Offer:
    offer_id: uuid.UUID
    passphrase: str
    keys: LinkKeys


async def create_offer(owner: Device) -> Offer:
    offer_id, passphrase = uuid.uuid4(), new_passphrase()
    keys = derive_link_keys(passphrase, offer_id)
    reply = await owner.call(
        "CreateLinkOffer",
        pb.CreateLinkOfferRequest(offer_id=str(offer_id), verifier=keys.verifier),
        pb.CreateLinkOfferResponse,
    )
    assert reply.ttl_seconds == 600
    return Offer(offer_id, passphrase, keys)


def join_request(new: Device, offer_id: uuid.UUID, keys: LinkKeys) -> pb.JoinLinkRequest:
    k = keys_pb(new)
    transcript = join_transcript(
        offer_id, new.device_id, k.encryption_key, k.signing_key, k.key_signature, new.name
    )
    return pb.JoinLinkRequest(
        offer_id=str(offer_id),
        device_id=str(new.device_id),
        keys=k,
        device_name=new.name,
        proof=mac(keys.verifier, transcript),
        mac=mac(keys.mac_key, transcript),
    )


async def join(new: Device, offer: Offer, passphrase: str | None = None) -> pb.JoinLinkResponse:
    keys = offer.keys if passphrase is None else derive_link_keys(passphrase, offer.offer_id)
    return await new.public(
        "JoinLink", join_request(new, offer.offer_id, keys), pb.JoinLinkResponse
    )


async def approve(owner: Device, offer: Offer, new_id: uuid.UUID) -> pb.ApproveLinkResponse:
    """What the old device does: read who joined, check the MAC, sign."""
    assert owner.box_id is not None
    got = await owner.call(
        "GetLinkOffer",
        pb.GetLinkOfferRequest(offer_id=str(offer.offer_id)),
        pb.GetLinkOfferResponse,
    )
    assert got.state == pb.LINK_STATE_JOINED and got.device_id == str(new_id)
    k = got.keys
    transcript = join_transcript(
        offer.offer_id,
        new_id,
        k.encryption_key,
        k.signing_key,
        k.key_signature,
        got.device_name,
    )
    assert mac_ok(offer.keys.mac_key, transcript, got.mac)
    return await owner.call(
        "ApproveLink",
        pb.ApproveLinkRequest(
            offer_id=str(offer.offer_id),
            device_id=str(new_id),
            signature=sign_change(
                owner.keys.signing_private,
                ChangeKind.LINK,
                owner.box_id,
                new_id,
                k.encryption_key,
                k.signing_key,
            ),
            confirm=mac(
                offer.keys.mac_key,
                confirm_message(
                    offer.offer_id,
                    owner.box_id,
                    owner.device_id,
                    owner.keys.signing_public_bytes,
                    new_id,
                ),
            ),
        ),
        pb.ApproveLinkResponse,
    )


def complete_request(new: Device, offer: Offer) -> pb.CompleteLinkRequest:
    return pb.CompleteLinkRequest(
        offer_id=str(offer.offer_id),
        device_id=str(new.device_id),
        signature=sign_complete(new.keys.signing_private, offer.offer_id, new.device_id),
    )


async def complete(new: Device, offer: Offer) -> pb.CompleteLinkResponse:
    reply = await new.public("CompleteLink", complete_request(new, offer), pb.CompleteLinkResponse)
    assert mac_ok(
        offer.keys.mac_key,
        confirm_message(
            offer.offer_id,
            uuid.UUID(reply.box_id),
            uuid.UUID(reply.approver_device_id),
            reply.approver_signing_key,
            new.device_id,
        ),
        reply.confirm,
    )
    creds = pb.HawkCredentials.FromString(
        unseal(
            new.keys.encryption_private_bytes(),
            reply.sealed_credentials,
            aad=credentials_aad(new.device_id),
        )
    )
    new.box_id = uuid.UUID(reply.box_id)
    new.hawk_key = creds.key
    new.signer = HawkSigner(
        creds.id, creds.key, "127.0.0.1", new.api.server.port, clock=new.api.clock
    )
    return reply


async def link(api: Any, owner: Device, name: str = "tablet") -> Device:
    """``api``: anything a ``Device`` can use (an in-process ``Api`` or a
    ``ProcessApi``)."""
    offer = await create_offer(owner)
    new = Device(api, name=name)
    await join(new, offer)
    await approve(owner, offer, new.device_id)
    await complete(new, offer)
    return new


async def key_log(caller: Device, box_id: uuid.UUID | None) -> pb.KeyLogResponse:
    return await caller.call("KeyLog", pb.KeyLogRequest(box_id=str(box_id)), pb.KeyLogResponse)


def verified(box_id: uuid.UUID, entries: list[pb.KeyLogEntry]) -> ChainState:
    """Replay a chain the way a client does (raises InvalidKeyLog)."""
    from rossby.client.wire import log_entry

    return replay(ChainState(box_id), [log_entry(box_id, e) for e in entries])


async def request_key_by_box(caller: Device, box_id: uuid.UUID | None) -> pb.RequestKeyResponse:
    return await caller.call(
        "RequestKey", pb.RequestKeyRequest(box_id=str(box_id)), pb.RequestKeyResponse
    )


# -- device linking ---------------------------------------------------------------


async def test_linking_adds_a_working_device_that_starts_at_the_head(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    assert phone.box_id is not None
    before = await bob.send((phone.box_id, b"before the link", None))

    offer = await create_offer(phone)
    tablet = Device(api, name="tablet")
    await join(tablet, offer)
    # Not approved yet: nothing to collect.
    await expect(
        C.FAILED_PRECONDITION,
        "LINK_NOT_APPROVED",
        tablet.public("CompleteLink", complete_request(tablet, offer), pb.CompleteLinkResponse),
    )
    approved = await approve(phone, offer, tablet.device_id)
    assert approved.entry.kind == pb.KEY_CHANGE_KIND_LINK and approved.entry.seq == 2
    reply = await complete(tablet, offer)
    assert tablet.box_id == phone.box_id
    assert reply.approver_device_id == str(phone.device_id)
    # Retries are answered again, the same way.
    retry = await phone.call(
        "ApproveLink",
        pb.ApproveLinkRequest(
            offer_id=str(offer.offer_id),
            device_id=str(tablet.device_id),
            signature=approved.entry.signature,
            confirm=bytes(32),
        ),
        pb.ApproveLinkResponse,
    )
    assert retry.entry.hash == approved.entry.hash
    second = await tablet.public(
        "CompleteLink", complete_request(tablet, offer), pb.CompleteLinkResponse
    )
    assert second.box_id == reply.box_id

    keys = await bob.request_key(phone.contacts[0])
    assert {d.device_id for d in keys.devices} == {str(phone.device_id), str(tablet.device_id)}
    assert keys.key_log.seq == 2

    # The tablet starts at the head: no history, but every later message.
    assert await tablet.drain() == []
    after = await bob.send((phone.box_id, b"after the link", None))
    got = await tablet.drain()
    assert [m.ciphertext for m in got] == [b"after the link"]
    assert before.results[0].position < after.results[0].position
    assert [m.ciphertext for m in await phone.drain()] == [b"before the link", b"after the link"]

    log = await key_log(bob, phone.box_id)
    state = verified(phone.box_id, list(log.entries))
    assert set(state.devices) == {phone.device_id, tablet.device_id}
    assert [e.kind for e in log.entries] == [pb.KEY_CHANGE_KIND_REGISTER, pb.KEY_CHANGE_KIND_LINK]
    assert log.entries[1].actor_device_id == str(phone.device_id)
    assert log.head.seq == 2 and log.head.hash == log.entries[-1].hash == keys.key_log.hash


async def test_link_offer_expires(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    offer = await create_offer(phone)
    api.clock.advance(601)
    await expect(C.FAILED_PRECONDITION, "LINK_EXPIRED", join(Device(api), offer))
    await expect(
        C.FAILED_PRECONDITION,
        "LINK_EXPIRED",
        phone.call(
            "GetLinkOffer",
            pb.GetLinkOfferRequest(offer_id=str(offer.offer_id)),
            pb.GetLinkOfferResponse,
        ),
    )


async def test_a_joined_offer_expires_before_approval(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    offer = await create_offer(phone)
    tablet = Device(api)
    await join(tablet, offer)
    api.clock.advance(601)
    assert phone.box_id is not None
    await expect(
        C.FAILED_PRECONDITION,
        "LINK_EXPIRED",
        phone.call(
            "ApproveLink",
            pb.ApproveLinkRequest(
                offer_id=str(offer.offer_id),
                device_id=str(tablet.device_id),
                signature=bytes(64),
                confirm=bytes(32),
            ),
            pb.ApproveLinkResponse,
        ),
    )
    await expect(
        C.FAILED_PRECONDITION,
        "LINK_EXPIRED",
        tablet.public("CompleteLink", complete_request(tablet, offer), pb.CompleteLinkResponse),
    )


async def test_link_offer_is_single_use(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    offer = await create_offer(phone)
    first, second = Device(api, name="first"), Device(api, name="second")
    await join(first, offer)
    await join(first, offer)  # the same device retrying is fine
    await expect(C.FAILED_PRECONDITION, "LINK_USED", join(second, offer))
    await approve(phone, offer, first.device_id)
    await complete(first, offer)
    await expect(C.FAILED_PRECONDITION, "LINK_USED", join(second, offer))
    # A used offer never lets the second device in, even with a valid proof.
    await expect(
        C.NOT_FOUND,
        "LINK_NOT_FOUND",
        second.public("CompleteLink", complete_request(second, offer), pb.CompleteLinkResponse),
    )


async def test_wrong_passphrase_attempts_are_limited(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    offer = await create_offer(phone)
    thief = Device(api, name="thief")
    for left in (4, 3, 2, 1, 0):
        err = await expect(
            C.PERMISSION_DENIED, "LINK_PROOF_INVALID", join(thief, offer, new_passphrase())
        )
        info = error_info(err)
        assert info is not None and info.metadata["attempts_left"] == str(left)
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", join(thief, offer, new_passphrase()))
    # The offer is dead now, even for the right passphrase.
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", join(Device(api), offer))


async def test_wrong_passphrase_attempts_are_counted_exactly_under_a_burst(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    offer = await create_offer(phone)
    bad = derive_link_keys(new_passphrase(), offer.offer_id)
    thieves = [Device(api) for _ in range(12)]
    tries = [
        t.public("JoinLink", join_request(t, offer.offer_id, bad), pb.JoinLinkResponse)
        for t in thieves
    ]
    results = await asyncio.gather(*tries, return_exceptions=True)
    reasons = sorted(reason(r) for r in results if isinstance(r, grpc.aio.AioRpcError))
    assert len(reasons) == 12
    assert reasons.count("LINK_PROOF_INVALID") == 5  # attempts 1..5; the rest are refused
    stored = await api.store.get_link_offer(offer.offer_id)
    assert stored is not None and stored.attempts == 5


async def test_the_server_cannot_forge_a_join(api: Api, tmp_path: Path) -> None:
    """The server knows the verifier, not the MAC key: a device it slips into
    the offer (with a proof it can compute) is refused by the old device."""
    async with RossbyClient.create(
        tmp_path / "alice",
        PASS,
        server=api.target,
        contacts=[email("alice")],
        device_name="laptop",
        scrypt_n=FAST,
    ) as alice:
        await alice.register()
        code = read_outbox_code(api.outbox, normalize("email", alice.whoami().contacts[0]))
        assert code is not None
        await alice.authorize([code])
        invite = await alice.create_link_offer()
        store = api.store
        offer = await store.get_link_offer(invite.offer_id)
        assert offer is not None
        intruder = Device(api, name="intruder")
        k = keys_pb(intruder)
        transcript = join_transcript(
            offer.offer_id,
            intruder.device_id,
            k.encryption_key,
            k.signing_key,
            k.key_signature,
            "x",
        )
        forged = replace(
            offer,
            state=LinkState.JOINED,
            device_id=intruder.device_id,
            device_name="x",
            encryption_key=k.encryption_key,
            signing_key=k.signing_key,
            key_signature=k.key_signature,
            join_mac=mac(offer.verifier, transcript),  # the best the server can do
        )
        assert await store.transition_link_offer(forged, LinkState.OPEN)
        with pytest.raises(LinkError, match="did not prove the passphrase"):
            await alice.wait_for_link(invite, wait=5, poll=0.05)
        # And nothing the server stores is the passphrase or the MAC key.
        assert invite.mac_key not in (offer.verifier, offer.join_mac)
        assert invite.passphrase.encode() not in offer.verifier


async def test_approval_needs_the_callers_signature(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    other = await Device(api, email("mallory")).join()
    offer = await create_offer(phone)
    tablet = Device(api)
    await join(tablet, offer)
    assert phone.box_id is not None
    bad = pb.ApproveLinkRequest(
        offer_id=str(offer.offer_id),
        device_id=str(tablet.device_id),
        signature=sign_change(
            DeviceKeyPair.generate().signing_private,
            ChangeKind.LINK,
            phone.box_id,
            tablet.device_id,
            keys_pb(tablet).encryption_key,
            keys_pb(tablet).signing_key,
        ),
        confirm=bytes(32),
    )
    await expect(
        C.PERMISSION_DENIED, "BAD_SIGNATURE", phone.call("ApproveLink", bad, pb.ApproveLinkResponse)
    )
    # Another box cannot see or approve the offer at all.
    await expect(
        C.NOT_FOUND,
        "LINK_NOT_FOUND",
        other.call(
            "GetLinkOffer",
            pb.GetLinkOfferRequest(offer_id=str(offer.offer_id)),
            pb.GetLinkOfferResponse,
        ),
    )
    await expect(
        C.NOT_FOUND, "LINK_NOT_FOUND", other.call("ApproveLink", bad, pb.ApproveLinkResponse)
    )
    # Nothing was consumed: the real approval still works.
    await approve(phone, offer, tablet.device_id)
    await complete(tablet, offer)
    await expect(
        C.PERMISSION_DENIED,
        "BAD_SIGNATURE",
        tablet.public(
            "CompleteLink",
            pb.CompleteLinkRequest(
                offer_id=str(offer.offer_id), device_id=str(tablet.device_id), signature=bytes(64)
            ),
            pb.CompleteLinkResponse,
        ),
    )


# -- revocation ------------------------------------------------------------------


def revoke_request(by: Device, target: Device) -> pb.RevokeDeviceRequest:
    assert by.box_id is not None
    k = keys_pb(target)
    return pb.RevokeDeviceRequest(
        device_id=str(target.device_id),
        signature=sign_change(
            by.keys.signing_private,
            ChangeKind.REVOKE,
            by.box_id,
            target.device_id,
            k.encryption_key,
            k.signing_key,
        ),
    )


async def test_a_revoked_device_is_locked_out_at_once(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    tablet = await link(api, phone)
    assert phone.box_id is not None
    store = api.store
    queued = await bob.send((phone.box_id, b"one", None))
    tablet_cursor = (await tablet.fetch()).cursor  # the tablet never acks

    reply = await phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse)
    assert reply.entry.kind == pb.KEY_CHANGE_KIND_REVOKE and reply.entry.seq == 3
    err = await expect(C.UNAUTHENTICATED, "HAWK_UNKNOWN_ID", tablet.fetch())
    assert err.code() == C.UNAUTHENTICATED
    # Its keys left the key set, and the log says who removed them.
    keys = await bob.request_key(phone.contacts[0])
    assert [d.device_id for d in keys.devices] == [str(phone.device_id)]
    state = verified(phone.box_id, list((await key_log(bob, phone.box_id)).entries))
    assert set(state.devices) == {phone.device_id} and state.retired == {tablet.device_id}
    # Its cursor no longer holds compaction back.
    acked = await phone.ack(queued.results[0].position)
    done = await store.compact(phone.box_id)
    assert done.purged_through == acked.cursor - store.settle_window
    assert done.purged_through > tablet_cursor - store.settle_window
    # A retry of the same revocation is not a second change.
    await expect(
        C.NOT_FOUND,
        "DEVICE_NOT_FOUND",
        phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse),
    )
    assert (await key_log(bob, phone.box_id)).head.seq == 3


async def test_the_last_device_cannot_be_revoked(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    await expect(
        C.FAILED_PRECONDITION,
        "LAST_DEVICE",
        phone.call("RevokeDevice", revoke_request(phone, phone), pb.RevokeDeviceResponse),
    )
    tablet = await link(api, phone)
    # Two devices revoking each other at once: exactly one wins.
    results = await asyncio.gather(
        phone.call("RevokeDevice", revoke_request(phone, tablet), pb.RevokeDeviceResponse),
        tablet.call("RevokeDevice", revoke_request(tablet, phone), pb.RevokeDeviceResponse),
        return_exceptions=True,
    )
    ok = [r for r in results if isinstance(r, pb.RevokeDeviceResponse)]
    failed = [reason(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and failed in (["LAST_DEVICE"], ["HAWK_UNKNOWN_ID"]), results
    survivor = tablet if ok[0].entry.device_id == str(phone.device_id) else phone
    (left,) = (await request_key_by_box(survivor, survivor.box_id)).devices
    assert left.device_id == str(survivor.device_id)


async def test_revocation_checks_the_signature_and_the_target(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    tablet = await link(api, phone)
    stranger = await Device(api, email("eve")).join()
    forged = revoke_request(phone, tablet)
    forged.signature = bytes(64)
    await expect(
        C.PERMISSION_DENIED,
        "BAD_SIGNATURE",
        phone.call("RevokeDevice", forged, pb.RevokeDeviceResponse),
    )
    await expect(
        C.NOT_FOUND,
        "DEVICE_NOT_FOUND",
        phone.call("RevokeDevice", revoke_request(phone, stranger), pb.RevokeDeviceResponse),
    )
    await tablet.fetch()  # still active


# -- key rotation ------------------------------------------------------------------


async def test_key_rotation_is_signed_by_the_old_key(api: Api) -> None:
    phone = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    assert phone.box_id is not None
    new = DeviceKeyPair.generate()
    pub = new.public()
    keys = pb.DeviceKeys(
        encryption_key=pub.encryption_public,
        signing_key=pub.signing_public,
        key_signature=new.key_signature(phone.device_id),
    )

    def signed_by(pair: DeviceKeyPair) -> pb.RotateKeysRequest:
        assert phone.box_id is not None
        return pb.RotateKeysRequest(
            keys=keys,
            signature=sign_change(
                pair.signing_private,
                ChangeKind.ROTATE,
                phone.box_id,
                phone.device_id,
                pub.encryption_public,
                pub.signing_public,
            ),
        )

    await expect(
        C.PERMISSION_DENIED,
        "BAD_SIGNATURE",
        phone.call("RotateKeys", signed_by(new), pb.RotateKeysResponse),
    )
    reply = await phone.call("RotateKeys", signed_by(phone.keys), pb.RotateKeysResponse)
    assert reply.entry.kind == pb.KEY_CHANGE_KIND_ROTATE
    retry = await phone.call("RotateKeys", signed_by(phone.keys), pb.RotateKeysResponse)
    assert retry.entry.hash == reply.entry.hash  # idempotent
    (listed,) = (await bob.request_key(phone.contacts[0])).devices
    assert listed.keys.signing_key == pub.signing_public
    state = verified(phone.box_id, list((await key_log(bob, phone.box_id)).entries))
    assert state.devices[phone.device_id] == (pub.encryption_public, pub.signing_public)


# -- contacts ------------------------------------------------------------------------


async def add_contact(dev: Device, value: str) -> None:
    await dev.call(
        "AddContact", pb.AddContactRequest(contact=contact(value)), pb.AddContactResponse
    )


async def verify_contact(dev: Device, value: str, code: str | None = None) -> int:
    if code is None:
        code = read_outbox_code(dev.api.outbox, normalize("email", value))
        assert code is not None
    reply = await dev.call(
        "VerifyContact",
        pb.VerifyContactRequest(contact=contact(value), code=code),
        pb.VerifyContactResponse,
    )
    return int(reply.contact_count)


async def test_a_box_holds_several_contacts_and_keeps_one(api: Api) -> None:
    first = email("alice")
    alice = await Device(api, first).join()
    bob = await Device(api, email("bob")).join()
    second = email("alice-work")
    await add_contact(alice, second)
    assert await verify_contact(alice, second) == 2
    assert await verify_contact(alice, second) == 2  # a retry after success
    assert (await bob.request_key(second)).box_id == str(alice.box_id)
    assert (await bob.request_key(first)).box_id == str(alice.box_id)

    removed = await alice.call(
        "RemoveContact", pb.RemoveContactRequest(contact=contact(first)), pb.RemoveContactResponse
    )
    assert removed.contact_count == 1
    await expect(C.NOT_FOUND, "NOT_FOUND", bob.request_key(first))
    await expect(
        C.FAILED_PRECONDITION,
        "LAST_CONTACT",
        alice.call(
            "RemoveContact",
            pb.RemoveContactRequest(contact=contact(second)),
            pb.RemoveContactResponse,
        ),
    )
    await expect(
        C.NOT_FOUND,
        "CONTACT_NOT_FOUND",
        alice.call(
            "RemoveContact",
            pb.RemoveContactRequest(contact=contact(bob.contacts[0])),
            pb.RemoveContactResponse,
        ),
    )
    # The released contact is free for anyone now.
    assert (await Device(api, first).join()).box_id != alice.box_id


async def test_adding_a_contact_is_verified_and_attempt_limited(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    # Another box's contact gets a code like a free one (no oracle); only
    # its holder, proving the code, learns it is taken.
    await add_contact(alice, bob.contacts[0])
    await expect(C.ALREADY_EXISTS, "CONTACT_TAKEN", verify_contact(alice, bob.contacts[0]))
    await expect(C.ALREADY_EXISTS, "CONTACT_ALREADY_YOURS", add_contact(alice, alice.contacts[0]))
    new = email("alice-new")
    await expect(C.NOT_FOUND, "CODE_NOT_FOUND", verify_contact(alice, new, "123456"))
    await add_contact(alice, new)
    await expect(C.RESOURCE_EXHAUSTED, "RATE_LIMITED", add_contact(alice, new))
    right = read_outbox_code(api.outbox, normalize("email", new))
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        await expect(C.PERMISSION_DENIED, "CODE_INVALID", verify_contact(alice, new, wrong))
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", verify_contact(alice, new, wrong))
    await expect(C.FAILED_PRECONDITION, "TOO_MANY_ATTEMPTS", verify_contact(alice, new, right))
    await expect(C.NOT_FOUND, "NOT_FOUND", bob.request_key(new))

    # A new code after the resend interval; it expires like Register's.
    api.clock.advance(31)
    await add_contact(alice, new)
    api.clock.advance(601)
    await expect(C.FAILED_PRECONDITION, "CODE_EXPIRED", verify_contact(alice, new))


# -- profiles and sender rules ------------------------------------------------------


class ProfileFields(TypedDict, total=False):
    """The fields an UpdateProfile may set (rossby.v1.UpdateProfileRequest)."""

    display_name: str
    description: str
    avatar_ref: str
    discoverable: bool
    accept_from: pb.AcceptFrom.ValueType


async def update_profile(dev: Device, **fields: Unpack[ProfileFields]) -> pb.Profile:
    reply = await dev.call(
        "UpdateProfile", pb.UpdateProfileRequest(**fields), pb.UpdateProfileResponse
    )
    return reply.profile


async def set_rule(dev: Device, box_id: uuid.UUID, rule: pb.SenderRule.ValueType) -> None:
    await dev.call(
        "SetSenderRule",
        pb.SetSenderRuleRequest(box_id=str(box_id), rule=rule),
        pb.SetSenderRuleResponse,
    )


async def not_found_like_unknown(caller: Device, target: Device, unknown_contact: str) -> None:
    """Every way ``caller`` can probe ``target`` answers exactly as for a box
    that does not exist."""
    assert target.box_id is not None
    ghost_box = uuid.uuid4()
    a = await expect(C.NOT_FOUND, "NOT_FOUND", caller.request_key(target.contacts[0]))
    b = await expect(C.NOT_FOUND, "NOT_FOUND", caller.request_key(unknown_contact))
    assert a.details() == b.details() and error_info(a) == error_info(b)
    c = await expect(C.NOT_FOUND, "NOT_FOUND", request_key_by_box(caller, target.box_id))
    d = await expect(C.NOT_FOUND, "NOT_FOUND", request_key_by_box(caller, ghost_box))
    assert c.details() == d.details() and error_info(c) == error_info(d)
    await expect(C.NOT_FOUND, "NOT_FOUND", key_log(caller, target.box_id))
    sent = await caller.send((target.box_id, b"hi", None), (ghost_box, b"hi", None))
    real, ghost = sent.results
    assert (real.outcome, real.code, real.reason) == (ghost.outcome, ghost.code, ghost.reason)
    assert (real.outcome, real.reason) == (pb.SEND_OUTCOME_REJECTED, "NOT_FOUND")
    assert real.position == ghost.position == 0


async def test_profile_is_set_validated_and_returned_with_the_keys(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    own = await alice.call("GetProfile", pb.GetProfileRequest(), pb.GetProfileResponse)
    assert own.profile.discoverable and own.profile.accept_from == pb.ACCEPT_FROM_ANYONE
    assert own.contact_count == 1
    p = await update_profile(
        alice, display_name="Alice", avatar_ref="blob:abc", description="hi\nthere"
    )
    assert (p.display_name, p.avatar_ref, p.description) == ("Alice", "blob:abc", "hi\nthere")
    p = await update_profile(alice, description="only this")
    assert (p.display_name, p.description) == ("Alice", "only this")
    err = await expect(
        C.INVALID_ARGUMENT, "PROFILE_INVALID", update_profile(alice, display_name="x" * 65)
    )
    assert "display_name" in err.details()
    await expect(C.INVALID_ARGUMENT, "PROFILE_INVALID", update_profile(alice, display_name="a\x00"))
    seen = await bob.request_key(alice.contacts[0])
    assert seen.profile.display_name == "Alice" and seen.profile.avatar_ref == "blob:abc"


async def test_non_discoverable_is_not_found_by_contact_only(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    await update_profile(alice, discoverable=False)
    a = await expect(C.NOT_FOUND, "NOT_FOUND", bob.request_key(alice.contacts[0]))
    b = await expect(C.NOT_FOUND, "NOT_FOUND", bob.request_key(email("nobody")))
    assert a.details() == b.details()
    # A correspondent who knows the box id still gets the keys and can send.
    assert (await request_key_by_box(bob, alice.box_id)).box_id == str(alice.box_id)
    assert (await bob.send((alice.box_id, b"hi", None))).results[
        0
    ].outcome == pb.SEND_OUTCOME_QUEUED
    # A box always finds itself.
    assert (await alice.request_key(alice.contacts[0])).box_id == str(alice.box_id)


async def test_a_blocked_sender_sees_exactly_an_unknown_box(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    carol = await Device(api, email("carol")).join()
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_BLOCKED)
    await not_found_like_unknown(bob, alice, email("nobody"))
    assert (await carol.send((alice.box_id, b"hi", None))).results[
        0
    ].outcome == pb.SEND_OUTCOME_QUEUED
    assert [m.sender_box_id for m in await alice.drain()] == [str(carol.box_id)]
    listed = await alice.call(
        "ListSenderRules",
        pb.ListSenderRulesRequest(rule=pb.SENDER_RULE_BLOCKED),
        pb.ListSenderRulesResponse,
    )
    assert list(listed.box_ids) == [str(bob.box_id)]
    # Alice can still reach Bob: blocking is one-way.
    assert (await alice.send((bob.box_id, b"hey", None))).results[
        0
    ].outcome == pb.SEND_OUTCOME_QUEUED
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_NONE)
    assert (await bob.request_key(alice.contacts[0])).box_id == str(alice.box_id)
    assert (await bob.send((alice.box_id, b"again", None))).results[
        0
    ].outcome == pb.SEND_OUTCOME_QUEUED
    await expect(
        C.INVALID_ARGUMENT, "SELF_RULE", set_rule(alice, alice.box_id, pb.SENDER_RULE_BLOCKED)
    )


async def test_contacts_only_lets_accepted_boxes_through(api: Api) -> None:
    alice = await Device(api, email("alice")).join()
    bob = await Device(api, email("bob")).join()
    carol = await Device(api, email("carol")).join()
    p = await update_profile(alice, accept_from=pb.ACCEPT_FROM_CONTACTS_ONLY)
    assert p.accept_from == pb.ACCEPT_FROM_CONTACTS_ONLY
    await not_found_like_unknown(bob, alice, email("nobody"))
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_ACCEPTED)
    assert (await bob.request_key(alice.contacts[0])).box_id == str(alice.box_id)
    assert (await key_log(bob, alice.box_id)).head.seq == 1
    assert (await bob.send((alice.box_id, b"hi", None))).results[
        0
    ].outcome == pb.SEND_OUTCOME_QUEUED
    await not_found_like_unknown(carol, alice, email("nobody"))
    # Blocking overrides acceptance (one rule per pair: the later wins).
    await set_rule(alice, bob.box_id, pb.SENDER_RULE_BLOCKED)
    await not_found_like_unknown(bob, alice, email("nobody"))
    accepted = await alice.call(
        "ListSenderRules",
        pb.ListSenderRulesRequest(rule=pb.SENDER_RULE_ACCEPTED),
        pb.ListSenderRulesResponse,
    )
    assert list(accepted.box_ids) == []


# -- the key log, as the SDK checks it ------------------------------------------------


def who(c: RossbyClient) -> str:
    return c.whoami().contacts[0]


async def forge_entry(
    api: Api,
    box_id: uuid.UUID,
    *,
    kind: ChangeKind,
    device: uuid.UUID,
    actor: uuid.UUID,
    keys: tuple[bytes, bytes],
    signature: bytes,
    seq: int | None = None,
    prev: bytes | None = None,
    timestamp_ms: int = 1_800_000_000_000,
) -> KeyLogEntry:
    """What a malicious server can write: any entry, hashed correctly."""
    from rossby.crypto.keylog import entry_hash

    store = api.store
    head = await store.key_log_head(box_id)
    assert head is not None
    seq = seq if seq is not None else head.seq + 1
    prev = prev if prev is not None else head.hash
    digest = entry_hash(box_id, seq, prev, timestamp_ms, kind, device, actor, *keys, signature)
    return KeyLogEntry(
        box_id, seq, prev, digest, timestamp_ms, kind.label, device, actor, *keys, signature
    )


async def raw_delete_log(api: Api, box_id: uuid.UUID, seq: int) -> None:
    """Delete one key-log row behind the server's back (a rollback)."""
    url = parse_store_url(api.server.settings.store)
    if url.scheme == "sqlite":
        import sqlite3

        def go() -> None:
            with sqlite3.connect(url.path) as db:
                db.execute("DELETE FROM key_log WHERE box_id = ? AND seq = ?", (box_id.bytes, seq))
    else:

        def go() -> None:
            from cassandra.cluster import Cluster

            cluster = Cluster(list(url.hosts), port=url.port, protocol_version=PROTOCOL_VERSION)
            try:
                cluster.connect().execute(
                    f"DELETE FROM {url.keyspace}.key_log WHERE box_id = %s AND seq = %s",
                    (box_id, seq),
                )
            finally:
                cluster.shutdown()

    await asyncio.to_thread(go)


async def test_the_sdk_detects_a_forged_key_log_entry(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    await alice.resolve(who(bob))
    # The server adds a device of its own to Bob's box and logs it, but it
    # cannot sign the entry with one of Bob's devices' keys.
    intruder, intruder_id = DeviceKeyPair.generate(), uuid.uuid4()
    pub = intruder.public()
    entry = await forge_entry(
        api,
        bob.box_id,
        kind=ChangeKind.LINK,
        device=intruder_id,
        actor=bob.device_id,
        keys=(pub.encryption_public, pub.signing_public),
        signature=sign_change(
            intruder.signing_private,
            ChangeKind.LINK,
            bob.box_id,
            intruder_id,
            pub.encryption_public,
            pub.signing_public,
        ),
    )
    store = api.store
    assert await store.append_key_log(entry)
    await api.store.add_device(
        StoreDevice(
            bob.box_id,
            intruder_id,
            "intruder",
            StoreDeviceKeys(
                pub.encryption_public, pub.signing_public, intruder.key_signature(intruder_id)
            ),
            b"k" * 32,
            DeviceState.ACTIVE,
            0.0,
        )
    )
    before = alice.pinned_devices(bob.box_id)
    with pytest.raises(KeyLogError, match="forged"):
        await alice.send([who(bob)], "to whom?")
    assert alice.pinned_devices(bob.box_id) == before  # nothing was pinned or sent
    # A fresh device that never saw the chain detects it too (from entry 1).
    with pytest.raises(KeyLogError, match="forged"):
        await (await people("carol")).resolve(who(bob))


async def test_the_sdk_detects_keys_the_log_does_not_vouch_for(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    await alice.resolve(who(bob))
    new = DeviceKeyPair.generate()
    await api.store.rotate_device_keys(
        bob.box_id,
        bob.device_id,
        StoreDeviceKeys(
            new.encryption_public_bytes, new.signing_public_bytes, new.key_signature(bob.device_id)
        ),
    )
    with pytest.raises(KeyLogError, match="than its key log"):
        await alice.send([who(bob)], "to the swapped key?")


async def test_the_sdk_detects_a_rolled_back_key_log(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    first = await alice.resolve(who(bob))
    assert first.key_log_seq == 1
    old_keys = bob._keyfile.keys
    with pytest.warns(KeyChangeWarning):
        await bob.rotate_keys()
        info = await alice.resolve(who(bob))
    assert info.key_log_seq == 2 and info.key_change is not None
    # The server forgets the rotation: log entry and keys both rolled back.
    await raw_delete_log(api, bob.box_id, 2)
    await api.store.rotate_device_keys(
        bob.box_id,
        bob.device_id,
        StoreDeviceKeys(
            old_keys.encryption_public_bytes,
            old_keys.signing_public_bytes,
            old_keys.key_signature(bob.device_id),
        ),
    )
    with pytest.raises(KeyLogError, match="rolled back"):
        await alice.resolve(who(bob))


async def test_the_sdk_detects_a_forked_key_log(api: Api, people: Join) -> None:
    alice, bob = await people("alice"), await people("bob")
    assert bob.box_id is not None
    await bob.rotate_keys()
    await alice.resolve(who(bob))  # pins entries 1..2
    # The server rewrites entry 2 (same change, another timestamp): same
    # seq, different hash.
    store = api.store
    (second,) = await store.key_log(bob.box_id, after=1)
    await raw_delete_log(api, bob.box_id, 2)
    rewritten = await forge_entry(
        api,
        bob.box_id,
        kind=ChangeKind.ROTATE,
        device=bob.device_id,
        actor=bob.device_id,
        keys=(second.encryption_key, second.signing_key),
        signature=second.signature,
        seq=2,
        prev=second.prev_hash,
        timestamp_ms=second.timestamp_ms + 1,
    )
    assert await store.append_key_log(rewritten)
    with pytest.raises(KeyLogError, match="forked"):
        await alice.resolve(who(bob))


async def test_the_sdk_key_log_view_and_a_linked_device(
    api: Api, people: Join, tmp_path: Path
) -> None:
    alice, bob = await people("alice"), await people("bob")
    await bob.resolve(who(alice))
    invite = await alice.create_link_offer()
    async with RossbyClient.join(
        tmp_path / "tablet", PASS, code=invite.uri, device_name="tablet", scrypt_n=FAST
    ) as tablet:
        request = await alice.wait_for_link(invite, wait=20, poll=0.05)
        assert request.device_id == tablet.device_id and request.device_name == "tablet"
        await alice.approve_link(invite, request)
        await tablet.complete_link(wait=20, poll=0.05)
        await tablet.rotate_keys()
        with pytest.warns(KeyChangeWarning):  # the tablet's new keys, in Alice's own box
            await alice.revoke(tablet.device_id)
    view = await bob.key_log(who(alice))
    assert [e.kind for e in view.entries] == ["register", "link", "rotate", "revoke"]
    assert [e.seq for e in view.entries] == [1, 2, 3, 4]
    assert view.entries[1].actor_device_id == alice.device_id
    assert view.entries[3].device_id == view.entries[2].device_id
    own = await alice.key_log()
    assert own.head == view.head


async def test_the_sdk_under_contacts_only_accepts_whom_it_writes_to(
    api: Api, people: Join
) -> None:
    from rossby import errors
    from rossby.client import ReceivedMessage

    alice, bob, carol = await people("alice"), await people("bob"), await people("carol")
    profile = await alice.update_profile(display_name="Alice", accept_from="contacts-only")
    assert (profile.display_name, profile.accept_from) == ("Alice", "contacts-only")
    with pytest.raises(errors.NotFound):
        await bob.resolve(who(alice))
    report = await alice.send([who(bob)], "hi bob")
    assert report.ok and await alice.accepted() == [bob.box_id]
    # Bob can verify Alice's message (her keys by box id) and answer her.
    events = [e async for e in bob.fetch_messages()]
    assert [e.text for e in events if isinstance(e, ReceivedMessage)] == ["hi bob"]
    info = await bob.resolve(who(alice))
    assert info.profile is not None and info.profile.display_name == "Alice"
    assert (await bob.send([who(alice)], "hi alice")).ok
    with pytest.raises(errors.NotFound):
        await carol.send([who(alice)], "and me?")
    # Blocking through the SDK, by box id or contact.
    assert await alice.block(who(bob)) == bob.box_id
    assert await alice.blocked() == [bob.box_id] and await alice.accepted() == []
    with pytest.raises(errors.NotFound):
        await bob.send([who(alice)], "still there?")
    await alice.unblock(bob.box_id)
    assert await alice.blocked() == []
