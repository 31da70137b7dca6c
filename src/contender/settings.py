"""Service settings: the only place that reads the environment.

Field names are the `contender serve` flags (SPEC section 5), so every flag is also
`CONTENDER_<FLAG>` in the environment. MLflow's own variables (`MLFLOW_TRACKING_URI`,
credentials) are left to MLflow to read.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Selector(StrEnum):
    """How the registry names the two slots."""

    STAGES = "stages"  # champion = latest `Production`, challenger = latest `Staging`
    ALIASES = "aliases"  # champion = `@champion`, challenger = `@challenger`


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTENDER_", frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    """Name of the registered model in the MLflow Model Registry."""

    tracking_uri: str | None = None
    """MLflow tracking/registry URI (`http(s)://...` or `sqlite:///...`); unset: MLflow's own
    `MLFLOW_TRACKING_URI`."""

    selector: Selector = Selector.STAGES
    """Whether champion and challenger are found by stage or by alias."""

    challenger_weight: float = Field(default=0.10, ge=0.0, le=1.0)
    """Share of requests answered by the challenger while testing; 0 is shadow mode."""

    testing: bool = True
    """Score the challenger too. Off: the challenger is never invoked."""

    poll_interval: float = Field(default=30.0, gt=0.0)
    """Seconds between two registry polls."""

    log_store: str = "sqlite:///contender.db"
    """Prediction log store URL: `sqlite:///path.db` or `postgresql://...`."""

    host: str = "127.0.0.1"
    """Address to listen on."""

    port: int = Field(default=8080, ge=0, le=65535)
    """Port to listen on (0: any free port)."""

    workers: int = Field(default=1, ge=1)
    """Server processes, each with its own models, poller and log writer."""

    challenger_timeout_ms: float = Field(default=1000.0, gt=0.0)
    """How long the challenger may take before its answer is given up (milliseconds)."""

    shadow_max_lag_ms: float = Field(default=1000.0, gt=0.0)
    """Shadow work (the prediction of the arm that does not answer) that cannot start
    within this many milliseconds of its request's answer is skipped as `"overload"`."""

    breaker_window: int = Field(default=100, ge=1)
    """Challenger predictions the circuit breaker judges the error rate over."""

    breaker_error_rate: float = Field(default=0.2, ge=0.0, le=1.0)
    """Failed share of the window above which the breaker opens."""

    breaker_cooldown_s: float = Field(default=30.0, gt=0.0)
    """Seconds of probes (at most one a second) under the threshold before it closes."""

    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    """Largest request body accepted; larger ones get 413."""

    max_rows: int = Field(default=10_000, gt=0)
    """Most rows in one request; more get 413."""

    redact_key: str | None = Field(default=None, repr=False)
    """The HMAC key redacted columns are hashed with (`CONTENDER_REDACT_KEY`); required
    with `redact`. Defined before it so that `redact`'s check can see it."""

    redact: Annotated[tuple[str, ...], NoDecode] = ()
    """Input columns stored in the prediction log only as keyed hashes
    (`"hmac-sha256:<hex>"`), never in clear."""

    log_buffer_records: int = Field(default=50_000, ge=1)
    """Records held in memory while the store is away; past them, records spill to disk."""

    spill_dir: str = "contender-spill"
    """Where records the store could not take are written as JSONL, until it takes them."""

    max_batch_size: int = Field(default=256, ge=1)
    """Most rows merged into one model call under load; 1 turns micro-batching off."""

    max_batch_wait_ms: float = Field(default=0.0, ge=0.0)
    """Extra wait for more rows when a batch forms under load (never when idle)."""

    admin_token: str | None = None
    """Bearer token for the `/admin` endpoints; unset: they answer 403."""

    metrics_dir: str | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    """prometheus-client's multiprocess directory (its own variable, not a flag):
    `contender serve --workers N` makes one so a scrape of any worker sums them all."""

    @field_validator("redact", mode="before")
    @classmethod
    def _split_columns(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(column.strip() for column in value.split(",") if column.strip())
        return value

    @field_validator("redact")
    @classmethod
    def _redact_needs_a_key(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # The service refuses to start rather than store a hash anyone could reverse by
        # hashing likely values (SPEC section 4).
        if value and not info.data.get("redact_key"):
            raise PydanticCustomError(
                "redact_key_missing",
                "needs CONTENDER_REDACT_KEY in the environment: redacted columns are stored "
                "as HMAC-SHA256 hashes keyed by it (use a long random secret, the same for "
                "every replica)",
            )
        return value
