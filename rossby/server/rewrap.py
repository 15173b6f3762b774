"""``rossby rotate-keys``: bring every stored Hawk key under the current
master key.

Two jobs, one pass over every device (``Store.device_page``):

* **upgrade**: a clear key left by a release before the keyring (schema
  <= 6) is wrapped, so the database stops holding usable credentials;
* **rotation**: a key wrapped under an older master key is re-wrapped under
  the first key of ``hawk_keys``, after which the old key can be removed.

The device keeps the Hawk key it has: only its stored form changes, so no
device needs to re-register. A key that does not open (its master key is
not in ``hawk_keys``) is left as it is and counted; the command then exits
1, because removing a key that such rows still need locks their devices
out. Safe to re-run and to run while servers serve: a device minted during
the pass is already under the current key, and every server opens keys
under any key of its keyring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from rossby.logging import get_logger
from rossby.server.hawkkeys import HawkKeyring, HawkKeyUnavailable, is_legacy, stored_key_id
from rossby.store import Store

log = get_logger(__name__)

PAGE = 500


@dataclass
class RewrapReport:
    devices: int = 0
    #: Already under the current master key: nothing to do.
    current: int = 0
    #: Re-wrapped from an older master key, by that key's id.
    rewrapped: Counter[int] = field(default_factory=Counter)
    #: Clear keys (written before the keyring) now wrapped.
    legacy: int = 0
    #: Could not be opened, by key id (0: not a stored key at all).
    unavailable: Counter[int] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rewrapped"] = {str(k): v for k, v in self.rewrapped.items()}
        out["unavailable"] = {str(k): v for k, v in self.unavailable.items()}
        return out


async def rewrap_all(
    store: Store, keyring: HawkKeyring, *, dry_run: bool = False, page: int = PAGE
) -> RewrapReport:
    """Visit every device; with ``dry_run`` only count what would change."""
    report = RewrapReport()
    after = None
    while devices := await store.device_page(after, page):
        for device in devices:
            report.devices += 1
            stored = device.hawk_key
            if keyring.is_current(stored):
                report.current += 1
                continue
            try:
                key = keyring.unwrap(device.box_id, device.device_id, stored)
            except HawkKeyUnavailable as exc:
                report.unavailable[exc.key_id or 0] += 1
                continue
            if is_legacy(stored):
                report.legacy += 1
            else:
                report.rewrapped[stored_key_id(stored) or 0] += 1
            if not dry_run:
                wrapped = keyring.wrap(device.box_id, device.device_id, key)
                await store.set_hawk_key(device.box_id, device.device_id, wrapped)
        last = devices[-1]
        after = (last.box_id, last.device_id)
    log.info(
        "hawk_keys_rewrapped", dry_run=dry_run, current_key=keyring.current_id, **report.as_dict()
    )
    return report
