"""RegistryWatcher with a fake registry, a counting fake loader and a fake clock."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from contender.metrics import ServiceMetrics
from contender.registry.client import SlotRefs
from contender.registry.watcher import RegistryWatcher
from contender.routing.table import Routing, RoutingTable, TableHolder
from contender.settings import Selector
from tests.fakes import FakeClock, FakeLoader, FakeModel, FakeRegistryClient, model_ref

V1, V2, V3 = (model_ref("m", version) for version in ("1", "2", "3"))


class Setup:
    def __init__(self, registry: FakeRegistryClient | None = None) -> None:
        self.clock = FakeClock()
        self.registry = registry or FakeRegistryClient(champion=V1, challenger=V2)
        self.loader = FakeLoader(self.clock)
        self.metrics = ServiceMetrics(CollectorRegistry())
        self.holder = TableHolder(RoutingTable(None, None, 0.1, True))
        self.watcher = RegistryWatcher(
            self.registry,
            self.loader,
            self.holder,
            model_name="m",
            selector=Selector.STAGES,
            clock=self.clock,
            metrics=self.metrics,
            flags_routing=Routing(0.1, True),
        )

    @property
    def table(self) -> RoutingTable:
        return self.holder.current

    def versions(self) -> tuple[str | None, str | None]:
        table = self.table
        return (
            table.champion.ref.version if table.champion else None,
            table.challenger.ref.version if table.challenger else None,
        )

    def poll_error(self) -> str | None:
        return self.watcher.last_poll_error

    def outcomes(self) -> list[tuple[str, str | None, str | None, str]]:
        return [(e.slot, e.old_version, e.new_version, e.outcome) for e in self.watcher.events]

    def reloads(self, slot: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "contender_reloads_total", {"slot": slot, "outcome": outcome}
        )
        return value or 0.0


@pytest.fixture
def setup() -> Setup:
    setup = Setup()
    assert setup.watcher.poll_once() is True
    return setup


def test_first_poll_loads_both_slots(setup: Setup) -> None:
    assert setup.versions() == ("1", "2")
    assert setup.loader.loaded == ["1", "2"]
    assert setup.watcher.downloads == 2
    assert setup.outcomes() == [
        ("champion", None, "1", "loaded"),
        ("challenger", None, "2", "loaded"),
    ]
    # Taken when the registry answered, before the two half-second loads.
    assert setup.watcher.last_poll_at == "2026-01-01T00:00:00+00:00"
    assert setup.watcher.last_poll_error is None


def test_nothing_changed_publishes_nothing(setup: Setup) -> None:
    before = setup.table
    assert setup.watcher.poll_once() is False
    assert setup.table is before
    assert setup.watcher.downloads == 2


def test_a_promoted_challenger_is_reused_not_downloaded(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    challenger = setup.table.challenger
    setup.registry.champion, setup.registry.challenger = V2, None
    with caplog.at_level(logging.INFO, "contender.registry.watcher"):
        assert setup.watcher.poll_once() is True
    assert setup.table.champion is challenger
    assert setup.table.challenger is None
    assert setup.watcher.downloads == 2
    assert setup.outcomes()[2:] == [
        ("champion", "1", "2", "reused"),
        ("challenger", "2", None, "emptied"),
    ]
    assert setup.reloads("champion", "reused") == 1
    assert (
        "reload slot=champion old_version=1 new_version=2 load_seconds=0.000 outcome=reused"
        in caplog.messages
    )


def test_both_aliases_on_one_version_share_one_model(setup: Setup) -> None:
    """Mid-promotion with aliases: @champion moved, @challenger not yet dropped."""
    challenger = setup.table.challenger
    setup.registry.champion = V2
    setup.watcher.poll_once()
    assert setup.table.champion is challenger
    assert setup.table.challenger is challenger
    assert setup.watcher.downloads == 2


def test_a_new_challenger_is_loaded_and_the_champion_kept(setup: Setup) -> None:
    champion = setup.table.champion
    setup.registry.challenger = V3
    setup.watcher.poll_once()
    assert setup.table.champion is champion
    assert setup.versions() == ("1", "3")
    assert setup.watcher.downloads == 3
    assert setup.watcher.events[-1].load_seconds == 0.5


def test_an_emptied_slot_is_dropped(setup: Setup) -> None:
    setup.registry.challenger = None
    assert setup.watcher.poll_once() is True
    assert setup.versions() == ("1", None)
    assert setup.outcomes()[-1] == ("challenger", "2", None, "emptied")
    assert setup.table.scores_challenger is False


def test_a_failed_load_keeps_the_old_model_and_is_retried_every_poll(setup: Setup) -> None:
    before = setup.table
    setup.loader.broken.add("3")
    setup.registry.challenger = V3
    for attempt in (1, 2, 3):
        assert setup.watcher.poll_once() is False
        assert setup.table is before
        error = setup.watcher.slot_errors["challenger"]
        assert error.startswith(f"version 3 failed to load (attempt {attempt}): RuntimeError")
        assert setup.watcher.events[-1].attempt == attempt
    assert setup.loader.downloads == 5
    assert setup.reloads("challenger", "failed") == 3
    # The artifact is fixed (say, re-uploaded): the next poll swaps it in.
    setup.loader.broken.clear()
    assert setup.watcher.poll_once() is True
    assert setup.versions() == ("1", "3")
    assert setup.watcher.slot_errors == {}


def test_a_broken_champion_never_replaces_the_good_one(setup: Setup) -> None:
    setup.loader.broken.add("3")
    setup.registry.champion = V3
    setup.watcher.poll_once()
    assert setup.versions() == ("1", "2")
    assert "version 3 failed to load" in setup.watcher.slot_errors["champion"]
    # Back to the served version in the registry: nothing to load, the error is gone.
    setup.registry.champion = V1
    setup.watcher.poll_once()
    assert setup.watcher.slot_errors == {}
    assert setup.watcher.downloads == 3


def test_a_failure_count_restarts_for_another_version(setup: Setup) -> None:
    setup.loader.broken.update({"3", "4"})
    setup.registry.challenger = V3
    setup.watcher.poll_once()
    setup.watcher.poll_once()
    setup.registry.challenger = model_ref("m", "4")
    setup.watcher.poll_once()
    assert "(attempt 1)" in setup.watcher.slot_errors["challenger"]


def test_an_unreachable_registry_changes_nothing_and_clears_when_back(setup: Setup) -> None:
    before, polled_at = setup.table, setup.watcher.last_poll_at
    setup.registry.down = ConnectionError("registry\nunreachable")
    setup.clock.advance(30)
    assert setup.watcher.poll_once() is False
    assert setup.table is before
    assert setup.watcher.last_poll_error == "ConnectionError: registry unreachable"
    assert setup.watcher.last_poll_at == polled_at
    setup.registry.down = None
    setup.registry.challenger = V3
    answered_at = setup.clock.now().isoformat()
    assert setup.watcher.poll_once() is True
    assert setup.poll_error() is None
    assert setup.watcher.last_poll_at == answered_at
    assert setup.versions() == ("1", "3")


def test_the_registry_routing_survives_a_reload(setup: Setup) -> None:
    setup.registry.tag = '{"challenger_weight": 1.0, "testing": false, "revision": 4}'
    setup.watcher.poll_once()
    setup.registry.challenger = V3
    setup.watcher.poll_once()
    assert setup.table.routing == Routing(1.0, False, 4)
    assert setup.versions() == ("1", "3")


def test_the_flags_route_until_a_tag_appears_and_after_it_goes(setup: Setup) -> None:
    setup.watcher.poll_once()
    assert setup.table.routing == Routing(0.1, True, None)
    setup.registry.tag = '{"challenger_weight": 0.0, "testing": true, "revision": 1}'
    assert setup.watcher.poll_once() is True
    assert setup.table.routing == Routing(0.0, True, 1)
    assert setup.watcher.poll_once() is False
    setup.registry.tag = None
    setup.watcher.poll_once()
    assert setup.table.routing == Routing(0.1, True, None)


@pytest.mark.parametrize(
    "tag",
    [
        "not json",
        '{"challenger_weight": 2, "testing": true, "revision": 1}',
        '{"challenger_weight": 0.5, "testing": "yes", "revision": 1}',
        '{"challenger_weight": 0.5, "testing": true}',
        '{"challenger_weight": 0.5, "testing": true, "revision": -1}',
    ],
)
def test_an_invalid_tag_changes_nothing_and_says_why(setup: Setup, tag: str) -> None:
    setup.registry.tag = '{"challenger_weight": 0.3, "testing": true, "revision": 2}'
    setup.watcher.poll_once()
    setup.registry.tag = tag
    setup.watcher.poll_once()
    assert setup.table.routing == Routing(0.3, True, 2)
    assert setup.watcher.routing_error is not None
    assert (
        "contender.routing" in setup.watcher.routing_error
        or "must be" in setup.watcher.routing_error
    )
    assert setup.versions() == ("1", "2")  # models still follow the registry


def test_a_routing_change_writes_the_next_revision_and_applies_at_once(setup: Setup) -> None:
    setup.watcher.poll_once()
    first = asyncio.run(setup.watcher.change_routing(0.0, None))
    assert first == Routing(0.0, True, 1)
    assert setup.table.routing == first
    second = asyncio.run(setup.watcher.change_routing(None, False))
    assert second == Routing(0.0, False, 2)
    assert setup.registry.tag is not None
    assert orjson.loads(setup.registry.tag) == {
        "challenger_weight": 0.0,
        "testing": False,
        "revision": 2,
    }


def test_a_refused_routing_write_changes_nothing(setup: Setup) -> None:
    setup.registry.tag = '{"challenger_weight": 0.3, "testing": true, "revision": 7}'
    setup.watcher.poll_once()
    setup.registry.refuse_writes = PermissionError("PERMISSION_DENIED")
    with pytest.raises(PermissionError):
        asyncio.run(setup.watcher.change_routing(1.0, False))
    assert setup.table.routing == Routing(0.3, True, 7)
    assert orjson.loads(setup.registry.tag)["revision"] == 7


class GatedModel(FakeModel):
    """Holds each predict until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        self.entered.set()
        assert self.gate.wait(5)
        return super().predict(data, params)


def test_a_request_in_flight_finishes_on_the_model_it_started_with() -> None:
    setup = Setup()
    setup.watcher.poll_once()
    gated = GatedModel()
    champion = setup.table.champion
    assert champion is not None
    setup.holder.update(lambda table: table.with_models(replace(champion, model=gated), None))
    answers: list[tuple[str, Any]] = []

    def request() -> None:
        table = setup.holder.current  # read once, as the router does
        assert table.champion is not None
        rows = pd.DataFrame({"a": [0.25]})
        answers.append((table.champion.ref.version, table.champion.model.predict(rows)))

    thread = threading.Thread(target=request)
    thread.start()
    assert gated.entered.wait(5)
    setup.registry.champion, setup.registry.challenger = V2, None
    assert setup.watcher.poll_once() is True  # swapped while the request is in predict
    gated.gate.set()
    thread.join(5)
    assert answers == [("1", [[0.75, 0.25]])]
    assert setup.versions() == ("2", None)


class Ticks:
    """A `sleep` for `RegistryWatcher.run`: runs a step after each poll, then cancels."""

    def __init__(self, *steps: Callable[[], None]) -> None:
        self.steps = list(steps)
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self.steps:
            raise asyncio.CancelledError
        self.steps.pop(0)()


def run_watcher(setup: Setup, ticks: Ticks) -> None:
    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await setup.watcher.run(30.0, sleep=ticks)

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_run_keeps_polling_while_the_registry_is_down_at_startup() -> None:
    setup = Setup()
    setup.registry.down = ConnectionError("connection refused")
    seen: list[tuple[str | None, str | None]] = []

    def still_down() -> None:
        seen.append((setup.versions()[0], setup.watcher.last_poll_error))

    def back_up() -> None:
        still_down()
        setup.registry.down = None

    ticks = Ticks(still_down, still_down, back_up, still_down)
    run_watcher(setup, ticks)
    refused = "ConnectionError: connection refused"
    assert seen == [(None, refused), (None, refused), (None, refused), ("1", None)]
    assert ticks.slept == [30.0] * 5
    assert setup.registry.calls == 5


class CrashOnceClient(FakeRegistryClient):
    """Answers nonsense once: the poll crashes outside its own error handling."""

    def resolve(self, name: str, selector: Selector) -> SlotRefs:
        if self.calls == 0:
            self.calls += 1
            return None  # type: ignore[return-value]
        return super().resolve(name, selector)


def test_run_survives_a_crashing_poll(caplog: pytest.LogCaptureFixture) -> None:
    setup = Setup(CrashOnceClient(champion=V1))
    with caplog.at_level(logging.ERROR, "contender.registry.watcher"):
        run_watcher(setup, Ticks(lambda: None))
    assert any("registry poll crashed" in message for message in caplog.messages)
    assert setup.versions() == ("1", None)


def test_registry_and_champion_gauges_follow_the_polls(setup: Setup) -> None:
    sample = setup.metrics.registry.get_sample_value
    setup.watcher.poll_once()
    assert (sample("contender_registry_up"), sample("contender_champion_loaded")) == (1, 1)
    setup.registry.down = ConnectionError("unreachable")
    setup.watcher.poll_once()
    assert (sample("contender_registry_up"), sample("contender_champion_loaded")) == (0, 1)
    setup.registry.down = None
    setup.registry.champion = None
    setup.watcher.poll_once()
    assert (sample("contender_registry_up"), sample("contender_champion_loaded")) == (1, 0)
