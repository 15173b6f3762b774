"""How many one-time prekeys a refill adds, from the status the server answers.

A pure function of ``PrekeyStatusInfo``, tested on its own because one case
cannot be made on a single-region server: Cassandra's per-region shares can
leave one share under the low water while the total is at the target.
"""

from __future__ import annotations

import pytest

from rossby.client.models import PrekeyStatusInfo
from rossby.client.prekeys import one_time_to_add


def status(count: int, *, low: bool, pool_max: int = 200, low_water: int = 20) -> PrekeyStatusInfo:
    return PrekeyStatusInfo(count, count, 1, 0, 2, low, low_water, pool_max)


@pytest.mark.parametrize(
    ("count", "low", "pool_max", "added"),
    [
        (100, False, 200, 0),  # at the target
        (10, True, 200, 90),  # back up to the target
        (0, True, 200, 100),
        (100, True, 200, 40),  # one region's share ran dry: twice the low water
        (190, True, 200, 10),  # never past pool_max (PREKEY_POOL_FULL otherwise)
        (200, True, 200, 0),
        (10, True, 50, 40),  # a server whose pool_max is under the target
    ],
)
def test_refill_amounts(count: int, low: bool, pool_max: int, added: int) -> None:
    assert one_time_to_add(count, status(count, low=low, pool_max=pool_max)) == added
