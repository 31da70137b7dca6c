"""The routing snapshot: which models serve, and how traffic splits between them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from contender.models import LoadedModel


class Arm(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


@dataclass(frozen=True, slots=True)
class Routing:
    """How traffic splits: the registry tag `contender.routing`, or the flags without one."""

    challenger_weight: float
    testing: bool
    revision: int | None = None
    """The tag's revision; None when the flags, not the registry, set the routing."""


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """An immutable snapshot of what serves traffic.

    A request reads `TableHolder.current` once and keeps that snapshot to its end, so a
    hot reload or a routing change mid-request never mixes two tables. Models that a new
    snapshot drops are released when the last request holding the old one finishes.
    """

    champion: LoadedModel | None
    challenger: LoadedModel | None
    challenger_weight: float
    testing: bool
    routing_revision: int | None = None

    @property
    def routing(self) -> Routing:
        return Routing(self.challenger_weight, self.testing, self.routing_revision)

    @property
    def scores_challenger(self) -> bool:
        """Both models run on each request only with testing on and a challenger loaded."""
        return self.testing and self.challenger is not None

    def with_models(
        self, champion: LoadedModel | None, challenger: LoadedModel | None
    ) -> RoutingTable:
        return replace(self, champion=champion, challenger=challenger)

    def with_routing(self, routing: Routing) -> RoutingTable:
        return replace(
            self,
            challenger_weight=routing.challenger_weight,
            testing=routing.testing,
            routing_revision=routing.revision,
        )


class TableHolder:
    """Holds the current snapshot: many readers, a few writers that replace it whole.

    Replacing one attribute is atomic under the GIL, so readers take no lock. Writers (the
    registry poller, the routing admin endpoint) serialise on a lock so that neither
    overwrites the other's change with a stale copy.
    """

    def __init__(self, initial: RoutingTable) -> None:
        self._current = initial
        self._writer = threading.Lock()

    @property
    def current(self) -> RoutingTable:
        return self._current

    def update(self, change: Callable[[RoutingTable], RoutingTable]) -> RoutingTable:
        """Apply `change` to the latest snapshot and publish the result."""
        with self._writer:
            self._current = change(self._current)
            return self._current
