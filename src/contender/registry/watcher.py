"""RegistryWatcher: keeps the served models in step with the registry.

Each poll asks the registry which versions fill the champion and challenger slots and
compares them with the snapshot being served. For a slot whose version changed it
reuses the model when the other slot already has that version loaded (a promoted
challenger is moved, not downloaded again), and otherwise downloads, loads and warms the
new version. Only then does it publish a new snapshot: load, then swap, then retire.

Requests are never touched: each one holds the immutable `RoutingTable` it started with,
so a request in flight during a swap finishes on the model it began with, and a model a
new snapshot drops is released when the last such request lets go of it.

Failure modes: a registry that cannot be reached leaves everything as it is and sets
`last_poll_error` (cleared by the next good poll); a version that fails to load or warm
up is not swapped in, the old model serves on, the slot's error (with its attempt count)
shows in `/status`, and every later poll tries again. `run` outlives any error, the
first poll's included. `poll_once` blocks (MLflow's client is blocking HTTP): callers run
it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contender.clock import Clock
from contender.metrics import ServiceMetrics
from contender.registry.client import ModelRef, RegistryClient
from contender.registry.loader import LoadedModel, ModelLoader
from contender.registry.routing_tag import InvalidRouting, next_routing, parse_tag, tag_value
from contender.routing.table import Routing, RoutingTable, TableHolder
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
    attempt: int = 1
    """For "failed": how many polls in a row this version failed in this slot."""


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
        flags_routing: Routing,
    ) -> None:
        self._client = client
        self._loader = loader
        self._holder = holder
        self._model_name = model_name
        self._selector = selector
        self._clock = clock
        self._metrics = metrics
        self._flags_routing = flags_routing
        self._poll_lock = asyncio.Lock()
        self.last_poll_at: str | None = None
        self.last_poll_error: str | None = None
        self.slot_errors: dict[str, str] = {}
        self.routing_error: str | None = None
        """Why the registry's routing tag is not applied (it is not valid), or None."""
        self.events: deque[ReloadEvent] = deque(maxlen=50)
        self._failures: dict[str, tuple[ModelRef, int]] = {}
        """Slot -> the version that keeps failing to load there, and how many times."""

    @property
    def downloads(self) -> int:
        """Model artifacts downloaded so far (a reused model is not downloaded again)."""
        return self._loader.downloads

    def poll_once(self) -> bool:
        """Poll and apply; True when a new snapshot was published."""
        try:
            refs = self._client.resolve(self._model_name, self._selector)
        except Exception as error:
            # MLflow's messages can run over many lines; /status and the log want one.
            self.last_poll_error = _one_line(f"{type(error).__name__}: {error}")
            _log.warning("registry poll failed: %s", self.last_poll_error)
            self._metrics.registry_up.set(0)
            return False
        self._metrics.registry_up.set(1)
        if self.last_poll_error is not None:
            _log.info("registry reachable again after: %s", self.last_poll_error)
        self.last_poll_at = self._clock.now().isoformat()
        self.last_poll_error = None
        routing_changed = self._apply_routing(refs.routing_tag)
        table = self._holder.current
        champion = self._fill("champion", refs.champion, table)
        challenger = self._fill("challenger", refs.challenger, table)
        self._metrics.champion_loaded.set(0 if champion is None else 1)
        if champion is table.champion and challenger is table.challenger:
            return routing_changed
        self._holder.update(lambda latest: latest.with_models(champion, challenger))
        return True

    def _apply_routing(self, tag: str | None) -> bool:
        """The tag's routing, or the flags' when there is none; an invalid tag changes
        nothing (the routing in force stays) and shows in `/status`."""
        if tag is None:
            routing = self._flags_routing
        else:
            try:
                routing = parse_tag(tag)
            except InvalidRouting as error:
                if self.routing_error != str(error):
                    _log.warning("routing tag ignored: %s", error)
                self.routing_error = str(error)
                return False
        self.routing_error = None
        return self._publish_routing(routing)

    def _publish_routing(self, routing: Routing) -> bool:
        if self._holder.current.routing == routing:
            return False
        old = self._holder.current.routing
        self._holder.update(lambda latest: latest.with_routing(routing))
        _log.info(
            "routing challenger_weight=%g testing=%s revision=%s (was %g %s %s)",
            routing.challenger_weight, routing.testing, routing.revision,
            old.challenger_weight, old.testing, old.revision,
        )  # fmt: skip
        return True

    async def change_routing(
        self, challenger_weight: float | None, testing: bool | None
    ) -> Routing:
        """Write the routing tag one revision on, then apply it here at once; raises (and
        changes nothing) when the registry refuses. Polls wait meanwhile, so none applies
        a tag read before this write over it."""
        async with self._poll_lock:
            return await asyncio.to_thread(self._change_routing, challenger_weight, testing)

    def _change_routing(self, challenger_weight: float | None, testing: bool | None) -> Routing:
        tag = self._client.routing_tag(self._model_name)
        base = self._holder.current.routing
        if tag is not None:
            # An invalid tag is overwritten, from the routing in force.
            with contextlib.suppress(InvalidRouting):
                base = parse_tag(tag)
        routing = next_routing(base, challenger_weight, testing)
        self._client.write_routing_tag(self._model_name, tag_value(routing))
        self.routing_error = None
        self._publish_routing(routing)
        return routing

    async def poll(self) -> bool:
        """Poll now from the event loop; concurrent callers wait for one another."""
        async with self._poll_lock:
            return await asyncio.to_thread(self.poll_once)

    async def run(
        self,
        poll_interval_s: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        initial_delay_s: float = 0.0,
    ) -> None:
        """Poll every `poll_interval_s` until cancelled; no error ends the loop. A caller
        that has just polled itself passes `initial_delay_s` rather than poll twice."""
        if initial_delay_s > 0:
            await sleep(initial_delay_s)
        while True:
            try:
                await self.poll()
            except Exception:
                # A bug here must not silently stop hot reload for the process's lifetime.
                _log.exception("registry poll crashed; retrying in %s s", poll_interval_s)
            await sleep(poll_interval_s)

    def _fill(self, slot: str, ref: ModelRef | None, table: RoutingTable) -> LoadedModel | None:
        current = table.champion if slot == "champion" else table.challenger
        current_version = current.ref.version if current is not None else None
        if ref is None:
            if current is not None:
                self._record(slot, current_version, None, 0.0, "emptied")
            self._clear_failure(slot)
            return None
        if current is not None and current.ref == ref:
            self._clear_failure(slot)
            return current
        for loaded in (table.champion, table.challenger):
            if loaded is not None and loaded.ref == ref:
                self._record(slot, current_version, ref.version, 0.0, "reused")
                self._clear_failure(slot)
                return loaded
        return self._load(slot, ref, current)

    def _load(self, slot: str, ref: ModelRef, current: LoadedModel | None) -> LoadedModel | None:
        old_version = current.ref.version if current is not None else None
        started = self._clock.monotonic()
        try:
            loaded = self._loader(ref)
        except Exception as error:
            attempt = self._count_failure(slot, ref)
            message = _one_line(
                f"version {ref.version} failed to load (attempt {attempt}): "
                f"{type(error).__name__}: {error}"
            )
            self.slot_errors[slot] = message
            load_seconds = self._clock.monotonic() - started
            self._record(slot, old_version, ref.version, load_seconds, "failed", message, attempt)
            return current
        self._clear_failure(slot)
        self._record(slot, old_version, ref.version, loaded.load_seconds, "loaded")
        return loaded

    def _count_failure(self, slot: str, ref: ModelRef) -> int:
        previous, count = self._failures.get(slot, (None, 0))
        attempt = count + 1 if previous == ref else 1
        self._failures[slot] = (ref, attempt)
        return attempt

    def _clear_failure(self, slot: str) -> None:
        self._failures.pop(slot, None)
        self.slot_errors.pop(slot, None)

    def _record(
        self,
        slot: str,
        old: str | None,
        new: str | None,
        load_seconds: float,
        outcome: str,
        error: str | None = None,
        attempt: int = 1,
    ) -> None:
        at = self._clock.now().isoformat()
        self.events.append(ReloadEvent(at, slot, old, new, load_seconds, outcome, error, attempt))
        self._metrics.reloads.labels(slot, outcome).inc()
        # One key=value line per attempt: grep-able, and parseable by log shippers.
        log = _log.warning if outcome == "failed" else _log.info
        log(
            "reload slot=%s old_version=%s new_version=%s load_seconds=%.3f outcome=%s%s",
            slot, old, new, load_seconds, outcome,
            f" attempt={attempt} error={error!r}" if error else "",
        )  # fmt: skip


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
