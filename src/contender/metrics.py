"""Prometheus metrics of one service, on a registry the composition root owns.

With `--workers N`, prometheus-client's multiprocess mode makes one scrape describe the
whole service: `contender serve` points `PROMETHEUS_MULTIPROC_DIR` at a directory it
makes (and removes on exit), every worker keeps its values in memory-mapped files there,
and `/metrics` in any worker sums them all. A worker that dies leaves its counter files
behind, so a total never goes down when uvicorn replaces it; its gauges ("live" modes)
are forgotten at the next scrape.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from contender.pids import pid_alive

_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry, *, multiprocess_dir: str | None = None) -> None:
        """`multiprocess_dir`: prometheus-client's `PROMETHEUS_MULTIPROC_DIR`, when this
        process is one of several (`--workers N`) whose metrics it exposes together."""
        self.registry = registry
        self._multiprocess_dir = multiprocess_dir
        self.requests = Counter(
            "contender_requests",
            "Requests answered, by the arm that served them and its version.",
            ["arm", "version"],
            registry=registry,
        )
        self.model_latency = Histogram(
            "contender_model_latency_seconds",
            "Time from handing a request to a model until its predictions are ready.",
            ["arm", "version"],
            buckets=_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.model_errors = Counter(
            "contender_model_errors",
            "Predictions that failed (exception, timeout or wrong output shape).",
            ["arm"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "contender_fallbacks",
            "Requests drawn for the challenger but answered by the champion.",
            registry=registry,
        )
        self.shadow_skipped = Counter(
            "contender_shadow_skipped",
            "Predictions not run: shadow work past the lag bound (overload), or a challenger "
            "held off by its open circuit breaker (breaker_open).",
            ["arm", "reason"],
            registry=registry,
        )
        self.breaker_open = Gauge(
            "contender_breaker_open",
            "1 while the challenger's circuit breaker is open, else 0.",
            registry=registry,
            multiprocess_mode="livemax",  # open in any worker
        )
        self.breaker_transitions = Counter(
            "contender_breaker_transitions",
            "Circuit breaker state changes, by the state entered.",
            ["to"],
            registry=registry,
        )
        self.reloads = Counter(
            "contender_reloads",
            "Model swaps attempted by the registry poller, by slot and outcome.",
            ["slot", "outcome"],
            registry=registry,
        )
        self.champion_loaded = Gauge(
            "contender_champion_loaded",
            "1 while a champion is loaded and serving, else 0 (/ready answers 503).",
            registry=registry,
            multiprocess_mode="livemin",  # missing in any worker
        )
        self.registry_up = Gauge(
            "contender_registry_up",
            "1 when the last registry poll got an answer, 0 when it failed.",
            registry=registry,
            multiprocess_mode="livemin",  # unreachable from any worker
        )
        self.log_queue_depth = Gauge(
            "contender_log_queue_depth",
            "Prediction records waiting to be written to the store.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.log_write_failures = Counter(
            "contender_log_write_failures",
            "Batches of prediction records the store refused (they are retried).",
            registry=registry,
        )
        self.log_store_healthy = Gauge(
            "contender_log_store_healthy",
            "1 while the prediction log store takes records, 0 while it refuses them.",
            registry=registry,
            multiprocess_mode="livemin",  # unhealthy in any worker
        )
        self.log_spilled_records = Counter(
            "contender_log_spilled_records",
            "Prediction records written to the spill directory: past the buffer bound while "
            "the store was down, or at shutdown.",
            registry=registry,
        )
        self.log_recovered_records = Counter(
            "contender_log_recovered_records",
            "Spilled prediction records loaded back into the store.",
            registry=registry,
        )
        self.log_records_written = Counter(
            "contender_log_records_written",
            "Prediction records written to the store.",
            registry=registry,
        )

    def exposition(self) -> bytes:
        """The text `/metrics` answers: this process's metrics, or every worker's."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(self._multiprocess_dir)
        service = CollectorRegistry()
        MultiProcessCollector(service, path=self._multiprocess_dir)
        return generate_latest(service)


def forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (uvicorn gives no hook for it)."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        if not pid_alive(pid):
            with contextlib.suppress(FileNotFoundError):  # another worker got there first
                mark_process_dead(pid, directory)
