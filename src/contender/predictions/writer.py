"""LogWriter: gets prediction records to the store without ever blocking a request.

`submit` only appends to an in-memory queue. One background thread group-commits: it
blocks for the first record, then keeps taking records for up to `linger_s` (or until
`batch_size`), and writes them in one transaction, so a steady trickle of requests costs
a few commits a second instead of one each. Inserts are idempotent on `request_id`, so
a retried batch never doubles a record.

A store outage: the batch in hand is retried with a growing delay; the queue behind it
is held to `buffer_records` by a second thread that spills the excess to the spill
directory (`predictions/spill.py`), so memory stays bounded however long the outage.
Once the store takes a batch again, the writer loads the spill files back, between
batches of live records. `close` writes everything queued; if the store is still down
at `close_deadline_s`, everything not stored goes to the spill directory instead, so a
SIGTERM during an outage exits in bounded time without losing a record.

Labels (`/feedback`) that the store cannot take go the same way (`submit_labels`): into
the queue, stored with the next batch, spilled past the bound or at the deadline, so a
label the service acknowledged survives an outage like a record does.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from contender.metrics import ServiceMetrics
from contender.predictions.record import Feedback, PredictionRecord
from contender.predictions.spill import SpillDirectory
from contender.predictions.store import PredictionStore

_log = logging.getLogger(__name__)

_Item = PredictionRecord | Feedback

# How often the spill thread checks the queue against its bound during an outage.
_SPILL_CHECK_S = 0.25
# A write taking longer than this counts as an outage for the buffer bound.
_STALLED_WRITE_S = 1.0
# How often an idle writer looks for spill files to load back.
_RECOVER_EVERY_S = 2.0


class LogWriter:
    def __init__(
        self,
        store: PredictionStore,
        metrics: ServiceMetrics,
        *,
        spill: SpillDirectory | None = None,
        buffer_records: int = 50_000,
        batch_size: int = 512,
        linger_s: float = 0.05,
        retry_delays_s: tuple[float, ...] = (0.05, 0.2, 1.0, 2.0),
        close_deadline_s: float = 10.0,
        wait: Callable[[float], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._spill = spill
        self._buffer_records = buffer_records
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._retry_delays_s = retry_delays_s
        self._close_deadline_s = close_deadline_s
        self._monotonic = monotonic
        self._wake = threading.Event()
        self._wait = wait or self._wake.wait
        self._closing_at: float | None = None
        # None is the stop mark that close() queues behind the last record.
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._held = 0  # items taken from the queue and not stored yet
        self._write_started: float | None = None  # while a write is in progress
        self._spill_lock = threading.Lock()
        self._healthy = True  # the last write went through
        self.last_error: str | None = None
        self.spilled = spill.pending_records() if spill is not None else 0
        self._thread = threading.Thread(target=self._run, name="contender-log-writer", daemon=True)
        self._spiller = threading.Thread(
            target=self._keep_bounded, name="contender-log-spill", daemon=True
        )
        self._stopped = threading.Event()
        metrics.log_store_healthy.set(1)

    def start(self) -> None:
        self._thread.start()
        if self._spill is not None:
            self._spiller.start()

    def submit(self, record: PredictionRecord) -> None:
        """Never blocks; safe from any thread."""
        self._queue.put(record)

    def submit_labels(self, labels: Sequence[Feedback]) -> None:
        """Labels the store could not take now: stored (or spilled) like records."""
        for label in labels:
            self._queue.put(label)

    @property
    def healthy(self) -> bool:
        """The store takes records: the last write went in and none is hanging."""
        return self._healthy and not self._write_stalled()

    @property
    def buffered(self) -> int:
        """Records and labels in memory that the store does not have yet."""
        return self._queue.qsize() + self._held

    def status(self) -> dict[str, object]:
        """`/status.log_store`."""
        return {
            "healthy": self.healthy,
            "last_error": self.last_error,
            "buffered": self.buffered,
            "spilled": self.spilled,
        }

    def close(self) -> None:
        """Write everything submitted so far (or spill it, past the deadline), then stop."""
        self._closing_at = self._monotonic()
        self._queue.put(None)
        self._wake.set()
        self._thread.join()
        self._stopped.set()
        if self._spiller.is_alive():
            self._spiller.join()

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            self._held = len(batch)
            if batch and not self._store_or_spill(batch):
                self._spill_rest_and_stop()
                return
            self._held = 0
            if stop:
                return
            if self._queue.qsize() < self._batch_size:  # no full batch is waiting
                self._recover()

    def _next_batch(self) -> tuple[list[_Item], bool]:
        batch: list[_Item] = []
        try:
            # Idle, wake now and then to look for spill files (this or another process's).
            item = self._queue.get(timeout=None if self._spill is None else _RECOVER_EVERY_S)
        except queue.Empty:
            return batch, False
        deadline = time.monotonic() + self._linger_s
        while item is not None:
            batch.append(item)
            remaining_s = deadline - time.monotonic()
            if len(batch) >= self._batch_size or remaining_s <= 0:
                return batch, False
            try:
                item = self._queue.get(timeout=remaining_s)
            except queue.Empty:
                return batch, False
        return batch, True

    def _store_or_spill(self, batch: list[_Item]) -> bool:
        """Store the batch, retrying through an outage; False when closing ran out of time
        (the batch is then spilled, or kept in memory if there is no spill directory)."""
        records, labels = _split(batch)
        attempt = 0
        while True:
            self._write_started = self._monotonic()
            try:
                if records:
                    self._store.append_many(records)
                if labels:  # after their records, so none counts as an orphan
                    self._store.add_feedback(labels)
            except Exception as error:
                self._write_started = None
                self._failed(error, len(batch))
                if self._past_close_deadline() and self._spill is not None:
                    self._spill_records(batch, "the store is still down at shutdown")
                    return False
                delay_s = self._retry_delays_s[min(attempt, len(self._retry_delays_s) - 1)]
                attempt += 1
                self._wait(self._capped_by_deadline(delay_s))
                continue
            self._write_started = None
            self._stored(len(records))
            return True

    def _failed(self, error: Exception, records: int) -> None:
        self._metrics.log_write_failures.inc()
        message = " ".join(f"{type(error).__name__}: {error}".split())[:500]
        if self._healthy:
            _log.exception("store refused %d records; retrying, spilling past the buffer", records)
        self._healthy = False
        self.last_error = message
        self._metrics.log_store_healthy.set(0)
        self._metrics.log_queue_depth.set(self.buffered)

    def _stored(self, records: int) -> None:
        self._metrics.log_records_written.inc(records)
        if not self._healthy:
            _log.info(
                "store takes records again (%d buffered) after: %s", self.buffered, self.last_error
            )
        self._healthy = True
        self.last_error = None
        self._metrics.log_store_healthy.set(1)
        # Set per batch, not per request nor at scrape time: with `--workers N` each
        # worker's value lives in a shared file that any worker's scrape reads.
        self._metrics.log_queue_depth.set(self._queue.qsize())

    def _past_close_deadline(self) -> bool:
        closing_at = self._closing_at
        return closing_at is not None and self._monotonic() - closing_at >= self._close_deadline_s

    def _capped_by_deadline(self, delay_s: float) -> float:
        if self._closing_at is None:
            return delay_s
        self._wake.clear()  # close() woke this wait; later ones are real waits
        if self._spill is None:  # nowhere else to put the records: retry on
            return delay_s
        left = self._close_deadline_s - (self._monotonic() - self._closing_at)
        return max(0.0, min(delay_s, left))

    def _spill_rest_and_stop(self) -> None:
        rest: list[_Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        if rest:
            self._spill_records(rest, "the store is still down at shutdown")
        self._held = 0

    def _keep_bounded(self) -> None:
        """While the store is down, spill what the queue holds past the buffer bound."""
        while not self._stopped.wait(_SPILL_CHECK_S):
            if self._write_stalled():
                self._metrics.log_store_healthy.set(0)
            excess = self.buffered - self._buffer_records
            if excess <= 0 or self.healthy:
                continue
            overflow: list[_Item] = []
            stop_mark = False
            for _ in range(excess):
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop_mark = True
                    break
                overflow.append(item)
            if overflow:
                self._spill_records(overflow, f"the buffer of {self._buffer_records} is full")
            if stop_mark:
                self._queue.put(None)  # close() is waiting behind it: nothing follows

    def _write_stalled(self) -> bool:
        """A write has hung for a while: a store that blocks (a locked SQLite file waits
        out its busy timeout) is down as far as the buffer is concerned."""
        started = self._write_started
        return started is not None and self._monotonic() - started > _STALLED_WRITE_S

    def _spill_records(self, items: list[_Item], why: str) -> None:
        assert self._spill is not None
        spill = self._spill
        records, labels = _split(items)
        with self._spill_lock:
            if records:
                _spill_durably(lambda: spill.write(records), f"{len(records)} records", why)
            if labels:
                _spill_durably(lambda: spill.write_labels(labels), f"{len(labels)} labels", why)
            self.spilled += len(items)
            self._metrics.log_spilled_records.inc(len(records))

    def _recover(self) -> None:
        """Load spill files back (this or any process's) while the store takes records and
        no full batch of live records is waiting: recovery never starves them."""
        if self._spill is None or self._closing_at is not None:
            return
        while self._healthy and self._queue.qsize() < self._batch_size and self._spill.finished():
            try:
                loaded = self._spill.load_into(
                    self._store.append_many, self._store.add_feedback, limit_files=1
                )
            except Exception as error:
                self._failed(error, 0)
                return
            if loaded.records:
                self._metrics.log_recovered_records.inc(loaded.records)
                _log.info("loaded %d spilled records back into the store", loaded.records)
            # Files of other workers sharing the directory count once loaded here.
            self.spilled = max(0, self.spilled - loaded.records - loaded.labels)
        if not self._spill.finished():
            self.spilled = 0


def _split(items: Sequence[_Item]) -> tuple[list[PredictionRecord], list[Feedback]]:
    records = [item for item in items if isinstance(item, PredictionRecord)]
    labels = [item for item in items if isinstance(item, Feedback)]
    return records, labels


def _spill_durably(write: Callable[[], Path], what: str, why: str) -> None:
    while True:
        try:
            path = write()
            break
        except OSError:
            # A full or read-only disk: nowhere to put them but memory. Keep trying.
            _log.exception("cannot spill %s; retrying in 1 s", what)
            time.sleep(1.0)
    _log.warning("spilled %s to %s (%s)", what, path, why)
