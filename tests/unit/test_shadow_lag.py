"""Late shadow work is dropped before it runs: the skip looks at time, nothing else.

A running call is held on a gate (see test_batcher.py), the fake clock is moved past the
lag bound while requests wait behind it, and nothing here is timed.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from contender.routing.batcher import MicroBatcher, WorkSkipped
from tests.unit.test_batcher import FakeClock, RecordingModel, frame_of, settle


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
async def model(executor: ThreadPoolExecutor) -> AsyncIterator[RecordingModel]:
    recording = RecordingModel()
    yield recording
    recording.gate.set()


def lagging(model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock) -> MicroBatcher:
    return MicroBatcher(
        model, max_batch_size=64, max_batch_wait_ms=0, executor=executor, clock=clock,
        max_lag_ms=1000,
    )  # fmt: skip


async def busy(
    model: RecordingModel, executor: ThreadPoolExecutor, value: float
) -> tuple[FakeClock, MicroBatcher, asyncio.Task[Any]]:
    """A lagging batcher whose model is held busy scoring `value`: the rest must queue."""
    clock = FakeClock()
    batcher = lagging(model, executor, clock)
    model.gate.clear()
    running = asyncio.create_task(batcher.predict(frame_of(value)))
    await model.entered.wait()
    return clock, batcher, running


@pytest.mark.anyio
async def test_work_queued_past_the_lag_bound_is_skipped_and_never_run(
    model: RecordingModel, executor: ThreadPoolExecutor
) -> None:
    clock, batcher, first = await busy(model, executor, 1.0)
    early = asyncio.create_task(batcher.predict(frame_of(2.0)))
    await settle()
    clock.monotonic_s = 0.6
    late_enough = asyncio.create_task(batcher.predict(frame_of(3.0)))
    await settle()
    clock.monotonic_s = 1.2  # `early` has waited 1.2 s, `late_enough` 0.6 s
    model.gate.set()
    assert list(await first) == [2.0]
    with pytest.raises(WorkSkipped):
        await early
    assert list(await late_enough) == [6.0]
    assert model.calls == [[1.0], [3.0]]
    await batcher.aclose()


@pytest.mark.anyio
async def test_a_new_request_clears_late_work_so_the_queue_stays_bounded(
    model: RecordingModel, executor: ThreadPoolExecutor
) -> None:
    clock, batcher, running = await busy(model, executor, 0.0)
    waiting = [asyncio.create_task(batcher.predict(frame_of(float(i)))) for i in range(100)]
    await settle()
    clock.monotonic_s = 5.0
    fresh = asyncio.create_task(batcher.predict(frame_of(7.0)))
    await settle()
    # The hundred late requests were failed when `fresh` arrived, before the model freed up.
    assert all(task.done() for task in waiting)
    assert all(isinstance(task.exception(), WorkSkipped) for task in waiting)
    model.gate.set()
    await running
    assert list(await fresh) == [14.0]
    await batcher.aclose()


@pytest.mark.anyio
async def test_at_light_load_nothing_is_skipped(
    model: RecordingModel, executor: ThreadPoolExecutor
) -> None:
    clock = FakeClock()
    batcher = lagging(model, executor, clock)
    for i in range(50):
        clock.monotonic_s += 10.0  # long gaps between requests: each one runs at once
        assert list(await batcher.predict(frame_of(float(i)))) == [2.0 * i]
    assert len(model.calls) == 50
    await batcher.aclose()


async def _score_or_skip(batcher: MicroBatcher, frame: pd.DataFrame) -> str:
    try:
        await batcher.predict(frame)
    except WorkSkipped:
        return "skipped"
    return "scored"


@pytest.mark.anyio
async def test_skipped_work_is_freed_at_once_not_by_the_garbage_collector(
    model: RecordingModel, executor: ThreadPoolExecutor
) -> None:
    """A reference cycle per skip kept a second of queued requests for a full collection."""
    clock, batcher, running = await busy(model, executor, 0.0)
    frame = frame_of(1.0)
    alive = weakref.ref(frame)
    gc.disable()
    try:
        late = asyncio.create_task(_score_or_skip(batcher, frame))
        del frame
        await settle()
        clock.monotonic_s = 5.0
        fresh = asyncio.create_task(batcher.predict(frame_of(2.0)))  # clears the late one
        assert await late == "skipped"
        assert alive() is None
    finally:
        gc.enable()
    model.gate.set()
    await running
    await fresh
    await batcher.aclose()
