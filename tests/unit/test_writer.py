"""The log writer: batches, never drops on a store outage, drains on close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from contender.metrics import ServiceMetrics
from contender.predictions.record import ArmOutcome, Feedback, PredictionRecord
from contender.predictions.spill import SpillDirectory
from contender.predictions.writer import LogWriter
from tests.fakes import ListStore
from tests.support import poll_until


def record(i: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=f"r{i}", timestamp="2026-01-01T00:00:00.000000+00:00", model_name="m",
        inputs=lambda: {"columns": ["a"], "data": [[i]]}, served_by="champion", fallback=False,
        routing_draw=None, routing_key=None, champion=ArmOutcome("1", [[0.5, 0.5]], 1.0, None),
        challenger=ArmOutcome(),
    )  # fmt: skip


def test_close_writes_everything_submitted() -> None:
    store = ListStore()
    writer = LogWriter(store, ServiceMetrics(CollectorRegistry()), batch_size=7, linger_s=0.0)
    writer.start()
    for i in range(100):
        writer.submit(record(i))
    writer.close()
    assert [r.request_id for r in store.records] == [f"r{i}" for i in range(100)]


def test_a_store_outage_delays_records_but_loses_none() -> None:
    store = ListStore()
    store.fail_next = 3
    waits: list[float] = []
    metrics = ServiceMetrics(CollectorRegistry())
    writer = LogWriter(store, metrics, retry_delays_s=(0.01, 0.02), wait=waits.append)
    writer.start()
    for i in range(20):
        writer.submit(record(i))
    writer.close()
    assert len(store.records) == 20
    assert waits == [0.01, 0.02, 0.02]
    assert metrics.registry.get_sample_value("contender_log_write_failures_total") == 3
    assert store.records[0].to_row()["inputs"] == {"columns": ["a"], "data": [[0]]}


class SwitchableStore(ListStore):
    """A ListStore that refuses every write while `down` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def append_many(self, records: Any) -> None:
        if self.down.is_set():
            raise ConnectionError("connection refused")
        super().append_many(records)

    def add_feedback(self, items: Any) -> list[str]:
        if self.down.is_set():
            raise ConnectionError("connection refused")
        return super().add_feedback(items)


def ids(records: Iterable[PredictionRecord]) -> list[str]:
    return [record.request_id for record in records]


def no_labels(labels: Any) -> None:
    raise AssertionError(f"no labels were spilled, yet {labels} were loaded")


def label(i: int) -> Feedback:
    return Feedback(f"r{i}", 0, i % 2)


def test_labels_submitted_during_an_outage_are_stored_once_it_ends(tmp_path: Path) -> None:
    store = SwitchableStore()
    store.down.set()
    writer = LogWriter(
        store,
        ServiceMetrics(CollectorRegistry()),
        spill=SpillDirectory(tmp_path / "spill"),
        retry_delays_s=(0.01,),
    )
    writer.start()
    writer.submit(record(0))
    writer.submit_labels([label(0), label(1)])
    poll_until(lambda: True if writer.buffered == 3 else None, timeout_s=5, what="buffered")
    store.down.clear()
    poll_until(lambda: store.feedback or None, timeout_s=5, what="the labels to land")
    writer.close()
    assert store.labels() == {("r0", 0): 0, ("r1", 0): 1}
    assert ids(store.records) == ["r0"]


def test_labels_during_an_outage_keep_the_retry_delays(tmp_path: Path) -> None:
    attempts: list[float] = []

    class CountingStore(SwitchableStore):
        def append_many(self, records: Any) -> None:
            attempts.append(time.monotonic())
            super().append_many(records)

    store = CountingStore()
    store.down.set()
    writer = LogWriter(
        store,
        ServiceMetrics(CollectorRegistry()),
        spill=SpillDirectory(tmp_path / "spill"),
        retry_delays_s=(0.2,),
    )
    writer.start()
    writer.submit(record(0))
    poll_until(lambda: attempts or None, timeout_s=5, what="a first attempt")
    writer.submit_labels([label(0)])
    since = len(attempts)
    poll_until(lambda: len(attempts) >= since + 3 or None, timeout_s=5, what="3 retries")
    gaps = np.diff(attempts[since : since + 3])  # before close(), which wakes the wait
    store.down.clear()
    writer.close()
    assert gaps.min() > 0.15, f"retries {gaps} s apart, not 0.2 s: a hot retry loop"
    assert store.labels() == {("r0", 0): 0}


def test_labels_past_the_buffer_or_at_close_spill_and_load_back(tmp_path: Path) -> None:
    store = SwitchableStore()
    store.down.set()
    spill = SpillDirectory(tmp_path / "spill")
    writer = LogWriter(
        store,
        ServiceMetrics(CollectorRegistry()),
        spill=spill,
        buffer_records=20,
        batch_size=10,
        retry_delays_s=(0.05,),
        close_deadline_s=0.5,
    )
    writer.start()
    writer.submit_labels([label(i) for i in range(100)])
    poll_until(lambda: True if writer.spilled >= 70 else None, timeout_s=10, what="a spill")
    writer.submit(record(1))
    writer.close()
    assert store.feedback == []
    assert spill.pending_records() == 101
    assert {path.name.split("-")[0] for path in spill.finished()} == {"labels", "spill"}
    store.down.clear()
    loaded = SpillDirectory(spill.path).load_into(store.append_many, store.add_feedback)
    assert (loaded.records, loaded.labels) == (1, 100)
    assert store.labels() == {(f"r{i}", 0): i % 2 for i in range(100)}
    assert spill.finished() == []


def test_an_outage_past_the_buffer_spills_and_loads_back_by_itself(tmp_path: Path) -> None:
    store = SwitchableStore()
    store.down.set()
    metrics = ServiceMetrics(CollectorRegistry())
    spill = SpillDirectory(tmp_path / "spill")
    writer = LogWriter(
        store, metrics, spill=spill, buffer_records=50, batch_size=10, retry_delays_s=(0.01,)
    )
    writer.start()
    for i in range(500):
        writer.submit(record(i))
    poll_until(lambda: True if writer.spilled >= 440 else None, timeout_s=10, what="a spill")
    assert writer.buffered <= 50 + 10
    assert writer.status()["healthy"] is False
    assert "connection refused" in str(writer.status()["last_error"])
    assert spill.pending_records() == writer.spilled
    store.down.clear()
    poll_until(lambda: True if len(store.records) == 500 else None, timeout_s=10, what="recovery")
    writer.close()
    assert sorted(ids(store.records)) == sorted(f"r{i}" for i in range(500))
    assert spill.finished() == []
    assert writer.status() == {"healthy": True, "last_error": None, "buffered": 0, "spilled": 0}
    recovered = metrics.registry.get_sample_value("contender_log_recovered_records_total")
    spilled = metrics.registry.get_sample_value("contender_log_spilled_records_total")
    assert recovered == spilled
    assert spilled is not None
    assert spilled >= 440


def test_close_during_an_outage_spills_everything_by_the_deadline(tmp_path: Path) -> None:
    store = SwitchableStore()
    store.down.set()
    spill = SpillDirectory(tmp_path / "spill")
    writer = LogWriter(
        store,
        ServiceMetrics(CollectorRegistry()),
        spill=spill,
        retry_delays_s=(0.05,),
        close_deadline_s=0.5,
    )
    writer.start()
    for i in range(300):
        writer.submit(record(i))
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 5
    assert store.records == []
    assert spill.pending_records() == 300
    # `contender log recover` later: every record once.
    store.down.clear()
    loaded = SpillDirectory(tmp_path / "spill").load_into(store.append_many, store.add_feedback)
    assert loaded.records == 300
    assert sorted(ids(store.records)) == sorted(f"r{i}" for i in range(300))
    assert spill.finished() == []


def test_a_spilled_record_reads_back_as_it_was(tmp_path: Path) -> None:
    spill = SpillDirectory(tmp_path)
    original = record(7)
    spill.write([original])
    back: list[PredictionRecord] = []
    spill.load_into(back.extend, no_labels)
    assert [r.to_row() for r in back] == [original.to_row()]


def test_a_crashed_write_leaves_a_part_file_that_recover_loads_minus_the_torn_line(
    tmp_path: Path,
) -> None:
    dead_pid = 2**22 + 17  # above Linux's default pid_max: never a running process
    crashed = SpillDirectory(tmp_path, pid=dead_pid)
    finished = crashed.write([record(1), record(2)])
    torn = finished.with_name(finished.name + ".part")
    finished.rename(torn)
    with torn.open("ab") as out:
        out.write(b'{"request_id": "r3", "timest')
    here = SpillDirectory(tmp_path)
    assert here.finished() == []
    assert here.orphaned() == [torn]
    stored: list[PredictionRecord] = []
    loaded = here.load_into(stored.extend, no_labels, include_orphans=True)
    assert (loaded.records, loaded.torn_lines) == (2, 1)
    assert ids(stored) == ["r1", "r2"]
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_fails_to_store_is_put_back(tmp_path: Path) -> None:
    spill = SpillDirectory(tmp_path)
    spill.write([record(1)])

    def refuse(_: Any) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        spill.load_into(refuse, no_labels)
    assert len(spill.finished()) == 1
    assert spill.pending_records() == 1
