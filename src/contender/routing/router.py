"""ChampionChallengerRouter: score one request with both models, answer with one.

Algorithm, per request:
1. Read the routing snapshot once (the caller parses with the same snapshot's schema).
2. No champion: `NoChampion` (503). Testing off or no challenger: the champion alone.
3. Otherwise draw `u` (sticky when the request has a routing key), pick the arm, and ask
   the challenger's circuit breaker whether the challenger may run.
4. The arm that answers runs at once in this process (`champion_runner` or
   `challenger_runner`). The other arm's prediction is shadow work: it goes to
   `shadow_runner` once the answer is ready, runs only on capacity answers leave free,
   and is skipped (`"overload"`) when it cannot start within the shadow lag bound.
5. A challenger that raises, runs past its timeout or returns the wrong number of rows
   is replaced by the champion (`fallback`), which then runs in this process. A
   challenger that never started within its timeout is skipped work, not a failure.
   With the breaker open, a request drawn for the challenger is answered by the
   champion at once; the challenger runs only as a probe, as shadow work, at most once
   a second (`"breaker_open"` on the others). A champion failure is `ModelFailure`
   (500): the unproven challenger never stands in for it.
6. A background task waits for both results and hands one complete record to the sink.
   It derives the decision from the same shared results as the answer, so the record
   always says what the client saw; it also tells the breaker how the challenger did.

Latency in a record is the model's own time, from the start of the call that scored
the request to its predictions: queueing is load, not the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contender.clock import Clock
from contender.errors import ModelFailure, NoChampion, RemoteModelError
from contender.metrics import ServiceMetrics
from contender.models import LoadedModel
from contender.predictions.record import ArmOutcome, JsonValue, PredictionRecord
from contender.routing.batcher import WorkSkipped
from contender.routing.breaker import Admission, CircuitBreaker
from contender.routing.policy import RoutingPolicy, arm_for
from contender.routing.runner import ModelRunner
from contender.routing.table import Arm, RoutingTable, TableHolder

RowsOf = Callable[[Any], JsonValue]
"""Turns a model's raw output into JSON-able predictions, row-aligned for tables (a list,
or an array orjson writes the same way)."""

OVERLOAD = "overload"
BREAKER_OPEN = "breaker_open"


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
    """One model's result: predictions or an error, and how long it took; or why it
    did not run."""

    version: str
    predictions: JsonValue | None
    latency_ms: float | None
    error: str | None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None and self.predictions is not None

    @classmethod
    def skip(cls, version: str, reason: str) -> ModelRun:
        return cls(version, None, None, None, reason)

    def outcome(self) -> ArmOutcome:
        return ArmOutcome(self.version, self.predictions, self.latency_ms, self.error, self.skipped)


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
        shadow_runner: ModelRunner,
        breaker: CircuitBreaker,
        clock: Clock,
        rows_of: RowsOf,
        record_sink: Callable[[PredictionRecord], None],
        metrics: ServiceMetrics,
    ) -> None:
        self._holder = holder
        self._policy = policy
        self._config = config
        self._runners = {Arm.CHAMPION: champion_runner, Arm.CHALLENGER: challenger_runner}
        self._shadow = shadow_runner
        self._breaker = breaker
        self._clock = clock
        self._rows_of = rows_of
        self._sink = record_sink
        self._metrics = metrics
        self._completions: set[asyncio.Task[None]] = set()

    def snapshot(self) -> RoutingTable:
        """The table a request should use from start to end: read it once."""
        return self._holder.current

    def breaker_status(self) -> dict[str, object]:
        """`/status.breaker`, for the challenger being served now."""
        self._breaker.follow(self._holder.current.challenger)
        return self._breaker.describe()

    async def score(self, request: ScoringRequest, table: RoutingTable) -> Answer:
        for runner in (*self._runners.values(), self._shadow):
            runner.retire_unused(table)
        if table.champion is None:
            raise NoChampion("no champion is loaded yet: the registry has no serving version")
        timestamp = self._clock.now().isoformat(timespec="microseconds")
        if table.challenger is None or not table.scores_challenger:
            champion_run = self._start(self._serve(Arm.CHAMPION, table.champion, request))
            decision = _Decision(Arm.CHAMPION, None, timestamp, table, False)
            self._complete_in_background(request, decision, champion_run, None)
            return await self._answer(decision, champion_run, None)
        self._breaker.follow(table.challenger)
        draw = self._policy.draw(request.routing_key)
        arm = arm_for(draw, table.challenger_weight)
        admission = self._breaker.admit()
        challenger_serves = arm is Arm.CHALLENGER and admission is Admission.RUN
        decision = _Decision(arm, draw, timestamp, table, challenger_serves)
        if challenger_serves:
            challenger_run = self._start(self._serve(Arm.CHALLENGER, table.challenger, request))
            champion_run = self._start(
                self._champion_after(challenger_run, table.champion, request)
            )
        else:
            champion_run = self._start(self._serve(Arm.CHAMPION, table.champion, request))
            challenger_run = self._challenger_after(
                champion_run, table.challenger, request, admission
            )
        self._complete_in_background(request, decision, champion_run, challenger_run)
        return await self._answer(decision, champion_run, challenger_run)

    async def _answer(
        self,
        decision: _Decision,
        champion_run: asyncio.Future[ModelRun],
        challenger_run: asyncio.Future[ModelRun] | None,
    ) -> Answer:
        if decision.challenger_serves and challenger_run is not None:
            challenger = await challenger_run
            if decision.served_by(challenger) is Arm.CHALLENGER:
                self._metrics.requests.labels(Arm.CHALLENGER.value, challenger.version).inc()
                return Answer(Arm.CHALLENGER, challenger.version, challenger.predictions, False)
        fallback = decision.fallback(Arm.CHAMPION)
        if fallback:
            self._metrics.fallbacks.inc()
        champion = await champion_run
        if not champion.ok:
            raise ModelFailure(f"the champion (version {champion.version}) failed to predict")
        self._metrics.requests.labels(Arm.CHAMPION.value, champion.version).inc()
        return Answer(Arm.CHAMPION, champion.version, champion.predictions, fallback)

    @staticmethod
    def _start(work: Awaitable[ModelRun]) -> asyncio.Future[ModelRun]:
        """The model's result, shared by the answer and the record so they agree on it."""
        return asyncio.ensure_future(work)

    async def _champion_after(
        self,
        challenger_run: asyncio.Future[ModelRun],
        champion: LoadedModel,
        request: ScoringRequest,
    ) -> ModelRun:
        """The champion answers when the challenger could not; else it is shadow work."""
        if (await challenger_run).ok:
            shadow_run: asyncio.Future[ModelRun] = asyncio.get_running_loop().create_future()
            self._submit_shadow(Arm.CHAMPION, champion, request, shadow_run)
            return await shadow_run
        return await self._serve(Arm.CHAMPION, champion, request)

    def _challenger_after(
        self,
        champion_run: asyncio.Future[ModelRun],
        challenger: LoadedModel,
        request: ScoringRequest,
        admission: Admission,
    ) -> asyncio.Future[ModelRun]:
        """The challenger's shadow run, handed over once the answer is ready.

        Callbacks, not a task: shadow work is on every request in shadow mode, and a
        task per request (with `asyncio.wait`) cost more than the bookkeeping itself."""
        challenger_run: asyncio.Future[ModelRun] = asyncio.get_running_loop().create_future()

        def hand_over(_: asyncio.Future[ModelRun]) -> None:
            if admission is Admission.SKIP:
                version = challenger.ref.version
                challenger_run.set_result(self._skipped(Arm.CHALLENGER, version, BREAKER_OPEN))
            else:
                # No timeout here: nobody waits for shadow work, and a shadow call is slow
                # mostly when the OS gave it no CPU, which says nothing of the model.
                self._submit_shadow(Arm.CHALLENGER, challenger, request, challenger_run)

        champion_run.add_done_callback(hand_over)
        return challenger_run

    async def _serve(self, arm: Arm, model: LoadedModel, request: ScoringRequest) -> ModelRun:
        """Run `model` for the answer; the challenger only as long as its timeout."""
        started = _Started()
        run = asyncio.ensure_future(self._run(arm, self._runners[arm], model, request, started))
        if arm is Arm.CHAMPION:
            return await run
        timeout_s = self._config.challenger_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(run), timeout_s)
        except TimeoutError:
            # Dropped if still queued; a call already running finishes unobserved.
            run.cancel()
        version = model.ref.version
        if started.at_s is None:
            return self._skipped(arm, version, OVERLOAD)
        self._metrics.model_errors.labels(arm.value).inc()
        error = f"TimeoutError: no answer within {timeout_s * 1000:.0f} ms"
        return ModelRun(version, None, (self._clock.monotonic() - started.at_s) * 1000, error)

    def _submit_shadow(
        self,
        arm: Arm,
        model: LoadedModel,
        request: ScoringRequest,
        into: asyncio.Future[ModelRun],
    ) -> None:
        """Hand `model`'s shadow work to the shadow runner; its ModelRun lands in `into`.

        Never raises and always resolves `into`: a record waits for it."""
        version = model.ref.version
        started = _Started()
        handed_at_s = self._clock.monotonic()
        try:
            work = self._shadow.submit(
                model, request.data, request.params, request.schema, started.mark
            )
        except Exception as error:
            into.set_result(self._failed(arm, version, error, handed_at_s))
            return

        def done(work: asyncio.Future[Any]) -> None:
            if into.done():
                return
            try:
                error = work.exception()  # not result(): raising would tie a cycle
            except asyncio.CancelledError as cancelled:
                error = cancelled
            since_s = started.at_s or handed_at_s
            if isinstance(error, WorkSkipped):
                run = self._skipped(arm, version, OVERLOAD)
            elif error is not None:
                run = self._failed(arm, version, error, since_s)
            else:
                run = self._scored(arm, version, work.result(), request.n_rows, since_s)
            into.set_result(run)

        work.add_done_callback(done)

    async def _run(
        self,
        arm: Arm,
        runner: ModelRunner,
        model: LoadedModel,
        request: ScoringRequest,
        started: _Started,
    ) -> ModelRun:
        """Never raises: a failure is data in the record."""
        version = model.ref.version
        handed_at_s = self._clock.monotonic()
        try:
            raw = await runner.predict(
                model, request.data, request.params, request.schema, started.mark
            )
        except WorkSkipped:
            return self._skipped(arm, version, OVERLOAD)
        except Exception as error:
            return self._failed(arm, version, error, started.at_s or handed_at_s)
        return self._scored(arm, version, raw, request.n_rows, started.at_s or handed_at_s)

    def _scored(self, arm: Arm, version: str, raw: Any, n_rows: int, since_s: float) -> ModelRun:
        """The run of an output: its rows, or an error when they are not the request's."""
        try:
            rows = self._rows_of(raw)
            if isinstance(rows, list | np.ndarray) and len(rows) != n_rows:
                raise ValueError(f"wrong output shape: {len(rows)} rows for {n_rows}")
        except Exception as error:
            return self._failed(arm, version, error, since_s)
        latency_s = self._clock.monotonic() - since_s
        self._metrics.model_latency.labels(arm.value, version).observe(latency_s)
        return ModelRun(version, rows, latency_s * 1000, None)

    def _failed(self, arm: Arm, version: str, error: BaseException, since_s: float) -> ModelRun:
        self._metrics.model_errors.labels(arm.value).inc()
        latency_ms = (self._clock.monotonic() - since_s) * 1000
        return ModelRun(version, None, latency_ms, _describe(error))

    def _skipped(self, arm: Arm, version: str, reason: str) -> ModelRun:
        self._metrics.shadow_skipped.labels(arm.value, reason).inc()
        return ModelRun.skip(version, reason)

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
        if challenger is not None and self._judges(decision.table, challenger):
            self._breaker.record(failed=not challenger.ok)
        served_by = decision.served_by(challenger)
        self._sink(
            PredictionRecord(
                request_id=request.request_id,
                timestamp=decision.timestamp,
                model_name=self._config.model_name,
                inputs=request.log_inputs,
                served_by=served_by.value,
                fallback=decision.fallback(served_by),
                routing_draw=decision.draw,
                routing_key=request.routing_key,
                champion=champion.outcome(),
                challenger=challenger.outcome() if challenger is not None else ArmOutcome(),
                challenger_weight=decision.table.challenger_weight,
                routing_revision=decision.table.routing_revision,
            )
        )

    @staticmethod
    def _judges(table: RoutingTable, challenger: ModelRun) -> bool:
        """Skipped work is no prediction; a run of an older version says nothing of this one."""
        current = table.challenger
        return (
            challenger.skipped is None
            and current is not None
            and (challenger.version == current.ref.version)
        )

    async def drain(self) -> None:
        """Wait until every answered request's record has reached the sink."""
        while self._completions:
            await asyncio.gather(*list(self._completions), return_exceptions=True)

    async def aclose(self) -> None:
        """Finish every record, then stop the models' batchers."""
        await self.drain()
        for runner in (*self._runners.values(), self._shadow):
            await runner.aclose()


def _describe(error: BaseException) -> str:
    if isinstance(error, RemoteModelError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class _Started:
    """When the model call for a request began (set from whichever thread starts it)."""

    __slots__ = ("at_s",)

    def __init__(self) -> None:
        self.at_s: float | None = None

    def mark(self, at_s: float) -> None:
        self.at_s = at_s


@dataclass(frozen=True, slots=True)
class _Decision:
    arm: Arm
    """The arm the draw picked."""
    draw: float | None
    timestamp: str
    table: RoutingTable
    challenger_serves: bool
    """Drawn for the challenger and the breaker let it answer."""

    def served_by(self, challenger: ModelRun | None) -> Arm:
        """Who answered: the one rule the answer and the record both follow."""
        ok = challenger is not None and challenger.ok
        return Arm.CHALLENGER if self.challenger_serves and ok else Arm.CHAMPION

    def fallback(self, served_by: Arm) -> bool:
        return self.arm is Arm.CHALLENGER and served_by is Arm.CHAMPION
