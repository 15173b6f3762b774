"""The visibility policy (docs/api.md, "Profiles and sender rules") as
pure functions of what was read.

Kept apart from the handlers that do the reads so RequestKey can read the
same rows in every case and decide afterwards: a policy that reads as it
goes (the rule only for a box that exists and is discoverable) answers an
unknown, a hidden and a blocked box after different work, and the time
tells them apart (issue 16, finding 5).
"""

from __future__ import annotations

import uuid

from rossby.store import Profile
from rossby.store.accounts import SenderRule

ANYONE = "anyone"
CONTACTS_ONLY = "contacts-only"


def accepts(profile: Profile, rule: SenderRule | None) -> bool:
    """May a sender with ``rule`` reach a box with ``profile`` (not itself)?"""
    if rule is SenderRule.BLOCKED:
        return False
    return profile.accept_from != CONTACTS_ONLY or rule is SenderRule.ACCEPTED


def sees(
    target: uuid.UUID,
    caller: uuid.UUID,
    profile: Profile | None,
    rule: SenderRule | None,
    *,
    by_contact: bool,
) -> bool:
    """May ``caller`` see ``target``, given its profile and the rule it holds
    about the caller? A box always sees itself; a missing profile is a box
    that does not exist."""
    if target == caller:
        return True
    if profile is None:
        return False
    if by_contact and not profile.discoverable:
        return False
    return accepts(profile, rule)


__all__ = ["ANYONE", "CONTACTS_ONLY", "accepts", "sees"]
