"""The composition root: every long-lived object is built here, from Settings, once."""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from contender import protocol
from contender.clock import Clock, SystemClock
from contender.metrics import ServiceMetrics
from contender.native_threads import one_native_thread
from contender.predictions.live import LiveSeries
from contender.predictions.record import PredictionRecord
from contender.predictions.spill import SpillDirectory
from contender.predictions.store import PredictionStore, SqlPredictionStore
from contender.predictions.writer import LogWriter
from contender.registry.client import MlflowRegistryClient, RegistryClient
from contender.registry.loader import MlflowModelLoader, ModelLoader
from contender.registry.shadow_process import PreloadingLoader, ShadowProcess
from contender.registry.watcher import RegistryWatcher
from contender.routing.breaker import CircuitBreaker, reported
from contender.routing.policy import RoutingPolicy
from contender.routing.router import ChampionChallengerRouter, RouterConfig
from contender.routing.runner import BatchingConfig, InProcess, ModelBackend, ModelRunner
from contender.routing.table import Routing, RoutingTable, TableHolder
from contender.settings import Settings

# Model threads: enough to overlap I/O-light sklearn predicts without thrashing 2 cores.
_MODEL_THREADS = 4
# Rows merged into one shadow call: no client waits for shadow work, so its batches can be
# far bigger than the answers', and a model whose cost is mostly per call keeps up
# with a small share of a core (a GIL-bound pyfunc at 100-row requests: 41 % of requests
# scored with 256-row batches).
_SHADOW_MAX_BATCH_ROWS = 4096
# How long a shadow batch may gather company under load (never at light load: an idle
# batcher runs a request at once). A model that costs mostly per call (3 ms of GIL-bound
# Python, say) then runs ten times a second, not a thousand, which leaves the cores to
# the answers; a quarter of the lag bound at most, so gathering never causes a skip.
_SHADOW_GATHER_MS = 100.0
# Shadow threads only wait on the shadow process: one per model it may be scoring.
_SHADOW_THREADS = 2
# A shadow call still running after this long is a hung model: its process is replaced.
_SHADOW_HANG_S = 600.0


@dataclass(frozen=True)
class Services:
    """Everything the HTTP layer needs, handed to `create_app`."""

    settings: Settings
    holder: TableHolder
    router: ChampionChallengerRouter
    watcher: RegistryWatcher
    writer: LogWriter
    store: PredictionStore
    metrics: ServiceMetrics
    new_request_id: Callable[[], str]
    redact: protocol.Redaction
    live: LiveSeries
    """The last minutes of traffic in memory, for the dashboard."""
    clock: Clock = field(default_factory=SystemClock)
    executors: tuple[ThreadPoolExecutor, ...] = field(default=())
    shadow_process: ShadowProcess | None = None

    def shutdown_executors(self) -> None:
        for executor in self.executors:
            executor.shutdown(wait=False, cancel_futures=True)
        if self.shadow_process is not None:
            self.shadow_process.close()


def tune_process() -> None:
    """Process-wide settings for serving, applied once by the process that serves.

    - One OpenMP/BLAS thread per model call (`contender.native_threads`); the model
      thread pools apply it to each of their threads as well.
    - A 0.5 ms GIL switch interval (Python's default is 5 ms): while the other model's
      batch runs in a worker thread, the event loop gets the interpreter back ten times
      sooner. Measured at 64 connections: p99 393 ms -> 82 ms, throughput up by a third.
    """
    one_native_thread()
    sys.setswitchinterval(0.0005)


def _shadow_batching(batching: BatchingConfig, max_lag_ms: float) -> BatchingConfig:
    """Bigger, gathered batches for shadow work, unless the user turned batching off (1)."""
    if batching.max_batch_size == 1:
        return batching
    return BatchingConfig(
        max_batch_size=max(batching.max_batch_size, _SHADOW_MAX_BATCH_ROWS),
        max_batch_wait_ms=max(batching.max_batch_wait_ms, min(_SHADOW_GATHER_MS, max_lag_ms / 4)),
    )


RecordSink = Callable[[PredictionRecord], None]


def _tee(first: RecordSink, second: RecordSink) -> RecordSink:
    """Each record to both sinks: on the event loop, so two plain calls and nothing else."""

    def both(record: PredictionRecord) -> None:
        first(record)
        second(record)

    return both


def _model_pool(threads: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix=name, initializer=one_native_thread)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    registry_client: RegistryClient | None = None,
    loader: ModelLoader | None = None,
    store: PredictionStore | None = None,
    new_request_id: Callable[[], str] | None = None,
) -> Services:
    """Build the service; tests pass fakes for any of the keyword arguments.

    With MLflow's loader, shadow work runs in the low-priority shadow process; with a
    loader a test passes (whose models may live only in this process), in threads here.
    """
    clock = clock or SystemClock()
    metrics = ServiceMetrics(CollectorRegistry(), multiprocess_dir=settings.metrics_dir)
    holder = TableHolder(RoutingTable(None, None, settings.challenger_weight, settings.testing))
    store = store or SqlPredictionStore(settings.log_store)
    writer = LogWriter(
        store,
        metrics,
        spill=SpillDirectory(settings.spill_dir),
        buffer_records=settings.log_buffer_records,
    )
    live = LiveSeries(clock)
    shadow_process: ShadowProcess | None = None
    shadow_backend: ModelBackend = InProcess()
    if loader is None:
        shadow_process = ShadowProcess(call_limit_s=_SHADOW_HANG_S)
        shadow_backend = shadow_process
        loader = PreloadingLoader(MlflowModelLoader(settings.tracking_uri, clock), shadow_process)
    champion_pool = _model_pool(_MODEL_THREADS, "champion")
    challenger_pool = _model_pool(_MODEL_THREADS, "challenger")
    shadow_pool = ThreadPoolExecutor(_SHADOW_THREADS, thread_name_prefix="shadow")
    batching = BatchingConfig(settings.max_batch_size, settings.max_batch_wait_ms)
    breaker = CircuitBreaker(
        window=settings.breaker_window,
        error_rate=settings.breaker_error_rate,
        cooldown_s=settings.breaker_cooldown_s,
        clock=clock,
        on_transition=reported(metrics),
    )
    router = ChampionChallengerRouter(
        holder,
        RoutingPolicy(rng or random.Random()),
        config=RouterConfig(settings.model, settings.challenger_timeout_ms / 1000),
        champion_runner=ModelRunner(champion_pool, clock, batching),
        challenger_runner=ModelRunner(challenger_pool, clock, batching),
        shadow_runner=ModelRunner(
            shadow_pool,
            clock,
            _shadow_batching(batching, settings.shadow_max_lag_ms),
            backend=shadow_backend,
            max_lag_ms=settings.shadow_max_lag_ms,
        ),
        breaker=breaker,
        clock=clock,
        rows_of=protocol.rows_of,
        record_sink=_tee(writer.submit, live.add),
        metrics=metrics,
    )
    watcher = RegistryWatcher(
        registry_client or MlflowRegistryClient(settings.tracking_uri),
        loader,
        holder,
        model_name=settings.model,
        selector=settings.selector,
        clock=clock,
        metrics=metrics,
        flags_routing=Routing(settings.challenger_weight, settings.testing),
    )
    return Services(
        settings=settings,
        holder=holder,
        router=router,
        watcher=watcher,
        writer=writer,
        store=store,
        metrics=metrics,
        new_request_id=new_request_id or (lambda: uuid.uuid4().hex),
        redact=protocol.Redaction.of(settings.redact, settings.redact_key),
        live=live,
        clock=clock,
        executors=(champion_pool, challenger_pool, shadow_pool),
        shadow_process=shadow_process,
    )
