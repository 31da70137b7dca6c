"""The dashboard's in-memory time series, exactly, on a fake clock."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from contender.predictions.agreement import agreeing_rows
from contender.predictions.live import LiveSeries, bin_value_ms, latency_bin, quantile_ms
from contender.predictions.record import ArmOutcome, PredictionRecord
from tests.fakes import FakeClock

CHAMPION = ArmOutcome("1", [[0.2, 0.8]], 5.0)
CHALLENGER = ArmOutcome("2", [[0.4, 0.6]], 8.0)


def record(
    served_by: str = "champion",
    champion: ArmOutcome = CHAMPION,
    challenger: ArmOutcome = CHALLENGER,
    *,
    fallback: bool = False,
    weight: float | None = 0.1,
    at: FakeClock | None = None,
) -> PredictionRecord:
    return PredictionRecord(
        request_id="r",
        timestamp=(at or FakeClock()).now().isoformat(timespec="microseconds"),
        model_name="m",
        inputs={},
        served_by=served_by,
        fallback=fallback,
        routing_draw=0.5,
        routing_key=None,
        champion=champion,
        challenger=challenger,
        challenger_weight=weight,
    )


def add(series: LiveSeries, clock: FakeClock, n: int, **fields: Any) -> None:
    """`n` records of requests that arrived now."""
    for _ in range(n):
        series.add(record(**fields, at=clock))


def served_series(snapshot: dict[str, Any], arm: str = "champion") -> list[float | None]:
    values: list[float | None] = snapshot["series"]["served_per_s"][arm]
    return values


# ---- buckets, window, rates ----------------------------------------------------------


def test_records_land_in_ten_second_buckets_at_the_time_they_arrive() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 20)
    clock.advance(10)
    add(series, clock, 30)
    clock.advance(5)  # the current bucket is half done
    snapshot = series.snapshot()
    assert snapshot["series"]["end_s"][-2:] == [-5.0, 0.0]
    # Oldest first: ..., bucket 0 (20 in 10 s), bucket 1 (30 in its first 5 s).
    assert served_series(snapshot)[-2:] == [2.0, 6.0]
    assert served_series(snapshot)[:-2] == [None] * 88  # before the service started
    assert snapshot["window"]["requests"] == 50
    assert snapshot["window"]["covered_s"] == 15.0
    assert snapshot["window"]["requests_per_s"] == pytest.approx(50 / 15)


def test_the_series_has_one_point_per_bucket_ending_now() -> None:
    clock = FakeClock()
    clock.advance(1000)
    series = LiveSeries(clock)
    clock.advance(3)
    ends = series.snapshot()["series"]["end_s"]
    assert len(ends) == 90
    assert ends[-1] == 0.0
    assert ends[-2] == -3.0  # bucket 100 began at 1000 s, 3 s ago
    assert ends[0] == -3.0 - 88 * 10


def test_the_window_is_fifteen_minutes_and_older_buckets_are_reused() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 10)  # bucket 0
    clock.advance(899)  # bucket 89: bucket 0 is the oldest in the window
    assert series.snapshot()["window"]["requests"] == 10
    clock.advance(1)  # bucket 90 takes bucket 0's slot
    assert series.snapshot()["window"]["requests"] == 0
    add(series, clock, 3)
    snapshot = series.snapshot()
    assert snapshot["window"]["requests"] == 3
    assert snapshot["window"]["covered_s"] == 890.0  # back to bucket 1's start
    assert served_series(snapshot)[-1] is None  # bucket 90 has just begun: no rate yet
    clock.advance(2)
    assert served_series(series.snapshot())[-1] == 1.5


def test_rates_count_only_the_time_the_window_covers() -> None:
    clock = FakeClock()
    clock.advance(100)
    series = LiveSeries(clock)
    clock.advance(40)
    add(series, clock, 80, served_by="challenger")
    add(series, clock, 20)
    window = series.snapshot()["window"]
    assert window["covered_s"] == 40.0  # since the series began, not 15 minutes
    assert window["requests_per_s"] == 2.5
    assert window["arms"]["challenger"]["served_per_s"] == 2.0
    assert window["arms"]["champion"]["served_per_s"] == 0.5
    assert window["served_share"] == {"champion": 0.2, "challenger": 0.8}
    clock.advance(2000)
    add(series, clock, 89)
    window = series.snapshot()["window"]
    assert window["covered_s"] == 890.0  # the 89 full buckets back, plus the current one's 0 s
    assert window["requests_per_s"] == pytest.approx(0.1)


def test_the_last_minute_is_the_last_six_buckets() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 100)
    clock.advance(60)
    add(series, clock, 30)
    clock.advance(5)
    minute = series.snapshot()["last_minute"]
    assert minute["requests"] == 30  # bucket 0 is seven buckets back
    assert minute["covered_s"] == 55.0
    assert minute["requests_per_s"] == pytest.approx(30 / 55)


def test_an_empty_series_has_no_rates_or_latencies() -> None:
    window = LiveSeries(FakeClock()).snapshot()["window"]
    assert window["requests"] == 0
    assert window["requests_per_s"] is None
    assert window["served_share"] == {"champion": None, "challenger": None}
    assert window["agreement"]["share"] is None
    assert window["arms"]["champion"]["latency_ms"] == {"p50": None, "p99": None}


# ---- latency quantiles ---------------------------------------------------------------


@pytest.mark.parametrize("latency_ms", [0.05, 0.9, 1.0, 3.7, 42.0, 999.0, 60_000.0])
def test_a_bin_stands_for_its_values_within_five_percent(latency_ms: float) -> None:
    assert bin_value_ms(latency_bin(latency_ms)) == pytest.approx(latency_ms, rel=0.045)


def test_latencies_beyond_the_bins_are_clamped() -> None:
    assert bin_value_ms(latency_bin(0.0)) == 2**-7
    assert bin_value_ms(latency_bin(1e9)) == 2**17


def test_quantiles_are_nearest_rank_over_the_window() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    for latency_ms in range(1, 101):  # 1..100 ms over two buckets
        series.add(record(champion=ArmOutcome("1", [[0.2, 0.8]], float(latency_ms)), at=clock))
        if latency_ms == 50:
            clock.advance(10)
    snapshot = series.snapshot()
    latency = snapshot["window"]["arms"]["champion"]["latency_ms"]
    assert latency["p50"] == pytest.approx(50, rel=0.045)
    assert latency["p99"] == pytest.approx(99, rel=0.045)
    assert snapshot["series"]["p50_ms"]["champion"][-2:] == [
        pytest.approx(25, rel=0.045),
        pytest.approx(75, rel=0.045),
    ]
    assert snapshot["series"]["p99_ms"]["champion"][-1] == pytest.approx(100, rel=0.045)
    assert snapshot["series"]["p50_ms"]["champion"][-3] is None


def test_quantile_of_a_histogram() -> None:
    assert quantile_ms({}, 0.5) is None
    bins = {latency_bin(1.0): 98, latency_bin(200.0): 2}
    assert quantile_ms(bins, 0.5) == pytest.approx(1.0, rel=0.045)
    assert quantile_ms(bins, 0.98) == pytest.approx(1.0, rel=0.045)
    assert quantile_ms(bins, 0.99) == pytest.approx(200.0, rel=0.045)


# ---- errors, skips, fallbacks, the split ---------------------------------------------


def test_errors_skips_and_fallbacks_are_counted_per_arm() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    failed = ArmOutcome("2", None, 3.0, "ValueError: boom")
    overload = ArmOutcome("2", skipped="overload")
    add(series, clock, 6)
    add(series, clock, 2, challenger=failed, fallback=True)
    add(series, clock, 3, challenger=overload)
    add(series, clock, 4, challenger=ArmOutcome("2", skipped="breaker_open"), fallback=True)
    add(series, clock, 1, served_by="challenger", champion=ArmOutcome("1", skipped="overload"))
    window = series.snapshot()["window"]
    champion, challenger = window["arms"]["champion"], window["arms"]["challenger"]
    assert window["requests"] == 16
    assert window["fallbacks"] == 6
    assert challenger["skipped"] == {"overload": 3, "breaker_open": 4}
    assert champion["skipped"] == {"overload": 1, "breaker_open": 0}
    assert (challenger["predictions"], challenger["errors"]) == (7, 2)
    assert challenger["error_rate"] == pytest.approx(2 / 9)
    assert (champion["predictions"], champion["errors"], champion["error_rate"]) == (15, 0, 0.0)
    assert (champion["served"], challenger["served"]) == (15, 1)
    # Errors and skips have no latency in the quantiles: only the successful 8 ms runs.
    assert challenger["latency_ms"]["p99"] == pytest.approx(8.0, rel=0.045)


def test_the_expected_split_follows_the_weights_the_draws_used() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 10, weight=0.1)
    add(series, clock, 10, weight=0.5)
    # Testing off: the challenger was not invoked, so the draw gave it nothing.
    add(series, clock, 20, challenger=ArmOutcome(), weight=0.5)
    window = series.snapshot()["window"]
    assert window["expected_challenger_share"] == pytest.approx((1 + 5) / 40)
    assert window["arms"]["challenger"]["predictions"] == 20
    assert window["agreement"]["rows"] == 20


# ---- agreement -----------------------------------------------------------------------


def test_agreement_is_over_the_rows_both_arms_scored() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 3)  # argmax 1 and 1: agree
    add(series, clock, 1, challenger=ArmOutcome("2", [[0.6, 0.4]], 8.0))  # argmax 0: disagree
    add(series, clock, 5, challenger=ArmOutcome("2", skipped="overload"))  # not compared
    add(series, clock, 2, challenger=ArmOutcome("2", None, 1.0, "boom"))  # not compared
    two_rows = ArmOutcome("2", np.array([[0.1, 0.9], [0.3, 0.7]]), 2.0)
    add(
        series,
        clock,
        1,
        champion=ArmOutcome("1", [[0.9, 0.1], [0.4, 0.6]], 2.0),
        challenger=two_rows,
    )
    agreement = series.snapshot()["window"]["agreement"]
    assert agreement == {"rows": 6, "agreed": 4, "share": pytest.approx(4 / 6)}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([[0.2, 0.8]], [[0.4, 0.6]], (1, 1)),  # same class
        ([[0.2, 0.3, 0.5]], [[0.5, 0.3, 0.2]], (1, 0)),  # three classes, argmax differs
        ([1.0, 2.0], [1.005, 2.5], (2, 1)),  # numbers: within 1 %
        ([[3.0]], [[3.01]], (1, 1)),  # one-column rows are numbers
        ([1, 2, 3], [1, 2, 4], (3, 2)),  # integer labels: equal
        (["yes", "no"], ["yes", "yes"], (2, 1)),  # other values: equal
        (0.5, 0.5, (1, 1)),  # a scalar answer
        ([[0.2, 0.8]], [[0.1, 0.2, 0.7]], (1, 0)),  # different outputs: not the same
        ([[1, [2]]], [[1, [2]]], (1, 1)),  # ragged: compared whole
        ([{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 3}], (2, 1)),  # records
    ],
)
def test_agreeing_rows(a: Any, b: Any, expected: tuple[int, int]) -> None:
    assert agreeing_rows(a, b) == expected
    if isinstance(a, list):  # numpy's path for big answers gives the same
        rows, agreed = expected
        assert agreeing_rows(a * 40, b * 40) == (rows * 40, agreed * 40)
    ragged = a == [[1, [2]]]
    if not ragged:  # and so do arrays, as `rows_of` leaves them
        assert agreeing_rows(np.asarray(a), np.asarray(b)) == expected


# ---- the request path and the fold ---------------------------------------------------


def test_add_only_queues_and_a_snapshot_folds() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    add(series, clock, 5)
    assert series.fold() == 5
    assert series.fold() == 0
    add(series, clock, 2)
    assert series.snapshot()["window"]["requests"] == 7


def test_past_max_pending_the_oldest_queued_records_are_lost() -> None:
    clock = FakeClock()
    series = LiveSeries(clock, max_pending=4)
    add(series, clock, 10)
    assert series.fold() == 4


def test_the_fold_thread_empties_the_queue_until_closed() -> None:
    clock = FakeClock()
    series = LiveSeries(clock)
    series.start(interval_s=0.01)
    try:
        add(series, clock, 25)
        deadline = time.monotonic() + 10
        while series.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert series.pending == 0
        assert series.snapshot()["window"]["requests"] == 25
    finally:
        series.close()
    add(series, clock, 1)
    time.sleep(0.05)
    assert series.pending == 1  # closed: nothing folds but a snapshot
