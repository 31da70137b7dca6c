"""LiveSeries: the last 15 minutes of traffic, kept in memory for `GET /dashboard`.

What it keeps: a ring of `buckets` (90) time buckets of `bucket_s` (10 s) each, bucket
`i` covering the Unix time `[i * bucket_s, (i + 1) * bucket_s)`, a record going to the
bucket of its `timestamp` (when its request arrived); a slot is reused once its bucket
has left the window. Per bucket: requests, fallbacks, the challenger answers
the weights in force called for, and per arm its answers, its predictions, its errors,
its skipped shadow work by reason and a histogram of its latencies; plus the rows both
arms scored and how many of them agree.

Cost on the request path: `add` appends the record to a deque (thread-safe without a
lock) and allocates nothing: about 0.1 µs. Everything else, the timestamp's parse
included, happens in `fold`: in a background thread four times a second (records wait
there no longer than they do in the log writer's queue), and in whoever reads a
`snapshot`, under a lock the event loop never takes.

Latency quantiles come from a histogram whose bins are 2**(1/8) apart (about 9 %
wide): a quantile is the geometric middle of its bin, within 4.5 % of the exact value.
Latency is the model's own time for a prediction that succeeded (as in the record).

Agreement is over the rows both arms scored, by `predictions/agreement.py`'s rule.

Failure modes: the numbers are this process's own (with `--workers N`, one worker's)
and start empty at every start. A fold that falls `max_pending` records behind loses
the oldest (the counts then undercount): with four folds a second, that takes over
400,000 requests a second. A wall clock that jumps moves the window with it.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_right
from collections import deque
from datetime import datetime
from typing import Any

from contender.clock import Clock
from contender.predictions.agreement import agreeing_rows
from contender.predictions.record import ArmOutcome, PredictionRecord

_log = logging.getLogger(__name__)

ARMS = ("champion", "challenger")
SKIP_REASONS = ("overload", "breaker_open")
# A bucket's rate needs this much of it behind.
_MIN_RATE_S = 2.0
# Latency bins: 2**-7 ms (8 µs) to 2**17 ms (131 s), eight to an octave.
_BIN_RATIO = math.pow(2.0, 1 / 8)
_BIN_EDGES_MS = tuple(math.pow(2.0, -7 + k / 8) for k in range(24 * 8 + 1))


def latency_bin(latency_ms: float) -> int:
    """0 below the lowest edge, len(edges) above the highest, else the bin it falls in."""
    return bisect_right(_BIN_EDGES_MS, latency_ms)


def bin_value_ms(index: int) -> float:
    """The value a bin stands for: the geometric middle of its edges."""
    if index <= 0:
        return _BIN_EDGES_MS[0]
    if index >= len(_BIN_EDGES_MS):
        return _BIN_EDGES_MS[-1]
    return _BIN_EDGES_MS[index - 1] * math.sqrt(_BIN_RATIO)


def quantile_ms(bins: dict[int, int], q: float) -> float | None:
    """The q-quantile of a latency histogram (the nearest-rank one), None when empty."""
    total = sum(bins.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))  # 0.99 * 100 is not always 99
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value_ms(index)
    return bin_value_ms(max(bins))  # not reached: seen ends at total


class _ArmCounts:
    __slots__ = ("errors", "latency_bins", "predictions", "served", "skipped")

    def __init__(self) -> None:
        self.served = 0
        self.predictions = 0
        self.errors = 0
        self.skipped: dict[str, int] = {}
        self.latency_bins: dict[int, int] = {}

    def add(self, outcome: ArmOutcome) -> None:
        if outcome.version is None:
            return  # not invoked
        if outcome.skipped is not None:
            self.skipped[outcome.skipped] = self.skipped.get(outcome.skipped, 0) + 1
        elif outcome.error is not None:
            self.errors += 1
        elif outcome.latency_ms is not None:
            self.predictions += 1
            index = latency_bin(outcome.latency_ms)
            self.latency_bins[index] = self.latency_bins.get(index, 0) + 1

    def merge(self, other: _ArmCounts) -> None:
        self.served += other.served
        self.predictions += other.predictions
        self.errors += other.errors
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        for index, count in other.latency_bins.items():
            self.latency_bins[index] = self.latency_bins.get(index, 0) + count

    def summary(self, covered_s: float) -> dict[str, Any]:
        attempts = self.predictions + self.errors
        return {
            "served": self.served,
            "served_per_s": self.served / covered_s if covered_s > 0 else None,
            "predictions": self.predictions,
            "errors": self.errors,
            "error_rate": self.errors / attempts if attempts else None,
            "skipped": {reason: 0 for reason in SKIP_REASONS} | self.skipped,
            "latency_ms": {
                "p50": quantile_ms(self.latency_bins, 0.50),
                "p99": quantile_ms(self.latency_bins, 0.99),
            },
        }


class _Bucket:
    __slots__ = (
        "agreed_rows",
        "arms",
        "compared_rows",
        "expected_challenger",
        "fallbacks",
        "index",
        "requests",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.fallbacks = 0
        self.expected_challenger = 0.0
        """Sum over requests of the chance the draw gave the challenger."""
        self.compared_rows = 0
        self.agreed_rows = 0
        self.arms = {arm: _ArmCounts() for arm in ARMS}

    def add(self, record: PredictionRecord) -> None:
        self.requests += 1
        self.fallbacks += record.fallback
        if record.challenger.version is not None and record.challenger_weight is not None:
            self.expected_challenger += record.challenger_weight
        if record.served_by in self.arms:
            self.arms[record.served_by].served += 1
        self.arms["champion"].add(record.champion)
        self.arms["challenger"].add(record.challenger)
        self._compare(record.champion, record.challenger)

    def _compare(self, champion: ArmOutcome, challenger: ArmOutcome) -> None:
        if not (_scored(champion) and _scored(challenger)):
            return
        try:
            rows, agreed = agreeing_rows(champion.predictions, challenger.predictions)
        except Exception as error:  # predictions of a shape nobody foresaw: not compared
            _log.debug("agreement not computed: %s: %s", type(error).__name__, error)
            return
        self.compared_rows += rows
        self.agreed_rows += agreed

    def merge(self, other: _Bucket) -> None:
        self.requests += other.requests
        self.fallbacks += other.fallbacks
        self.expected_challenger += other.expected_challenger
        self.compared_rows += other.compared_rows
        self.agreed_rows += other.agreed_rows
        for arm in ARMS:
            self.arms[arm].merge(other.arms[arm])

    def summary(self, covered_s: float) -> dict[str, Any]:
        requests = self.requests
        return {
            "requests": requests,
            "requests_per_s": requests / covered_s if covered_s > 0 else None,
            "fallbacks": self.fallbacks,
            "served_share": {
                arm: (self.arms[arm].served / requests if requests else None) for arm in ARMS
            },
            "expected_challenger_share": self.expected_challenger / requests if requests else None,
            "agreement": {
                "rows": self.compared_rows,
                "agreed": self.agreed_rows,
                "share": self.agreed_rows / self.compared_rows if self.compared_rows else None,
            },
            "arms": {arm: self.arms[arm].summary(covered_s) for arm in ARMS},
        }


def _scored(outcome: ArmOutcome) -> bool:
    return (
        outcome.version is not None
        and outcome.predictions is not None
        and outcome.error is None
        and outcome.skipped is None
    )


class LiveSeries:
    def __init__(
        self,
        clock: Clock,
        *,
        bucket_s: float = 10.0,
        buckets: int = 90,
        max_pending: int = 100_000,
    ) -> None:
        self._clock = clock
        self._bucket_s = bucket_s
        self._buckets = buckets
        self._ring: list[_Bucket | None] = [None] * buckets
        self._pending: deque[PredictionRecord] = deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._started_s = clock.now().timestamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def window_s(self) -> float:
        return self._bucket_s * self._buckets

    @property
    def pending(self) -> int:
        """Records added and not folded yet."""
        return len(self._pending)

    def add(self, record: PredictionRecord) -> None:
        """A finished record (a record sink); from the event loop, so it only queues."""
        self._pending.append(record)

    def fold(self) -> int:
        """Move queued records into their buckets; how many. Safe from any thread."""
        folded = 0
        with self._lock:
            # Only what is here now: a steady stream must not keep the lock forever.
            for _ in range(len(self._pending)):
                record = self._pending.popleft()
                at_s = datetime.fromisoformat(record.timestamp).timestamp()
                bucket = self._bucket(int(at_s // self._bucket_s))
                if bucket is not None:
                    bucket.add(record)
                folded += 1
        return folded

    def _bucket(self, index: int) -> _Bucket | None:
        """Bucket `index`, new when its slot holds an older one; None when it is gone."""
        slot = index % self._buckets
        bucket = self._ring[slot]
        if bucket is None or bucket.index < index:
            bucket = self._ring[slot] = _Bucket(index)
        elif bucket.index > index:
            return None
        return bucket

    def snapshot(self) -> dict[str, Any]:
        """The window and its series, JSON-able; folds first. Blocking: call it in a thread."""
        self.fold()
        with self._lock:
            now_s = self._clock.now().timestamp()
            current = int(now_s // self._bucket_s)
            indices = range(current - self._buckets + 1, current + 1)
            buckets = [self._in_window(index) for index in indices]
            return {
                "at": self._clock.now().isoformat(),
                "bucket_s": self._bucket_s,
                "window_s": self.window_s,
                "window": self._total(buckets, indices[0], now_s),
                "last_minute": self._total(buckets[-6:], indices[-6:][0], now_s),
                "series": self._series(buckets, indices, now_s),
            }

    def _in_window(self, index: int) -> _Bucket | None:
        bucket = self._ring[index % self._buckets]
        return bucket if bucket is not None and bucket.index == index else None

    def _covered_s(self, first_index: int, end_s: float) -> float:
        """Seconds from bucket `first_index`'s start (or this series' start) to `end_s`."""
        return max(0.0, end_s - max(first_index * self._bucket_s, self._started_s))

    def _total(
        self, buckets: list[_Bucket | None], first_index: int, now_s: float
    ) -> dict[str, Any]:
        total = _Bucket(first_index)
        for bucket in buckets:
            if bucket is not None:
                total.merge(bucket)
        covered_s = self._covered_s(first_index, now_s)
        return {"covered_s": covered_s, **total.summary(covered_s)}

    def _series(
        self, buckets: list[_Bucket | None], indices: range, now_s: float
    ) -> dict[str, Any]:
        """One point per bucket, oldest first, at its end (seconds before now, <= 0);
        Rates None where the service was not running yet (or for under 2 s), latencies
        None without samples."""
        ends_s: list[float] = []
        served: dict[str, list[float | None]] = {arm: [] for arm in ARMS}
        p50: dict[str, list[float | None]] = {arm: [] for arm in ARMS}
        p99: dict[str, list[float | None]] = {arm: [] for arm in ARMS}
        for index, bucket in zip(indices, buckets, strict=True):
            end_s = min((index + 1) * self._bucket_s, now_s)
            ends_s.append(end_s - now_s)
            covered_s = self._covered_s(index, end_s)
            # A bucket just begun has no rate yet: one request would read as hundreds.
            rated = covered_s >= _MIN_RATE_S
            for arm in ARMS:
                counts = bucket.arms[arm] if bucket is not None else _ArmCounts()
                served[arm].append(counts.served / covered_s if rated else None)
                p50[arm].append(quantile_ms(counts.latency_bins, 0.50))
                p99[arm].append(quantile_ms(counts.latency_bins, 0.99))
        return {"end_s": ends_s, "served_per_s": served, "p50_ms": p50, "p99_ms": p99}

    def start(self, interval_s: float = 0.25) -> None:
        """Fold once every `interval_s` in a background thread, until `close`."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._fold_every, args=(interval_s,), name="live-series", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _fold_every(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.fold()
            except Exception:
                # A bug here must not stop the dashboard's numbers for the process's life.
                _log.exception("live series fold failed")
