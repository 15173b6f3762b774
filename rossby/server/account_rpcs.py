"""The account RPCs' method tables.

``AccountRpcs`` takes the account handlers (``rossby.server.accounts``,
``rossby.server.linking``; the process wiring in ``rossby.server.wiring``
builds them and hooks them into registration and the inbox) and hands the
service two tables: Hawk-signed methods and public ones (JoinLink,
CompleteLink: the new device has no credentials yet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from rossby.server.accounts import Accounts
from rossby.server.linking import Linker
from rossby.v1 import rossby_pb2 as pb

Rpc = tuple[Callable[..., Awaitable[Any]], type[Message], type[Message]]

PUBLIC = frozenset({"JoinLink", "CompleteLink"})


class AccountRpcs:
    def __init__(self, accounts: Accounts, linker: Linker) -> None:
        self.accounts = accounts
        self.linker = linker

    def signed(self) -> dict[str, Rpc]:
        a, link = self.accounts, self.linker
        return {
            "CreateLinkOffer": (
                link.create_offer,
                pb.CreateLinkOfferRequest,
                pb.CreateLinkOfferResponse,
            ),
            "GetLinkOffer": (link.get_offer, pb.GetLinkOfferRequest, pb.GetLinkOfferResponse),
            "ApproveLink": (link.approve, pb.ApproveLinkRequest, pb.ApproveLinkResponse),
            "RevokeDevice": (a.revoke_device, pb.RevokeDeviceRequest, pb.RevokeDeviceResponse),
            "RotateKeys": (a.rotate_keys, pb.RotateKeysRequest, pb.RotateKeysResponse),
            "KeyLog": (a.get_key_log, pb.KeyLogRequest, pb.KeyLogResponse),
            "AddContact": (a.add_contact, pb.AddContactRequest, pb.AddContactResponse),
            "VerifyContact": (a.verify_contact, pb.VerifyContactRequest, pb.VerifyContactResponse),
            "RemoveContact": (a.remove_contact, pb.RemoveContactRequest, pb.RemoveContactResponse),
            "GetProfile": (a.get_profile, pb.GetProfileRequest, pb.GetProfileResponse),
            "UpdateProfile": (a.update_profile, pb.UpdateProfileRequest, pb.UpdateProfileResponse),
            "SetSenderRule": (a.set_sender_rule, pb.SetSenderRuleRequest, pb.SetSenderRuleResponse),
            "ListSenderRules": (
                a.list_sender_rules,
                pb.ListSenderRulesRequest,
                pb.ListSenderRulesResponse,
            ),
        }

    def public(self) -> dict[str, Rpc]:
        link = self.linker
        return {
            "JoinLink": (link.join, pb.JoinLinkRequest, pb.JoinLinkResponse),
            "CompleteLink": (link.complete, pb.CompleteLinkRequest, pb.CompleteLinkResponse),
        }


__all__ = ["PUBLIC", "AccountRpcs"]
