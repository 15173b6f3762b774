"""GetPushConfig, SetPushTarget and ClearPushTarget (docs/api.md "Push").

All three are Hawk-signed: a device registers, replaces and clears only
its own target. Registering checks the target (``rossby.server.push.targets``),
stamps it with the server clock (``registered_at``, which tells
registrations apart when a push service later calls one gone) and stores
it; the dispatcher's cached read of the box's targets is dropped
(``on_changed``) so the next message already uses it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from rossby.server.account_rpcs import Rpc
from rossby.server.caller import Caller
from rossby.server.push.config import PushConfig
from rossby.server.push.targets import parse_target
from rossby.store import Store
from rossby.store.model import DeviceState
from rossby.v1 import rossby_pb2 as pb


class PushRpcs:
    def __init__(
        self,
        store: Store,
        config: PushConfig,
        *,
        clock: Callable[[], float],
        on_changed: Callable[[uuid.UUID], None],
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.on_changed = on_changed

    def signed(self) -> dict[str, Rpc]:
        return {
            "GetPushConfig": (
                self.get_config,
                pb.GetPushConfigRequest,
                pb.GetPushConfigResponse,
            ),
            "SetPushTarget": (self.set_target, pb.SetPushTargetRequest, pb.SetPushTargetResponse),
            "ClearPushTarget": (
                self.clear_target,
                pb.ClearPushTargetRequest,
                pb.ClearPushTargetResponse,
            ),
        }

    async def get_config(
        self, request: pb.GetPushConfigRequest, caller: Caller
    ) -> pb.GetPushConfigResponse:
        return pb.GetPushConfigResponse(
            vapid_public_key=self.config.vapid_public_key,
            gateway_app_ids=sorted(self.config.gateways),
        )

    async def set_target(
        self, request: pb.SetPushTargetRequest, caller: Caller
    ) -> pb.SetPushTargetResponse:
        target = parse_target(
            request,
            self.config,
            box_id=caller.box_id,
            device_id=caller.device_id,
            now=self.clock(),
        )
        await self.store.put_push_target(target)
        # A revocation that ran between the Hawk check and the put would
        # leave a revoked device's target behind: look once more.
        device = await self.store.get_device(caller.box_id, caller.device_id)
        if device is None or device.state is not DeviceState.ACTIVE:
            await self.store.delete_push_target(caller.box_id, caller.device_id)
        self.on_changed(caller.box_id)
        return pb.SetPushTargetResponse()

    async def clear_target(
        self, request: pb.ClearPushTargetRequest, caller: Caller
    ) -> pb.ClearPushTargetResponse:
        await self.store.delete_push_target(caller.box_id, caller.device_id)
        self.on_changed(caller.box_id)
        return pb.ClearPushTargetResponse()


__all__ = ["PushRpcs"]
