"""The router's decisions, exactly, with an injected random source and fake models."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from contender.errors import ModelFailure, NoChampion
from contender.metrics import ServiceMetrics
from contender.models import LoadedModel
from contender.predictions.record import PredictionRecord
from contender.routing.breaker import BreakerState, CircuitBreaker
from contender.routing.policy import RoutingPolicy, arm_for, sticky_draw
from contender.routing.router import Answer, ChampionChallengerRouter, RouterConfig, ScoringRequest
from contender.routing.runner import BatchingConfig, ModelRunner
from contender.routing.table import Arm, Routing, RoutingTable, TableHolder
from tests.fakes import FakeClock, FakeModel, loaded

ROWS = pd.DataFrame({"a": [0.1, 0.2], "b": [0.3, 0.1]})


def _ignore(old: BreakerState, new: BreakerState, error_rate: float) -> None:
    pass


class Harness:
    def __init__(
        self,
        champion: LoadedModel | None,
        challenger: LoadedModel | None,
        weight: float = 0.1,
        testing: bool = True,
        seed: int = 42,
        timeout_s: float = 5.0,
        breaker_window: int = 100,
    ) -> None:
        self.records: list[PredictionRecord] = []
        self.holder = TableHolder(RoutingTable(champion, challenger, weight, testing))
        self.pool = ThreadPoolExecutor(2)
        self.clock = clock = FakeClock()
        self.router = ChampionChallengerRouter(
            self.holder,
            RoutingPolicy(random.Random(seed)),
            config=RouterConfig("m", timeout_s),
            champion_runner=ModelRunner(self.pool, FakeClock(), BatchingConfig()),
            challenger_runner=ModelRunner(self.pool, FakeClock(), BatchingConfig()),
            shadow_runner=ModelRunner(self.pool, FakeClock(), BatchingConfig(), max_lag_ms=1000),
            breaker=CircuitBreaker(
                window=breaker_window,
                error_rate=0.2,
                cooldown_s=30,
                clock=clock,
                on_transition=_ignore,
            ),
            clock=clock,
            rows_of=lambda raw: list(raw),
            record_sink=self.records.append,
            metrics=ServiceMetrics(CollectorRegistry()),
        )

    def score(self, n: int, key: str | None = None) -> list[Answer]:
        async def run() -> list[Answer]:
            answers = []
            try:
                for i in range(n):
                    request = ScoringRequest(f"r{i}", key, ROWS, None, len(ROWS), None, dict)
                    answers.append(await self.router.score(request, self.router.snapshot()))
            finally:
                await self.router.aclose()
            return answers

        try:
            return asyncio.run(run())
        finally:
            self.pool.shutdown()


def test_each_draw_picks_the_arm_the_rule_says() -> None:
    harness = Harness(loaded("m", "1"), loaded("m", "2"), weight=0.3, seed=7)
    answers = harness.score(200)
    draws = random.Random(7)
    expected = [arm_for(draws.random(), 0.3) for _ in range(200)]
    assert [answer.served_by for answer in answers] == expected
    assert [record.served_by for record in harness.records] == [arm.value for arm in expected]
    assert {answer.version for answer in answers if answer.served_by is Arm.CHALLENGER} == {"2"}


def test_zero_weight_is_shadow_mode() -> None:
    challenger = FakeModel()
    harness = Harness(loaded("m", "1"), loaded("m", "2", challenger), weight=0.0)
    answers = harness.score(50)
    assert {answer.served_by for answer in answers} == {Arm.CHAMPION}
    assert challenger.calls == 50
    assert all(record.challenger.predictions is not None for record in harness.records)


def test_testing_off_never_calls_the_challenger() -> None:
    challenger = FakeModel()
    harness = Harness(loaded("m", "1"), loaded("m", "2", challenger), weight=1.0, testing=False)
    harness.score(20)
    assert challenger.calls == 0
    record = harness.records[0]
    assert record.routing_draw is None
    assert record.challenger.version is None
    assert record.challenger.predictions is None


def test_a_routing_key_draws_from_its_hash() -> None:
    harness = Harness(loaded("m", "1"), loaded("m", "2"), weight=0.5)
    answers = harness.score(10, key="customer-17")
    assert {answer.served_by for answer in answers} == {arm_for(sticky_draw("customer-17"), 0.5)}
    assert {record.routing_draw for record in harness.records} == {sticky_draw("customer-17")}


def test_a_failing_challenger_falls_back_to_the_champion() -> None:
    broken = FakeModel(error=RuntimeError("boom"))
    harness = Harness(loaded("m", "1"), loaded("m", "2", broken), weight=1.0)
    answers = harness.score(5)
    assert all(a.served_by is Arm.CHAMPION and a.fallback for a in answers)
    record = harness.records[0]
    assert record.fallback is True
    assert record.served_by == "champion"
    assert record.challenger.error == "RuntimeError: boom"
    assert record.champion.predictions == answers[0].predictions


def test_a_challenger_with_the_wrong_shape_falls_back() -> None:
    class OneRow(FakeModel):
        def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
            return [[0.5, 0.5]]

    harness = Harness(loaded("m", "1"), loaded("m", "2", OneRow()), weight=1.0)
    assert harness.score(1)[0].fallback is True
    assert "wrong output shape" in (harness.records[0].challenger.error or "")


def test_a_failing_champion_is_an_error_never_the_challenger() -> None:
    broken = FakeModel(error=ValueError("bad"))
    harness = Harness(loaded("m", "1", broken), loaded("m", "2"), weight=0.0)
    with pytest.raises(ModelFailure):
        harness.score(1)
    # The failure is still logged, with the champion's error.
    assert harness.records[0].champion.error == "ValueError: bad"
    assert harness.records[0].challenger.predictions is not None


def test_no_champion_is_refused() -> None:
    harness = Harness(None, None)
    with pytest.raises(NoChampion):
        harness.score(1)


def test_the_draw_boundaries() -> None:
    assert arm_for(0.9, 0.1) is Arm.CHALLENGER  # u >= 1 - w
    assert arm_for(0.8999, 0.1) is Arm.CHAMPION
    assert arm_for(0.0, 1.0) is Arm.CHALLENGER
    assert arm_for(0.999999, 0.0) is Arm.CHAMPION
    draws = [sticky_draw(f"k{i}") for i in range(2000)]
    assert all(0.0 <= draw < 1.0 for draw in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert sticky_draw("same") == sticky_draw("same")


def test_an_open_breaker_answers_with_the_champion_and_only_probes() -> None:
    broken = FakeModel(error=RuntimeError("boom"))
    harness = Harness(loaded("m", "1"), loaded("m", "2", broken), weight=1.0, breaker_window=10)
    answers = harness.score(30)  # the fake clock stands still: one probe in all
    assert all(a.served_by is Arm.CHAMPION and a.fallback for a in answers)
    assert harness.router.breaker_status()["state"] == "open"
    assert broken.calls == 11  # ten that opened it, then one probe
    errors = [r.challenger.error for r in harness.records]
    skipped = [r.challenger.skipped for r in harness.records]
    assert errors[:11] == ["RuntimeError: boom"] * 11
    assert skipped[:11] == [None] * 11
    assert skipped[11:] == ["breaker_open"] * 19
    assert all(r.fallback and r.served_by == "champion" for r in harness.records)
    assert all(r.challenger.version == "2" for r in harness.records)
    assert all(r.challenger.predictions is None for r in harness.records[11:])


def test_records_carry_the_weight_their_draw_used() -> None:
    harness = Harness(loaded("m", "1"), loaded("m", "2"), weight=0.25)
    harness.score(3)
    assert [r.challenger_weight for r in harness.records] == [0.25] * 3
    assert all(r.routing_revision is None for r in harness.records)
    from_the_registry = Harness(loaded("m", "1"), loaded("m", "2"))
    from_the_registry.holder.update(lambda table: table.with_routing(Routing(0.5, True, 9)))
    from_the_registry.score(2)
    routings = [(r.challenger_weight, r.routing_revision) for r in from_the_registry.records]
    assert routings == [(0.5, 9), (0.5, 9)]
