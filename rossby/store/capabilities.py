"""What a backend can and cannot promise, declared with the reason why.

The two backends differ where their databases differ (one SQLite file with
one writer; Cassandra replicas in several datacenters without Paxos on the
hot paths). Callers ask ``store.capabilities`` instead of testing the
backend's class or its ``settle_window``, so a difference is written down
once, beside its reason, and the conformance suite can check each one: a
backend that declares a capability passes its tests, one that declares its
absence says why (the skip reason) or refuses with ``Unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rossby.errors import FailedPrecondition


class Unsupported(FailedPrecondition):
    """The store was asked for something its backend declares it cannot do."""

    default_reason = "UNSUPPORTED"


@dataclass(frozen=True, slots=True)
class Capability:
    """One promise a backend makes or declines, with the reason either way.

    ``refusal`` is the ``ErrorInfo`` reason a call that needs the missing
    capability fails with (``Unsupported``).
    """

    supported: bool
    reason: str
    refusal: str = Unsupported.default_reason

    def __bool__(self) -> bool:
        return self.supported

    def refuse(self, message: str) -> Unsupported:
        """The typed error for a call that needs this capability."""
        return Unsupported(message, reason=self.refusal)


def yes(reason: str) -> Capability:
    return Capability(True, reason)


def no(reason: str, refusal: str = Unsupported.default_reason) -> Capability:
    return Capability(False, reason, refusal)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Every difference between backends that a caller may depend on."""

    #: Positions become visible in position order, so a cursor never has a
    #: message appear below it later (``settle_window == 0``). Without it,
    #: Fetch re-reads ``settle_window`` below the cursor and clients drop the
    #: repeats by message id.
    ordered_visibility: Capability
    #: Enqueue is one transaction: attempts of one message id that overlap,
    #: in any processes, store one copy, and the pending cap is exact.
    exact_enqueue: Capability
    #: ``reserve_code_sends`` counts and records in one transaction, so
    #: racing processes cannot exceed a contact's limit.
    exact_code_sends: Capability
    #: ``compact`` reports how many rows it removed (``Compaction.removed``).
    counts_compacted_rows: Capability
    #: Rows expire by themselves; without it ``purge_expired`` and
    #: ``purge_presence`` must run as housekeeping.
    native_expiry: Capability
    #: Presence rows (``put_presence`` ...) for real-time delivery across
    #: processes; without it streams rely on the in-process hub and the poll.
    presence: Capability
    #: Boxes have a home region that can move (``Store.home_regions``).
    home_regions: Capability
    #: A device's one-time prekey pools are one pool wherever the claim is
    #: served: ``claim_prekeys`` answers the last-resort KEM key only once
    #: every one-time key is spent. Without it each region hands out only
    #: its share, and ``PrekeyCounts.lowest_*`` says how full the emptiest is.
    global_prekey_pools: Capability

    def items(self) -> list[tuple[str, Capability]]:
        """(name, capability) for every field, in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


__all__ = ["Capabilities", "Capability", "Unsupported", "no", "yes"]
