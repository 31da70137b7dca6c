"""Prometheus metrics of one service, on a registry the composition root owns."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.log_queue_depth = Gauge(
            "contender_log_queue_depth",
            "Prediction records waiting to be written to the store.",
            registry=registry,
        )
        self.log_write_failures = Counter(
            "contender_log_write_failures",
            "Batches of prediction records the store refused (they are retried).",
            registry=registry,
        )
        self.log_records_written = Counter(
            "contender_log_records_written",
            "Prediction records written to the store.",
            registry=registry,
        )
