"""The routing draw: which arm answers a request (SPEC section 1).

    u < 1 - w   -> champion
    u >= 1 - w  -> challenger        (w = challenger weight)

`u` comes from the injected random source, or, when the request carries a routing key,
from a hash of that key that is the same in every process, replica and restart.
"""

from __future__ import annotations

import hashlib
import random

from contender.routing.table import Arm

_TWO_TO_64 = float(2**64)


def sticky_draw(routing_key: str) -> float:
    """A draw in [0, 1) fixed by the key: the first 8 bytes of its SHA-256."""
    digest = hashlib.sha256(routing_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_TO_64


def arm_for(draw: float, challenger_weight: float) -> Arm:
    return Arm.CHALLENGER if draw >= 1.0 - challenger_weight else Arm.CHAMPION


class RoutingPolicy:
    """Weighted draw, sticky when a routing key is given."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def draw(self, routing_key: str | None) -> float:
        if routing_key is not None:
            return sticky_draw(routing_key)
        return self._rng.random()
