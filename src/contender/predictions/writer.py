"""LogWriter: gets prediction records to the store without ever blocking a request.

`submit` only appends to an in-memory queue. One background thread group-commits: it
blocks for the first record, then keeps taking records for up to `linger_s` (or until
`batch_size`), and writes them in one transaction, so a steady trickle of requests costs
a few commits a second instead of one each. A batch the store refuses is retried
with a growing delay until it goes in, so an outage delays records but loses none;
inserts are idempotent on `request_id`, so a retry never doubles a record. `close`
stops taking new records, writes everything queued, then joins the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from contender.metrics import ServiceMetrics
from contender.predictions.record import PredictionRecord
from contender.predictions.store import PredictionStore

_log = logging.getLogger(__name__)


class LogWriter:
    def __init__(
        self,
        store: PredictionStore,
        metrics: ServiceMetrics,
        *,
        batch_size: int = 512,
        linger_s: float = 0.05,
        retry_delays_s: tuple[float, ...] = (0.05, 0.2, 1.0, 2.0),
        wait: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._retry_delays_s = retry_delays_s
        self._stopping = threading.Event()
        self._wait = wait or self._stopping.wait
        # None is the stop mark that close() queues behind the last record.
        self._queue: queue.SimpleQueue[PredictionRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="contender-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, record: PredictionRecord) -> None:
        """Never blocks; safe from any thread."""
        self._queue.put(record)

    def close(self) -> None:
        """Write everything submitted so far, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            if stop:
                return

    def _next_batch(self) -> tuple[list[PredictionRecord], bool]:
        batch: list[PredictionRecord] = []
        item = self._queue.get()
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

    def _write(self, batch: list[PredictionRecord]) -> None:
        attempt = 0
        while True:
            try:
                self._store.append_many(batch)
            except Exception:
                self._metrics.log_write_failures.inc()
                delay_s = self._retry_delays_s[min(attempt, len(self._retry_delays_s) - 1)]
                _log.exception("store refused %d records; retry in %.2fs", len(batch), delay_s)
                self._metrics.log_queue_depth.set(self._queue.qsize() + len(batch))
                attempt += 1
                self._wait(delay_s)
                continue
            self._metrics.log_records_written.inc(len(batch))
            # Set per batch, not per request nor at scrape time: with `--workers N` each
            # worker's value lives in a shared file that any worker's scrape reads.
            self._metrics.log_queue_depth.set(self._queue.qsize())
            return
