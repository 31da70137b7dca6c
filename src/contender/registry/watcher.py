"""RegistryWatcher: keeps the served models in step with the registry.

Each poll asks the registry which versions fill the champion and challenger slots and
compares them with the snapshot being served. For a slot whose version changed it
reuses the model when the other slot already has that version loaded (a promoted
challenger is moved, not downloaded again), and otherwise downloads, loads and warms the
new version. Only then does it publish a new snapshot: load, then swap, then retire.

Failure modes: a registry that cannot be reached leaves everything as it is and sets
`last_poll_error`; a version that fails to load or warm up is not swapped in, the old
model serves on, the slot's error shows in `/status`, and the next poll tries again.
`poll_once` blocks (MLflow's client is blocking HTTP): callers run it in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from contender.clock import Clock
from contender.metrics import ServiceMetrics
from contender.registry.client import ModelRef, RegistryClient
from contender.registry.loader import LoadedModel, ModelLoader
from contender.routing.table import RoutingTable, TableHolder
from contender.settings import Selector

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """One attempt to put a version into a slot."""

    at: str
    slot: str
    old_version: str | None
    new_version: str | None
    load_seconds: float
    outcome: str  # "loaded", "reused", "emptied" or "failed"
    error: str | None = None


class RegistryWatcher:
    def __init__(
        self,
        client: RegistryClient,
        loader: ModelLoader,
        holder: TableHolder,
        *,
        model_name: str,
        selector: Selector,
        clock: Clock,
        metrics: ServiceMetrics,
    ) -> None:
        self._client = client
        self._loader = loader
        self._holder = holder
        self._model_name = model_name
        self._selector = selector
        self._clock = clock
        self._metrics = metrics
        self._poll_lock = asyncio.Lock()
        self.last_poll_at: str | None = None
        self.last_poll_error: str | None = None
        self.slot_errors: dict[str, str] = {}
        self.events: deque[ReloadEvent] = deque(maxlen=50)

    def poll_once(self) -> bool:
        """Poll and apply; True when a new snapshot was published."""
        try:
            refs = self._client.resolve(self._model_name, self._selector)
        except Exception as error:
            self.last_poll_error = f"{type(error).__name__}: {error}"
            _log.warning("registry poll failed: %s", self.last_poll_error)
            return False
        self.last_poll_at = self._clock.now().isoformat()
        self.last_poll_error = None
        table = self._holder.current
        champion = self._fill("champion", refs.champion, table)
        challenger = self._fill("challenger", refs.challenger, table)
        if champion is table.champion and challenger is table.challenger:
            return False
        self._holder.update(lambda latest: latest.with_models(champion, challenger))
        return True

    async def poll(self) -> bool:
        """Poll now from the event loop; concurrent callers wait for one another."""
        async with self._poll_lock:
            return await asyncio.to_thread(self.poll_once)

    async def run(self, poll_interval_s: float) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(poll_interval_s)

    def _fill(self, slot: str, ref: ModelRef | None, table: RoutingTable) -> LoadedModel | None:
        current = table.champion if slot == "champion" else table.challenger
        current_version = current.ref.version if current is not None else None
        if ref is None:
            if current is not None:
                self._record(slot, current_version, None, 0.0, "emptied")
            self.slot_errors.pop(slot, None)
            return None
        if current is not None and current.ref == ref:
            self.slot_errors.pop(slot, None)
            return current
        for loaded in (table.champion, table.challenger):
            if loaded is not None and loaded.ref == ref:
                self._record(slot, current_version, ref.version, 0.0, "reused")
                self.slot_errors.pop(slot, None)
                return loaded
        return self._load(slot, ref, current)

    def _load(self, slot: str, ref: ModelRef, current: LoadedModel | None) -> LoadedModel | None:
        old_version = current.ref.version if current is not None else None
        started = self._clock.monotonic()
        try:
            loaded = self._loader(ref)
        except Exception as error:
            message = f"version {ref.version} failed to load: {type(error).__name__}: {error}"
            self.slot_errors[slot] = message
            self._record(slot, old_version, ref.version, self._clock.monotonic() - started,
                         "failed", message)  # fmt: skip
            return current
        self.slot_errors.pop(slot, None)
        self._record(slot, old_version, ref.version, loaded.load_seconds, "loaded")
        return loaded

    def _record(
        self,
        slot: str,
        old: str | None,
        new: str | None,
        load_seconds: float,
        outcome: str,
        error: str | None = None,
    ) -> None:
        at = self._clock.now().isoformat()
        self.events.append(ReloadEvent(at, slot, old, new, load_seconds, outcome, error))
        self._metrics.reloads.labels(slot, outcome).inc()
        _log.info(
            "reload slot=%s old_version=%s new_version=%s load_seconds=%.3f outcome=%s%s",
            slot, old, new, load_seconds, outcome, f" error={error!r}" if error else "",
        )  # fmt: skip
