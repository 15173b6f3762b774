"""Taking one one-time prekey from a region's share: the bounded
compare-and-set loop of ``claim_prekeys`` on Cassandra.

Each round reads a few candidate rows (at the store's consistency), then
tries them in random order with a conditional delete (``IF public_key =
?``, Paxos at LOCAL_SERIAL). The first that applies is this claim's key;
Paxos lets exactly one of several claims of one row apply, so no key is
handed out twice. A loss means another process of the region took that
row: try the next candidate, and after a round of losses read again after
a short jittered pause. Random order keeps racing processes off the same
row. After ``ROUNDS`` lost rounds the claim is refused
(``PrekeyClaimContended``) rather than answered with the last-resort key
while the pool still has keys. Within a process, claims of one pool queue
on a lock before they get here, so only processes duel.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from rossby.store.prekeys import Prekey, PrekeyClaimContended

#: Candidate rows one round reads (and tries at most).
CANDIDATES = 4
#: Rounds of lost compare-and-sets before the claim is refused.
ROUNDS = 8
#: Upper bound of the pause after the first lost round, growing per round.
BACKOFF = 0.02


async def take(
    read: Callable[[int], Awaitable[list[Prekey]]],
    cas: Callable[[Prekey], Awaitable[bool]],
    *,
    rng: random.Random | None = None,
    rounds: int = ROUNDS,
) -> Prekey | None:
    """One key, or None when ``read`` finds the share empty.

    ``read(n)`` answers up to ``n`` candidate rows; ``cas(key)`` deletes the
    row if it still holds ``key`` and answers whether it did.
    """
    pick = rng or random.SystemRandom()
    for round_ in range(rounds):
        candidates = await read(CANDIDATES)
        if not candidates:
            return None
        pick.shuffle(candidates)
        for key in candidates:
            if await cas(key):
                return key
        await asyncio.sleep(pick.uniform(0, BACKOFF * (round_ + 1)))
    raise PrekeyClaimContended(
        f"store: prekey claim lost {rounds} rounds to concurrent claims; retry", applied=None
    )


__all__ = ["BACKOFF", "CANDIDATES", "ROUNDS", "take"]
