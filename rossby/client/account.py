"""The box's account at the server: its contacts, its profile, its sender rules.

Each call changes what the server holds for the box and mirrors it in the
local state (``own_contacts``, ``accept_from``, ``rules``), so the message
paths can act on it without asking again: ``send`` accepts the boxes it
writes to under ``contacts-only`` (``accept_recipients``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from rossby.client.contacts import ContactLike, parse_contact
from rossby.client.directory import Directory
from rossby.client.errors import ClientError
from rossby.client.models import ProfileInfo
from rossby.client.session import Session
from rossby.client.wire import ACCEPT_PB, RULE_PB, pb_contact, profile_info
from rossby.v1 import rossby_pb2 as pb


class Account:
    """Contacts, profile and sender rules of this device's box."""

    def __init__(self, session: Session, directory: Directory) -> None:
        self._session = session
        self._directory = directory

    # -- contacts ----------------------------------------------------------------

    async def add_contact(self, contact: ContactLike) -> int:
        reply = await self._session.call(
            "AddContact",
            pb.AddContactRequest(contact=pb_contact(parse_contact(contact))),
            pb.AddContactResponse,
        )
        return int(reply.code_ttl_seconds)

    async def verify_contact(self, contact: ContactLike, code: str) -> int:
        parsed = parse_contact(contact)
        reply = await self._session.call(
            "VerifyContact",
            pb.VerifyContactRequest(contact=pb_contact(parsed), code=code.strip()),
            pb.VerifyContactResponse,
        )
        if parsed not in self._session.state.own_contacts:
            self._session.state.own_contacts.append(parsed)
        self._session.save()
        return int(reply.contact_count)

    async def remove_contact(self, contact: ContactLike) -> int:
        parsed = parse_contact(contact)
        reply = await self._session.call(
            "RemoveContact",
            pb.RemoveContactRequest(contact=pb_contact(parsed)),
            pb.RemoveContactResponse,
        )
        if parsed in self._session.state.own_contacts:
            self._session.state.own_contacts.remove(parsed)
        self._session.save()
        return int(reply.contact_count)

    # -- profile -----------------------------------------------------------------

    async def profile(self) -> ProfileInfo:
        reply = await self._session.call(
            "GetProfile", pb.GetProfileRequest(), pb.GetProfileResponse
        )
        info = profile_info(reply.profile)
        self._session.state.accept_from = info.accept_from
        self._session.save()
        return info

    async def update_profile(
        self,
        *,
        display_name: str | None = None,
        description: str | None = None,
        avatar_ref: str | None = None,
        discoverable: bool | None = None,
        accept_from: str | None = None,
    ) -> ProfileInfo:
        request = pb.UpdateProfileRequest()
        if display_name is not None:
            request.display_name = display_name
        if description is not None:
            request.description = description
        if avatar_ref is not None:
            request.avatar_ref = avatar_ref
        if discoverable is not None:
            request.discoverable = discoverable
        if accept_from is not None:
            if accept_from not in ACCEPT_PB:
                raise ClientError("accept_from is 'anyone' or 'contacts-only'")
            request.accept_from = ACCEPT_PB[accept_from]
        reply = await self._session.call("UpdateProfile", request, pb.UpdateProfileResponse)
        info = profile_info(reply.profile)
        self._session.state.accept_from = info.accept_from
        self._session.save()
        return info

    # -- sender rules ------------------------------------------------------------

    async def _box_of(self, target: ContactLike | uuid.UUID) -> uuid.UUID:
        """A box id given as such, or the box our address book (else the
        keystore) has for a contact."""
        if isinstance(target, uuid.UUID):
            return target
        if isinstance(target, str):
            try:
                return uuid.UUID(target)
            except ValueError:
                pass
        contact = parse_contact(target)
        known = self._session.state.book.get(contact)
        if known is not None:
            return known
        return (await self._directory.lookup(contact)).box_id

    async def rule(self, target: ContactLike | uuid.UUID, rule: str | None) -> uuid.UUID:
        """Set (``"blocked"``, ``"accepted"``) or clear (None) our rule about a box."""
        box_id = await self._box_of(target)
        await self._session.call(
            "SetSenderRule",
            pb.SetSenderRuleRequest(
                box_id=str(box_id),
                rule=RULE_PB[rule] if rule is not None else pb.SENDER_RULE_NONE,
            ),
            pb.SetSenderRuleResponse,
        )
        rules = self._session.state.rules
        if rule is None:
            rules.pop(box_id, None)
        else:
            rules[box_id] = rule
        self._session.save()
        return box_id

    async def listed(self, rule: str) -> list[uuid.UUID]:
        """The boxes the server holds this rule for; the local mirror follows."""
        reply = await self._session.call(
            "ListSenderRules",
            pb.ListSenderRulesRequest(rule=RULE_PB[rule]),
            pb.ListSenderRulesResponse,
        )
        boxes = [uuid.UUID(b) for b in reply.box_ids]
        rules = self._session.state.rules
        for b, r in list(rules.items()):
            if r == rule and b not in boxes:
                del rules[b]
        for b in boxes:
            rules[b] = rule
        self._session.save()
        return boxes

    async def accept_recipients(self, boxes: Sequence[uuid.UUID]) -> None:
        """Under contacts-only, the boxes we write to must be able to answer
        (and to fetch our keys to verify us): accept them, unless we hold a
        rule about them already."""
        state = self._session.state
        if state.accept_from != "contacts-only":
            return
        for box in boxes:
            if box != self._session.box_id and box not in state.rules:
                await self.rule(box, "accepted")


__all__ = ["Account"]
