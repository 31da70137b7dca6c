"""ModelRunner: one prediction of one model, the cheapest safe way.

- Input already enforced against the model's own signature skips MLflow's second
  enforcement and goes straight to the flavour's predict.
- A pandas input without `params` goes through the model's `MicroBatcher`, so requests
  that arrive while the model is busy are scored in one call. A lone request runs at
  once; `max_batch_size` 1 turns batching off.
- Anything else (`params`, tensors, dicts) runs alone in the arm's thread pool.

Where the model runs is the `ModelBackend`'s business: in this process (`InProcess`),
or in the low-priority shadow process (`contender.routing.shadow`). A runner for shadow
work has a `max_lag_ms`: work that cannot start that long after it was handed over is
dropped before it runs (`WorkSkipped`), whatever the input, so what runs stays a fair
sample of traffic.

Batchers belong to a model version: when a snapshot no longer holds a model, its
batcher finishes what it has queued and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import pandas as pd

from contender.clock import Clock
from contender.models import LoadedModel
from contender.routing.batcher import MicroBatcher, OnStart, WorkSkipped
from contender.routing.table import RoutingTable

Predict = Callable[[Any], Any]


class ModelBackend(Protocol):
    """Where a model's predict runs; the callable it returns blocks, in a runner thread."""

    def predict_fn(self, model: LoadedModel, unchecked: bool, params: Any) -> Predict: ...

    def retain(self, models: list[LoadedModel]) -> None:
        """Only these models will be asked for from now on: the others may be released."""
        ...


class InProcess:
    """Models run in this process, on the objects the loader returned."""

    def predict_fn(self, model: LoadedModel, unchecked: bool, params: Any) -> Predict:
        if unchecked and model.predict_unchecked is not None:
            return model.predict_unchecked
        return partial(model.model.predict, params=params)

    def retain(self, models: list[LoadedModel]) -> None:
        pass


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_batch_size: int = 256
    """Most rows merged into one predict call; 1 turns micro-batching off."""
    max_batch_wait_ms: float = 0.0
    """Extra wait for company, only under load; 0: merge only what queued naturally."""


class ModelRunner:
    def __init__(
        self,
        executor: Executor,
        clock: Clock,
        batching: BatchingConfig,
        *,
        backend: ModelBackend | None = None,
        max_lag_ms: float | None = None,
    ) -> None:
        self._executor = executor
        self._clock = clock
        self._batching = batching
        self._backend = backend or InProcess()
        self._max_lag_ms = max_lag_ms
        self._batchers: dict[tuple[int, bool], tuple[LoadedModel, MicroBatcher]] = {}
        self._seen_table: RoutingTable | None = None
        self._serving: set[int] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._schema_matches: dict[tuple[int, int], tuple[Any, LoadedModel, bool]] = {}

    async def predict(
        self,
        model: LoadedModel,
        data: Any,
        params: Any,
        schema: Any,
        on_start: OnStart | None = None,
    ) -> Any:
        """The model's raw output; `WorkSkipped` when it waited past the lag bound."""
        future = self.submit(model, data, params, schema, on_start)
        try:
            return await future
        finally:
            del future  # no cycle through a failed future's traceback (see MicroBatcher)

    def submit(
        self,
        model: LoadedModel,
        data: Any,
        params: Any,
        schema: Any,
        on_start: OnStart | None = None,
    ) -> asyncio.Future[Any]:
        """`predict` as a future, for callers that attach a callback (call on the loop)."""
        enforced = schema is not None and model.predict_unchecked is not None
        unchecked = enforced and params is None and self._is_own_schema(schema, model)
        predict = self._backend.predict_fn(model, unchecked, params)
        # A request still in flight on a retired model runs alone rather than reviving a
        # batcher that would keep the old model in memory.
        batchable = self._batching.max_batch_size > 1 and id(model) in self._serving
        if batchable and params is None and isinstance(data, pd.DataFrame):
            # Frames enforced against one signature share columns and dtypes.
            merge_key = ("schema", id(schema)) if schema is not None else None
            batcher = self._batcher(model, unchecked, predict)
            return batcher.submit(data, merge_key, on_start)
        loop = asyncio.get_running_loop()
        guarded = partial(self._run_alone, predict, data, self._clock.monotonic(), on_start)
        return loop.run_in_executor(self._executor, guarded)

    def _is_own_schema(self, schema: Any, model: LoadedModel) -> bool:
        """`schema == model.input_schema`, remembered: comparing two MLflow schemas column
        by column cost 12 µs a request, and a snapshot's schemas never change."""
        if schema is model.input_schema:
            return True
        if id(model) not in self._serving:  # remember nothing that would keep it alive
            return bool(schema == model.input_schema)
        key = (id(schema), id(model))
        known = self._schema_matches.get(key)
        if known is None or known[0] is not schema or known[1] is not model:
            known = (schema, model, bool(schema == model.input_schema))
            self._schema_matches[key] = known
        return known[2]

    def _run_alone(
        self, predict: Predict, data: Any, handed_at_s: float, on_start: OnStart | None
    ) -> Any:
        started_s = self._clock.monotonic()
        if self._max_lag_ms is not None and (started_s - handed_at_s) * 1000 > self._max_lag_ms:
            raise WorkSkipped("waited past the lag bound")
        if on_start is not None:
            on_start(started_s)
        return predict(data)

    def _batcher(self, model: LoadedModel, unchecked: bool, predict: Predict) -> MicroBatcher:
        key = (id(model), unchecked)
        entry = self._batchers.get(key)
        if entry is None or entry[0] is not model:
            batcher = MicroBatcher(
                predict,
                max_batch_size=self._batching.max_batch_size,
                max_batch_wait_ms=self._batching.max_batch_wait_ms,
                executor=self._executor,
                clock=self._clock,
                max_lag_ms=self._max_lag_ms,
            )
            entry = (model, batcher)
            self._batchers[key] = entry
        return entry[1]

    def retire_unused(self, table: RoutingTable) -> None:
        """Stop the batchers of models this snapshot no longer serves (cheap when unchanged)."""
        if table is self._seen_table:
            return
        self._seen_table = table
        self._schema_matches.clear()
        models = [m for m in (table.champion, table.challenger) if m is not None]
        self._serving = {id(m) for m in models}
        self._backend.retain(models)
        for key in [key for key in self._batchers if key[0] not in self._serving]:
            _, batcher = self._batchers.pop(key)
            task = asyncio.create_task(batcher.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        batchers = [batcher for _, batcher in self._batchers.values()]
        self._batchers.clear()
        await asyncio.gather(*(b.aclose() for b in batchers), *self._closing)
