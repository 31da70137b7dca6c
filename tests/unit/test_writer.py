"""The log writer: batches, never drops on a store outage, drains on close."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from contender.metrics import ServiceMetrics
from contender.predictions.record import ArmOutcome, PredictionRecord
from contender.predictions.writer import LogWriter
from tests.fakes import ListStore


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
