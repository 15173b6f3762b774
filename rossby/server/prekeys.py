"""UploadPrekeys, GetPrekeyStatus and ClaimPrekeys: the keystore as a prekey service.

A device publishes prekeys so others can start a forward-secret (PQXDH)
session with it while it is offline (docs/api.md, "Prekeys"). The server's
part is small but it is the whole of the exactly-once promise a sender
relies on, so each step has its reason:

* **Upload** checks every signature against the device's *current* Ed25519
  key: a prekey that does not verify under the key senders pin would make
  their first message fail, and a server that kept unsigned keys could not
  show it never substituted its own. A rotation racing the upload is caught
  by reading the key again after the write (``upload``).
* **Claim** answers exactly what RequestKey by box id answers (the same
  reads and the same visibility policy, ``rossby.server.visibility``), so
  it is no new oracle, and is rate limited per requester device and per
  target box (``prekey_claim_rate_per_device``/``_per_box``): each claim
  removes one key from each pool of every device claimed, and a client
  that claimed as fast as it liked could drain a box's pools and push
  every new sender onto the last-resort key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from rossby import errors
from rossby.crypto.prekeys import PrekeyKind, verify_prekey_signature
from rossby.server import validate
from rossby.server.accounts import Accounts, hidden
from rossby.server.caller import Caller
from rossby.server.keylog import head_pb
from rossby.server.prekeyinput import CheckedUpload, SignedPart, check_upload
from rossby.server.prekeystatus import PrekeyStatus
from rossby.server.ratelimit import RateLimit, device_key
from rossby.server.sizes import MAX_CLAIM_DEVICES
from rossby.server.visibility import sees
from rossby.store import Device, DeviceState, Store
from rossby.store.prekeys import ClaimedPrekeys, PoolFull
from rossby.v1 import rossby_pb2 as pb


def _pool_field(exc: PoolFull) -> str:
    return "one_time_kem_prekeys" if exc.kind is PrekeyKind.ONE_TIME_KEM else "one_time_prekeys"


def _revoked() -> errors.Unauthenticated:
    return errors.Unauthenticated("this device was revoked", reason="HAWK_UNKNOWN_ID")


def _bad_signature(part: SignedPart) -> errors.InvalidArgument:
    return errors.InvalidArgument(
        f"{part.field}.signature does not verify with this device's signing key",
        reason="PREKEY_SIGNATURE_INVALID",
        metadata={"field": f"{part.field}.signature"},
    )


def _first_bad(
    signing_key: bytes, device_id: uuid.UUID, parts: Sequence[SignedPart]
) -> SignedPart | None:
    for part in parts:
        if not verify_prekey_signature(
            signing_key, part.kind, device_id, part.key_id, part.public_key, part.signature
        ):
            return part
    return None


def _checked(
    request: pb.UploadPrekeysRequest,
    signing_key: bytes,
    device_id: uuid.UUID,
    pool_max: int,
    now: float,
) -> CheckedUpload:
    """The upload, checked whole: the input first, then every signature."""
    checked = check_upload(request, pool_max=pool_max, now_ms=int(now * 1000))
    bad = _first_bad(signing_key, device_id, checked.signed_parts)
    if bad is not None:
        raise _bad_signature(bad)
    return checked


def _device_keys(device: Device) -> pb.DevicePublicKeys:
    """As RequestKey lists a device (``rossby.server.inbox``)."""
    return pb.DevicePublicKeys(
        device_id=str(device.device_id),
        device_name=device.name,
        keys=pb.DeviceKeys(
            encryption_key=device.keys.encryption_key,
            signing_key=device.keys.signing_key,
            key_signature=device.keys.key_signature,
        ),
    )


def _bundle(device: Device, claimed: ClaimedPrekeys) -> pb.PrekeyBundle:
    bundle = pb.PrekeyBundle(
        device=_device_keys(device),
        signed_prekey=pb.SignedPrekey(
            key_id=claimed.signed_prekey.key_id,
            public_key=claimed.signed_prekey.public_key,
            signature=claimed.signed_prekey.signature,
        ),
        kem_prekey=pb.SignedPrekey(
            key_id=claimed.kem_prekey.key_id,
            public_key=claimed.kem_prekey.public_key,
            signature=claimed.kem_prekey.signature,
        ),
        kem_last_resort=claimed.kem_last_resort,
    )
    if claimed.one_time_prekey is not None:
        bundle.one_time_prekey.CopyFrom(
            pb.OneTimePrekey(
                key_id=claimed.one_time_prekey.key_id,
                public_key=claimed.one_time_prekey.public_key,
            )
        )
    return bundle


class Prekeys:
    """The three prekey RPCs over the store, the account reads and two limits."""

    def __init__(
        self,
        store: Store,
        accounts: Accounts,
        status: PrekeyStatus,
        *,
        pool_max: int,
        claim_per_device: RateLimit,
        claim_per_box: RateLimit,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        #: The visibility reads RequestKey makes (sender rule, key-log head).
        self.accounts = accounts
        #: Counts to messages, and the ``prekeys_low`` hint it keeps per device.
        self.status = status
        self.pool_max = pool_max
        self.claim_per_device = claim_per_device
        self.claim_per_box = claim_per_box
        self.clock = clock

    async def _device(self, caller: Caller) -> Device | None:
        me = await self.store.get_device(caller.box_id, caller.device_id)
        return me if me is not None and me.state is DeviceState.ACTIVE else None

    async def upload(
        self, request: pb.UploadPrekeysRequest, caller: Caller
    ) -> pb.UploadPrekeysResponse:
        me = await self._device(caller)
        if me is None:  # revoked since its Hawk key was read
            raise _revoked()
        signing_key = me.keys.signing_key
        # Parsing every key and up to 2 * pool_max + 1 Ed25519 verifications
        # take ~70 ms for a full upload on a slow core: off the event loop,
        # so the process's other calls run meanwhile.
        checked = await asyncio.to_thread(
            _checked, request, signing_key, caller.device_id, self.pool_max, self.clock()
        )
        try:
            counts = await self.store.put_prekeys(
                caller.box_id, caller.device_id, checked.upload, pool_max=self.pool_max
            )
        except PoolFull as exc:
            raise errors.ResourceExhausted(
                f"{_pool_field(exc)}: the pool would hold {exc.have} keys, at most {exc.limit}",
                reason="PREKEY_POOL_FULL",
                metadata={"field": _pool_field(exc), "max": str(exc.limit), "have": str(exc.have)},
            ) from None
        # A RotateKeys (or revocation) between the read above and the write
        # deletes the device's prekeys after changing its key; if it changed
        # the key before this write, its delete may have run first and these
        # keys, signed by the old key, would stay. Reading the key again
        # settles it: unchanged means any rotation comes later and deletes.
        now = await self._device(caller)
        if now is None or now.keys.signing_key != signing_key:
            await self.store.delete_prekeys(caller.box_id, caller.device_id)
            self.status.changed(caller.box_id, [caller.device_id])
            if now is None:
                raise _revoked()
            raise errors.InvalidArgument(
                "this device's signing key changed during the upload; sign with the new key",
                reason="PREKEY_SIGNATURE_INVALID",
                metadata={"field": ""},
            )
        self.status.counted(caller.box_id, caller.device_id, counts)
        return pb.UploadPrekeysResponse(status=self.status.to_pb(counts))

    async def get_status(
        self, request: pb.GetPrekeyStatusRequest, caller: Caller
    ) -> pb.GetPrekeyStatusResponse:
        status = await self.status.read(caller.box_id, caller.device_id)
        return pb.GetPrekeyStatusResponse(status=status)

    async def claim(
        self, request: pb.ClaimPrekeysRequest, caller: Caller
    ) -> pb.ClaimPrekeysResponse:
        box_id = validate.parse_id("box_id", request.box_id)
        validate.count("device_ids", len(request.device_ids), 0, MAX_CLAIM_DEVICES)
        named = [validate.parse_id(f"device_ids[{i}]", d) for i, d in enumerate(request.device_ids)]
        # Counted before any read, so probing hidden boxes costs as much as
        # claiming visible ones.
        await self.claim_per_device.hit(device_key(caller.box_id, caller.device_id))
        # RequestKey's reads by box id, all of them whatever the answer.
        box, profile, devices, (rule, head) = await asyncio.gather(
            self.store.get_box(box_id),
            self.store.get_profile(box_id),
            self.store.list_devices(box_id),
            self.accounts.lookup_reads(box_id, caller.box_id),
        )
        if box is None or not devices:
            raise hidden()
        if not sees(box_id, caller.box_id, profile, rule, by_contact=False):
            raise hidden()
        # Counted once the box is known visible: a hidden box's budget
        # cannot be spent by those it hides from. A refusal here has spent
        # the caller's own unit above, so hammering a limited box is not free.
        await self.claim_per_box.hit(str(box_id))
        active = {d.device_id: d for d in devices}
        if named:
            wanted = list(dict.fromkeys(named))
        else:
            # A device has no session with itself.
            wanted = [d for d in active if (box_id, d) != (caller.box_id, caller.device_id)]
        targets = [d for d in wanted if d in active]
        claimed = await self.store.claim_prekeys(box_id, targets) if targets else []
        self.status.changed(box_id, [c.device_id for c in claimed])
        got = {c.device_id: c for c in claimed}
        return pb.ClaimPrekeysResponse(
            box_id=str(box_id),
            bundles=[_bundle(active[d], got[d]) for d in targets if d in got],
            devices_without_prekeys=[str(d) for d in wanted if d not in got],
            key_log=head_pb(head),
        )


__all__ = ["Prekeys"]
