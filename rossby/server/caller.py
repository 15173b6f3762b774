"""``Caller``: the device a verified Hawk header speaks for.

Its own module because every signed handler takes one (inbox, accounts,
linking) and the service builds it: none of them should import another
handler to name the type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    """The device a verified Hawk header speaks for."""

    box_id: uuid.UUID
    device_id: uuid.UUID


__all__ = ["Caller"]
