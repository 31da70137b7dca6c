"""ChampionChallengerRouter: score one request with both models, answer with one.

Algorithm, per request:
1. Read the routing snapshot once (the caller parses with the same snapshot's schema).
2. No champion: `NoChampion` (503). Testing off or no challenger: the champion alone.
3. Otherwise draw `u` (sticky when the request has a routing key) and pick the arm. BOTH
   models score the same parsed input, each through its own `ModelRunner` (thread pool
   and micro-batchers): the serving arm at once, the other as soon as the serving arm is
   done, so the other model's work never competes with the answer.
4. Wait only for the arm that serves. A challenger that raises, runs past its timeout or
   returns the wrong number of rows is replaced by the champion (`fallback`). A champion
   failure is `ModelFailure` (500): the unproven challenger never stands in for it.
5. A background task waits for the other model and hands one complete record to the
   sink. It derives the decision from the same shared results as the answer, so the
   record always says what the client saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contender.clock import Clock
from contender.errors import ModelFailure, NoChampion
from contender.metrics import ServiceMetrics
from contender.predictions.record import ArmOutcome, JsonValue, PredictionRecord
from contender.registry.loader import LoadedModel
from contender.routing.policy import RoutingPolicy, arm_for
from contender.routing.runner import ModelRunner
from contender.routing.table import Arm, RoutingTable, TableHolder

RowsOf = Callable[[Any], JsonValue]
"""Turns a model's raw output into JSON-able predictions, a row-aligned list for tables."""


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    request_id: str
    routing_key: str | None
    data: Any
    """The parsed model input (usually a pandas DataFrame), shared read-only by both models."""
    params: dict[str, Any] | None
    n_rows: int
    schema: Any
    """The signature `data` was already enforced against, or None."""
    log_inputs: Callable[[], dict[str, JsonValue]]
    """Builds the logged `inputs` value; called after the answer, never on its path."""


@dataclass(frozen=True, slots=True)
class Answer:
    served_by: Arm
    version: str
    predictions: JsonValue
    fallback: bool


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One model's result: predictions or an error, and how long it took."""

    version: str
    predictions: JsonValue | None
    latency_ms: float
    error: str | None

    def outcome(self) -> ArmOutcome:
        return ArmOutcome(self.version, self.predictions, self.latency_ms, self.error)


@dataclass(frozen=True, slots=True)
class RouterConfig:
    model_name: str
    challenger_timeout_s: float


class ChampionChallengerRouter:
    def __init__(
        self,
        holder: TableHolder,
        policy: RoutingPolicy,
        *,
        config: RouterConfig,
        champion_runner: ModelRunner,
        challenger_runner: ModelRunner,
        clock: Clock,
        rows_of: RowsOf,
        record_sink: Callable[[PredictionRecord], None],
        metrics: ServiceMetrics,
    ) -> None:
        self._holder = holder
        self._policy = policy
        self._config = config
        self._runners = {Arm.CHAMPION: champion_runner, Arm.CHALLENGER: challenger_runner}
        self._clock = clock
        self._rows_of = rows_of
        self._sink = record_sink
        self._metrics = metrics
        self._completions: set[asyncio.Task[None]] = set()

    def snapshot(self) -> RoutingTable:
        """The table a request should use from start to end: read it once."""
        return self._holder.current

    async def score(self, request: ScoringRequest, table: RoutingTable) -> Answer:
        for runner in self._runners.values():
            runner.retire_unused(table)
        if table.champion is None:
            raise NoChampion("no champion is loaded yet: the registry has no serving version")
        timestamp = self._clock.now().isoformat(timespec="microseconds")
        if table.challenger is None or not table.scores_challenger:
            champion_run = self._start(Arm.CHAMPION, table.champion, request)
            decision = _Decision(Arm.CHAMPION, None, timestamp)
            self._complete_in_background(request, decision, champion_run, None)
            return await self._answer(Arm.CHAMPION, champion_run, None)
        draw = self._policy.draw(request.routing_key)
        arm = arm_for(draw, table.challenger_weight)
        # The serving arm runs first and alone; the other starts as soon as it is done, so
        # it never competes with the answer for the CPU (or the GIL).
        if arm is Arm.CHAMPION:
            champion_run = self._start(Arm.CHAMPION, table.champion, request)
            challenger_run = self._start(Arm.CHALLENGER, table.challenger, request, champion_run)
        else:
            challenger_run = self._start(Arm.CHALLENGER, table.challenger, request)
            champion_run = self._start(Arm.CHAMPION, table.champion, request, challenger_run)
        self._complete_in_background(
            request, _Decision(arm, draw, timestamp), champion_run, challenger_run
        )
        return await self._answer(arm, champion_run, challenger_run)

    async def _answer(
        self,
        arm: Arm,
        champion_run: asyncio.Future[ModelRun],
        challenger_run: asyncio.Future[ModelRun] | None,
    ) -> Answer:
        if arm is Arm.CHALLENGER and challenger_run is not None:
            challenger = await challenger_run
            if challenger.error is None and challenger.predictions is not None:
                self._metrics.requests.labels(arm.value, challenger.version).inc()
                return Answer(arm, challenger.version, challenger.predictions, fallback=False)
            self._metrics.fallbacks.inc()
        champion = await champion_run
        if champion.error is not None or champion.predictions is None:
            raise ModelFailure(f"the champion (version {champion.version}) failed to predict")
        self._metrics.requests.labels(Arm.CHAMPION.value, champion.version).inc()
        return Answer(Arm.CHAMPION, champion.version, champion.predictions, arm is not Arm.CHAMPION)

    def _start(
        self,
        arm: Arm,
        model: LoadedModel,
        request: ScoringRequest,
        after: asyncio.Future[ModelRun] | None = None,
    ) -> asyncio.Future[ModelRun]:
        """The model's result, shared by the answer and the record so they agree on it."""
        return asyncio.ensure_future(self._start_after(arm, model, request, after))

    async def _start_after(
        self,
        arm: Arm,
        model: LoadedModel,
        request: ScoringRequest,
        after: asyncio.Future[ModelRun] | None,
    ) -> ModelRun:
        if after is not None:
            await asyncio.wait([after])
        submitted = self._clock.monotonic()
        run = asyncio.ensure_future(self._run(arm, model, request, submitted))
        if arm is Arm.CHAMPION:
            return await run
        return await self._bounded(run, model.ref.version, submitted)

    async def _bounded(
        self, future: asyncio.Future[ModelRun], version: str, submitted: float
    ) -> ModelRun:
        timeout_s = self._config.challenger_timeout_s
        remaining_s = max(0.0, submitted + timeout_s - self._clock.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), remaining_s)
        except TimeoutError:
            self._metrics.model_errors.labels(Arm.CHALLENGER.value).inc()
            error = f"TimeoutError: no answer within {timeout_s * 1000:.0f} ms"
            return ModelRun(version, None, timeout_s * 1000, error)

    async def _run(
        self, arm: Arm, model: LoadedModel, request: ScoringRequest, submitted: float
    ) -> ModelRun:
        """Never raises: a failure is data in the record."""
        version = model.ref.version
        try:
            raw = await self._runners[arm].predict(
                model, request.data, request.params, request.schema
            )
            rows = self._rows_of(raw)
            if isinstance(rows, list) and len(rows) != request.n_rows:
                raise ValueError(f"wrong output shape: {len(rows)} rows for {request.n_rows}")
        except Exception as error:
            self._metrics.model_errors.labels(arm.value).inc()
            latency_ms = (self._clock.monotonic() - submitted) * 1000
            return ModelRun(version, None, latency_ms, f"{type(error).__name__}: {error}")
        latency_s = self._clock.monotonic() - submitted
        self._metrics.model_latency.labels(arm.value, version).observe(latency_s)
        return ModelRun(version, rows, latency_s * 1000, None)

    def _complete_in_background(
        self,
        request: ScoringRequest,
        decision: _Decision,
        champion_run: asyncio.Future[ModelRun],
        challenger_run: asyncio.Future[ModelRun] | None,
    ) -> None:
        task = asyncio.create_task(self._complete(request, decision, champion_run, challenger_run))
        self._completions.add(task)
        task.add_done_callback(self._completions.discard)

    async def _complete(
        self,
        request: ScoringRequest,
        decision: _Decision,
        champion_run: asyncio.Future[ModelRun],
        challenger_run: asyncio.Future[ModelRun] | None,
    ) -> None:
        champion = await champion_run
        challenger = await challenger_run if challenger_run is not None else None
        challenger_ok = challenger is not None and challenger.error is None
        served_challenger = decision.arm is Arm.CHALLENGER and challenger_ok
        self._sink(
            PredictionRecord(
                request_id=request.request_id,
                timestamp=decision.timestamp,
                model_name=self._config.model_name,
                inputs=request.log_inputs,
                served_by=(Arm.CHALLENGER if served_challenger else Arm.CHAMPION).value,
                fallback=decision.arm is Arm.CHALLENGER and not challenger_ok,
                routing_draw=decision.draw,
                routing_key=request.routing_key,
                champion=champion.outcome(),
                challenger=challenger.outcome() if challenger is not None else ArmOutcome(),
            )
        )

    async def drain(self) -> None:
        """Wait until every answered request's record has reached the sink."""
        while self._completions:
            await asyncio.gather(*list(self._completions), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish every record, then stop the models' batchers."""
        await self.drain()
        for runner in self._runners.values():
            await runner.aclose()


@dataclass(frozen=True, slots=True)
class _Decision:
    arm: Arm
    draw: float | None
    timestamp: str
