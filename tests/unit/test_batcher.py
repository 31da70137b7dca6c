"""MicroBatcher: row-exact splitting, failure isolation, waiting rules, lifecycle.

Nothing here is timed. Requests are made to queue behind a running call by holding
that call on a `threading.Event`; `asyncio.sleep(0)` is used only as a scheduling
yield (let the tasks just created reach the queue), never to wait for time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contender.routing.batcher import BatcherClosedError, MicroBatcher, _concat

POISON = -1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.monotonic_s = 0.0

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.monotonic_s


class RecordingModel:
    """An echo model: scores each row as its `value`; raises on POISON.

    `gate` holds calls until set, `entered` is set (on the loop) when a call starts,
    `calls` lists the values each call saw.
    """

    def __init__(self, output: Callable[[pd.DataFrame], Any] | None = None) -> None:
        self.calls: list[list[float]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._output = output or (lambda frame: frame["value"].to_numpy() * 2)

    def __call__(self, frame: pd.DataFrame) -> Any:
        self.calls.append(frame["value"].tolist())
        self._loop.call_soon_threadsafe(self.entered.set)
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        if (frame["value"] == POISON).any():
            raise ValueError("poison row")
        return self._output(frame)

    @property
    def call_sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


class RecordingSleep:
    """A sleep that records its durations and returns only when `fire` is set."""

    def __init__(self, clock: FakeClock, *, fires_at_once: bool) -> None:
        self.durations_s: list[float] = []
        self.called = asyncio.Event()
        self.fire = asyncio.Event()
        self._clock = clock
        if fires_at_once:
            self.fire.set()

    async def __call__(self, seconds: float) -> None:
        self.durations_s.append(seconds)
        self.called.set()
        await self.fire.wait()
        self._clock.monotonic_s += seconds


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def model(executor: ThreadPoolExecutor) -> AsyncIterator[RecordingModel]:
    # Depends on `executor` so that the gate opens before the executor shuts down.
    recording = RecordingModel()
    yield recording
    recording.gate.set()


def frame_of(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"value": list(values), "other": [1.0] * len(values)})


async def settle() -> None:
    """Let every task that is ready run until it blocks (a scheduling yield)."""
    for _ in range(5):
        await asyncio.sleep(0)


def make_batcher(
    model: Callable[[pd.DataFrame], Any],
    executor: ThreadPoolExecutor,
    clock: FakeClock,
    *,
    max_batch_size: int = 64,
    max_batch_wait_ms: float = 0.0,
    sleep: RecordingSleep | None = None,
) -> MicroBatcher:
    if sleep is None:
        return MicroBatcher(
            model,
            max_batch_size=max_batch_size,
            max_batch_wait_ms=max_batch_wait_ms,
            executor=executor,
            clock=clock,
        )
    return MicroBatcher(
        model,
        max_batch_size=max_batch_size,
        max_batch_wait_ms=max_batch_wait_ms,
        executor=executor,
        clock=clock,
        sleep=sleep,
    )


async def hold_model(model: RecordingModel, batcher: MicroBatcher) -> asyncio.Task[Any]:
    """Start a one-row call and keep the model busy with it until `model.gate` is set."""
    model.gate.clear()
    model.entered.clear()
    task = asyncio.create_task(batcher.predict(frame_of(1000.0)))
    await model.entered.wait()
    return task


# -- row-exact results -------------------------------------------------------------


@pytest.mark.anyio
async def test_many_concurrent_callers_each_get_their_own_rows_in_order(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    sizes = [1, 3, 17, 100]
    frames = [
        frame_of(*(float(i * 1000 + j) for j in range(sizes[i % len(sizes)]))) for i in range(200)
    ]
    async with make_batcher(model, executor, clock, max_batch_size=64) as batcher:
        results = await asyncio.gather(*(batcher.predict(f) for f in frames))

    for frame, result in zip(frames, results, strict=True):
        np.testing.assert_array_equal(result, frame["value"].to_numpy() * 2)
    assert len(model.calls) < len(frames)
    assert sum(model.call_sizes) == sum(len(f) for f in frames)
    # Nothing merged past the limit, except a single 100-row request on its own.
    assert all(size <= 64 or size == 100 for size in model.call_sizes)


def _two_column_proba(frame: pd.DataFrame) -> Any:
    values = frame["value"].to_numpy()
    return np.column_stack([values, -values])


def _frame_output(frame: pd.DataFrame) -> Any:
    # A non-default index proves the parts come back with a fresh one.
    return pd.DataFrame({"score": frame["value"].to_numpy()}, index=frame.index + 500)


OUTPUTS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "numpy-2d": _two_column_proba,
    "numpy-1d": lambda frame: frame["value"].to_numpy(),
    "dataframe": _frame_output,
    "series": lambda frame: pd.Series(frame["value"].to_numpy(), index=frame.index + 500),
    "list": lambda frame: frame["value"].tolist(),
}


def _expected(kind: str, frame: pd.DataFrame) -> Any:
    values = frame["value"].to_numpy()
    if kind == "numpy-2d":
        return np.column_stack([values, -values])
    if kind == "dataframe":
        return pd.DataFrame({"score": values})
    if kind == "series":
        return pd.Series(values)
    if kind == "list":
        return values.tolist()
    return values


@pytest.mark.anyio
@pytest.mark.parametrize("kind", list(OUTPUTS))
async def test_output_types_are_split_by_rows(
    kind: str, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    model = RecordingModel(OUTPUTS[kind])
    frames = [frame_of(*(float(i * 100 + j) for j in range(n))) for i, n in enumerate([1, 3, 17])]
    async with make_batcher(model, executor, clock) as batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(f)) for f in frames]
        await settle()
        model.gate.set()
        await held
        results = await asyncio.gather(*tasks)

    assert model.call_sizes == [1, 21]
    for frame, result in zip(frames, results, strict=True):
        expected = _expected(kind, frame)
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(result, expected)
        elif isinstance(expected, pd.Series):
            pd.testing.assert_series_equal(result, expected)
        elif isinstance(expected, list):
            assert result == expected
        else:
            assert result.shape == expected.shape
            np.testing.assert_array_equal(result, expected)


# -- failures ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_poisoned_request_fails_alone_and_its_neighbours_get_their_rows(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    frames = [frame_of(float(i), float(i) + 0.5) for i in range(10)]
    frames[4] = frame_of(40.0, POISON)
    async with make_batcher(model, executor, clock) as batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(f)) for f in frames]
        await settle()
        model.gate.set()
        await held
        results = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(results[4], ValueError)
    assert str(results[4]) == "poison row"
    for i, (frame, result) in enumerate(zip(frames, results, strict=True)):
        if i != 4:
            np.testing.assert_array_equal(result, frame["value"].to_numpy() * 2)
    # The held call, the failed merged call, then each request on its own.
    assert model.call_sizes == [1, 20] + [2] * 10


@pytest.mark.anyio
async def test_a_wrong_row_count_from_a_merged_call_is_retried_request_by_request(
    executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    model = RecordingModel(lambda frame: frame["value"].to_numpy()[:1])
    frames = [frame_of(1.0), frame_of(2.0), frame_of(3.0)]
    async with make_batcher(model, executor, clock) as batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(f)) for f in frames]
        await settle()
        model.gate.set()
        await held
        results = await asyncio.gather(*tasks)

    assert [r.tolist() for r in results] == [[1.0], [2.0], [3.0]]
    assert model.call_sizes == [1, 3, 1, 1, 1]


@pytest.mark.anyio
async def test_a_lone_request_failure_is_raised_to_its_caller(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    async with make_batcher(model, executor, clock) as batcher:
        with pytest.raises(ValueError, match="poison row"):
            await batcher.predict(frame_of(POISON))
        np.testing.assert_array_equal(await batcher.predict(frame_of(2.0)), [4.0])
    assert model.call_sizes == [1, 1]


@pytest.mark.anyio
async def test_cancelled_callers_do_not_disturb_the_others(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    async with make_batcher(model, executor, clock) as batcher:
        held = await hold_model(model, batcher)
        queued = [asyncio.create_task(batcher.predict(frame_of(float(v)))) for v in (1, 2, 3)]
        await settle()
        queued[1].cancel()
        held.cancel()  # its call is already running: its result is discarded
        await settle()
        model.gate.set()
        first, third = await asyncio.gather(queued[0], queued[2])
        np.testing.assert_array_equal(first, [2.0])
        np.testing.assert_array_equal(third, [6.0])
        assert queued[1].cancelled()
        assert held.cancelled()
        np.testing.assert_array_equal(await batcher.predict(frame_of(5.0)), [10.0])

    assert model.calls == [[1000.0], [1.0, 3.0], [5.0]]


# -- batch composition -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_request_bigger_than_the_batch_size_runs_alone(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    big = frame_of(*(float(v) for v in range(100)))
    async with make_batcher(model, executor, clock, max_batch_size=10) as batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(f)) for f in (big, frame_of(7.0))]
        await settle()
        model.gate.set()
        await held
        big_result, small_result = await asyncio.gather(*tasks)

    assert model.call_sizes == [1, 100, 1]
    np.testing.assert_array_equal(big_result, big["value"].to_numpy() * 2)
    np.testing.assert_array_equal(small_result, [14.0])


@pytest.mark.anyio
async def test_batches_stop_at_max_batch_size_in_arrival_order(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    async with make_batcher(model, executor, clock, max_batch_size=4) as batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(frame_of(float(v)))) for v in range(10)]
        await settle()
        model.gate.set()
        await held
        await asyncio.gather(*tasks)

    assert model.calls[1:] == [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]


@pytest.mark.anyio
async def test_frames_with_different_columns_or_dtypes_are_not_merged(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    ints = pd.DataFrame({"value": [3], "other": [1.0]})
    extra = frame_of(4.0).assign(extra=1.0)
    async with make_batcher(model, executor, clock) as batcher:
        held = await hold_model(model, batcher)
        frames = [frame_of(1.0), ints, extra, frame_of(2.0)]
        tasks = [asyncio.create_task(batcher.predict(f)) for f in frames]
        await settle()
        model.gate.set()
        await held
        results = await asyncio.gather(*tasks)

    assert model.calls[1:] == [[1.0, 2.0], [3], [4.0]]
    assert [r.tolist() for r in results] == [[2.0], [6], [8.0], [4.0]]


# -- waiting ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_lone_request_never_waits_for_company(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    sleep = RecordingSleep(clock, fires_at_once=False)  # would hang if ever awaited
    batcher = make_batcher(model, executor, clock, max_batch_wait_ms=10_000.0, sleep=sleep)
    async with batcher:
        for value in range(5):
            result = await batcher.predict(frame_of(float(value)))
            np.testing.assert_array_equal(result, [value * 2.0])

    assert sleep.durations_s == []
    assert model.call_sizes == [1] * 5


@pytest.mark.anyio
async def test_a_queued_batch_waits_out_the_rest_of_its_oldest_requests_wait(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    sleep = RecordingSleep(clock, fires_at_once=True)
    batcher = make_batcher(model, executor, clock, max_batch_wait_ms=50.0, sleep=sleep)
    async with batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(frame_of(float(v)))) for v in (1, 2)]
        await settle()
        clock.monotonic_s += 0.02  # the held call took 20 ms of the 50 ms
        model.gate.set()
        await held
        await asyncio.gather(*tasks)

    assert sleep.durations_s == [pytest.approx(0.03)]
    assert model.calls == [[1000.0], [1.0, 2.0]]


@pytest.mark.anyio
async def test_a_waiting_batch_runs_as_soon_as_it_is_full(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    sleep = RecordingSleep(clock, fires_at_once=False)  # the timer never fires here
    batcher = make_batcher(
        model, executor, clock, max_batch_size=3, max_batch_wait_ms=50.0, sleep=sleep
    )
    async with batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(frame_of(1.0)))]
        await settle()
        model.gate.set()
        await held
        await sleep.called.wait()
        tasks += [asyncio.create_task(batcher.predict(frame_of(float(v)))) for v in (2, 3)]
        results = await asyncio.gather(*tasks)

    assert [r.tolist() for r in results] == [[2.0], [4.0], [6.0]]
    assert model.calls == [[1000.0], [1.0, 2.0, 3.0]]
    assert sleep.durations_s[0] == pytest.approx(0.05)


@pytest.mark.anyio
async def test_a_full_queue_does_not_wait(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    sleep = RecordingSleep(clock, fires_at_once=False)
    batcher = make_batcher(
        model, executor, clock, max_batch_size=2, max_batch_wait_ms=50.0, sleep=sleep
    )
    async with batcher:
        held = await hold_model(model, batcher)
        tasks = [asyncio.create_task(batcher.predict(frame_of(float(v)))) for v in (1, 2)]
        await settle()
        model.gate.set()
        await held
        await asyncio.gather(*tasks)

    assert sleep.durations_s == []
    assert model.calls == [[1000.0], [1.0, 2.0]]


# -- lifecycle -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_close_finishes_queued_requests_then_refuses_new_ones(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    batcher = make_batcher(model, executor, clock)
    held = await hold_model(model, batcher)
    queued = asyncio.create_task(batcher.predict(frame_of(3.0)))
    await settle()
    closing = asyncio.create_task(batcher.aclose())
    await settle()
    model.gate.set()
    await closing

    np.testing.assert_array_equal(await held, [2000.0])
    np.testing.assert_array_equal(await queued, [6.0])
    with pytest.raises(BatcherClosedError):
        await batcher.predict(frame_of(1.0))


@pytest.mark.anyio
async def test_a_cancelled_close_fails_whoever_still_waits(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    batcher = make_batcher(model, executor, clock)
    held = await hold_model(model, batcher)
    queued = asyncio.create_task(batcher.predict(frame_of(3.0)))
    await settle()
    closing = asyncio.create_task(batcher.aclose())
    await settle()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing

    with pytest.raises(BatcherClosedError):
        await held
    with pytest.raises(BatcherClosedError):
        await queued


@pytest.mark.anyio
async def test_closing_an_unused_batcher_is_fine(
    model: RecordingModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    batcher = make_batcher(model, executor, clock)
    await batcher.aclose()
    await batcher.aclose()
    with pytest.raises(BatcherClosedError):
        await batcher.predict(frame_of(1.0))


@pytest.mark.parametrize(
    ("size", "wait_ms"),
    [(0, 0.0), (1, -1.0)],
)
def test_nonsense_settings_are_refused(
    size: int, wait_ms: float, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(
            lambda frame: frame,
            max_batch_size=size,
            max_batch_wait_ms=wait_ms,
            executor=executor,
            clock=clock,
        )


@pytest.mark.parametrize(
    "frames",
    [
        [pd.DataFrame({"a": [0.5, 1.5], "b": [2.0, 3.0]}), pd.DataFrame({"a": [4.0], "b": [5.0]})],
        [pd.DataFrame({"a": [1], "b": [2]}), pd.DataFrame({"a": [3], "b": [4]})],
        [pd.DataFrame({"a": [1], "b": [2.5]}), pd.DataFrame({"a": [3], "b": [4.5]})],
        [pd.DataFrame({"a": ["x"], "b": [1.0]}), pd.DataFrame({"a": ["y"], "b": [2.0]})],
    ],
    ids=["floats", "ints", "mixed-numeric", "with-strings"],
)
def test_merging_frames_equals_pandas_concat(frames: list[pd.DataFrame]) -> None:
    merged = _concat(frames)
    pd.testing.assert_frame_equal(merged, pd.concat(frames, ignore_index=True))
