"""Builders for analysis tests: logged rows in memory, records for a real store, and
simulated champion/challenger data with known truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contender.analysis.data import (
    ArmLog,
    BoolArray,
    FloatArray,
    LoggedRows,
    is_not_none,
    row_offsets_from_counts,
)
from contender.predictions.record import ArmOutcome, Feedback, JsonValue, PredictionRecord
from contender.predictions.store import SqlPredictionStore


def arm_log(
    scores: FloatArray,
    rows_per_request: int = 1,
    latency_ms: FloatArray | None = None,
    failed: BoolArray | Sequence[bool] | None = None,
    list_valued: bool = False,
    version: str = "1",
    skipped: Sequence[str | None] | None = None,
) -> ArmLog:
    """An arm that ran on every request except the `skipped` ones (a reason, else None)."""
    n_requests = len(scores) // rows_per_request
    reasons = np.full(n_requests, None, object) if skipped is None else np.asarray(skipped, object)
    ran = ~is_not_none(reasons)
    failed_arr = np.zeros(n_requests, bool) if failed is None else np.asarray(failed, bool)
    failed_arr = failed_arr & ran
    scores = scores.astype(np.float64).copy()
    scores[np.repeat(failed_arr | ~ran, rows_per_request)] = np.nan
    latency = np.full(n_requests, 10.0) if latency_ms is None else latency_ms.copy()
    latency[~ran] = np.nan
    return ArmLog(
        version=version,
        invoked=ran,
        failed=failed_arr,
        predicted=ran & ~failed_arr,
        skipped=reasons,
        latency_ms=latency,
        scores=scores,
        list_valued=list_valued,
    )


def logged_rows(
    champion: ArmLog,
    challenger: ArmLog,
    labels: FloatArray,
    rows_per_request: int = 1,
    challenger_served: Sequence[bool] | None = None,
) -> LoggedRows:
    n_requests = len(labels) // rows_per_request
    return LoggedRows(
        model="m",
        request_ids=np.asarray([f"r{i}" for i in range(n_requests)], dtype=object),
        challenger_served=(
            np.zeros(n_requests, bool)
            if challenger_served is None
            else np.asarray(challenger_served, bool)
        ),
        fallback=np.zeros(n_requests, bool),
        row_offsets=row_offsets_from_counts(np.full(n_requests, rows_per_request, np.int64)),
        labels=labels.astype(np.float64),
        champion=champion,
        challenger=challenger,
    )


@dataclass(frozen=True)
class Simulated:
    labels: FloatArray
    champion: FloatArray
    challenger: FloatArray


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1 / (1 + np.exp(-x)), dtype=np.float64)


def classifier_data(
    n: int,
    rng: np.random.Generator,
    champion_signal: float = 1.0,
    challenger_signal: float = 1.0,
    correlation: float = 0.5,
) -> Simulated:
    """Probabilities from latent scores `signal * y + noise`, the noises correlated."""
    labels = (rng.random(n) < 0.4).astype(np.float64)
    shared = rng.normal(size=n)
    noise_a = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * rng.normal(size=n)
    noise_b = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * rng.normal(size=n)
    centre = 0.5
    return Simulated(
        labels,
        _sigmoid(champion_signal * (labels - centre) * 2 + noise_a),
        _sigmoid(challenger_signal * (labels - centre) * 2 + noise_b),
    )


def classifier_rows(
    n: int,
    rng: np.random.Generator,
    champion_signal: float = 1.0,
    challenger_signal: float = 1.0,
    challenger_latency_factor: float = 1.0,
) -> LoggedRows:
    data = classifier_data(n, rng, champion_signal, challenger_signal)
    latency = rng.lognormal(np.log(10.0), 0.3, n)
    return logged_rows(
        arm_log(data.champion, latency_ms=latency, list_valued=True, version="1"),
        arm_log(
            data.challenger,
            latency_ms=latency * challenger_latency_factor * rng.lognormal(0.0, 0.05, n),
            list_valued=True,
            version="2",
        ),
        data.labels,
    )


def record(
    request_id: str,
    champion: JsonValue,
    challenger: JsonValue = None,
    *,
    timestamp: str = "2025-03-01T12:00:00.000000+00:00",
    model: str = "m",
    versions: tuple[str, str | None] = ("1", "2"),
    served_by: str = "champion",
    fallback: bool = False,
    challenger_error: str | None = None,
    champion_error: str | None = None,
    latency_ms: tuple[float, float] = (10.0, 12.0),
    n_inputs: int | None = None,
    champion_skipped: str | None = None,
    challenger_skipped: str | None = None,
) -> PredictionRecord:
    """A record as the service would log it; `challenger` None and no error: not invoked.

    A skipped arm keeps its version and logs nothing else (its `champion` / `challenger`
    predictions are ignored)."""
    rows = n_inputs if n_inputs is not None else len(champion or challenger or [0])
    invoked = challenger is not None or challenger_error is not None
    data: list[list[Any]] = [[float(i)] for i in range(rows)]
    return PredictionRecord(
        request_id=request_id,
        timestamp=timestamp,
        model_name=model,
        inputs={"columns": ["x"], "data": data},
        served_by=served_by,
        fallback=fallback,
        routing_draw=0.5,
        routing_key=None,
        champion=_outcome(
            versions[0],
            None if champion_error else champion,
            latency_ms[0],
            champion_error,
            champion_skipped,
            invoked=True,
        ),
        challenger=_outcome(
            versions[1], challenger, latency_ms[1], challenger_error, challenger_skipped, invoked
        ),
    )


def _outcome(
    version: str | None,
    predictions: JsonValue,
    latency_ms: float,
    error: str | None,
    skipped: str | None,
    invoked: bool,
) -> ArmOutcome:
    if skipped is not None:
        return ArmOutcome(version, skipped=skipped)
    if not invoked:
        return ArmOutcome()
    return ArmOutcome(version, predictions, latency_ms, error)


def sqlite_store(path: Path, records: list[PredictionRecord], feedback: list[Feedback]) -> str:
    """A real SQLite prediction log holding `records` and `feedback`; its URL."""
    url = f"sqlite:///{path}"
    store = SqlPredictionStore(url)
    store.append_many(records)
    if feedback:
        store.add_feedback(feedback)
    store.close()
    return url
