"""Wiring of the account RPCs into the service.

``AccountRpcs`` builds the account handlers (``rossby.server.accounts``,
``rossby.server.linking``), hooks them into registration (the key log's
genesis entry) and the inbox (visibility, profile and key-log head in
RequestKey), and hands the service two tables: Hawk-signed methods and
public ones (JoinLink, CompleteLink: the new device has no credentials
yet).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from rossby.contacts import ContactHasher
from rossby.server.accounts import Accounts
from rossby.server.authcache import AuthCache
from rossby.server.inbox import Inbox
from rossby.server.linking import Linker
from rossby.server.notify import Notifier
from rossby.server.registration import Registrar
from rossby.store import Store
from rossby.v1 import rossby_pb2 as pb

if TYPE_CHECKING:
    from rossby.config import Settings

Rpc = tuple[Callable[..., Awaitable[Any]], type[Message], type[Message]]

PUBLIC = frozenset({"JoinLink", "CompleteLink"})


class AccountRpcs:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registrar: Registrar,
        inbox: Inbox,
        notifier: Notifier,
        hasher: ContactHasher,
        code_key: bytes,
        clock: Callable[[], float],
        auth_cache: AuthCache,
    ) -> None:
        accounts = store  # one contract: account calls are timed like the rest
        self.accounts = Accounts(
            store,
            accounts,
            notifier,
            hasher,
            code_key,
            code_ttl=settings.code_ttl,
            code_attempts=settings.code_attempts,
            resend_interval=settings.resend_interval,
            default_phone_region=settings.default_phone_region,
            clock=clock,
            contact_codes=registrar.contact_codes,  # one limit for Register and AddContact
            auth_cache=auth_cache,
        )
        self.linker = Linker(
            store,
            accounts,
            self.accounts.key_log,
            registrar.hawk_keys,
            home_region=settings.region or "dc1",
            link_ttl=settings.code_ttl,
            link_attempts=settings.code_attempts,
            clock=clock,
        )
        registrar.on_box_created = self.accounts.box_created
        inbox.accounts = self.accounts

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
