"""The isolation case's costly challengers, each in a registered model of its own.

| kind  | registered model | version 2 (Staging), the challenger                          |
|-------|------------------|--------------------------------------------------------------|
| `gil` | `bench-gil`      | pyfunc from code (`gil_challenger.py`): a pure-Python loop    |
|       |                  | holding the GIL about 3 ms per call, then a logistic per row |
| `hgb` | `bench-hgb`      | HistGradientBoostingClassifier, 1500 trees of 63 leaves:     |
|       |                  | a native predict_proba of tens of ms per one-row call        |

Version 1 (Production) of both is the bench's LogisticRegression champion, registered
again under the new name, so the answer checks hold and a `--no-testing` server of the
same registered model is the baseline the shadow server is compared with. Both
challengers answer (n, 2) probability rows on the columns `f00`..`f19`. The count of
loop turns is calibrated by the model's own file in a fresh interpreter: the fastest
of a few timed runs, scaled to `GIL_TARGET_MS`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.models import (
    COLUMNS,
    HIST_TREE_TYPE,
    SEED,
    Registered,
    log_classifier,
    pip_requirements,
    training_data,
)

HEAVY_KINDS = ("gil", "hgb")
MODEL_NAMES = {"gil": "bench-gil", "hgb": "bench-hgb"}
GIL_MODEL_FILE = Path(__file__).resolve().parent / "gil_challenger.py"
GIL_TARGET_MS = 3.0
HGB_PARAMS = {"max_iter": 1500, "max_leaf_nodes": 63, "early_stopping": False}
# The model's predict cost matters, not its quality: a modest training set keeps the
# fit to seconds on two cores.
HGB_TRAINING_ROWS = 5000


@dataclass(frozen=True)
class HeavyModel:
    kind: str
    model_name: str
    champion_version: str
    challenger_version: str
    description: str  # what the challenger costs, for the results' meta


def register_heavy(registered: Registered, kinds: Iterable[str]) -> Registered:
    """Register the champion and a costly challenger under each kind's own model name."""
    import mlflow

    mlflow.set_tracking_uri(registered.tracking_uri)
    heavy = dict(registered.heavy)
    for kind in kinds:
        champion_version = str(
            mlflow.register_model(registered.champion_uri, MODEL_NAMES[kind]).version
        )
        log = _log_gil if kind == "gil" else _log_hgb
        challenger_version, description = log(registered)
        _set_stages(
            registered.tracking_uri, MODEL_NAMES[kind], champion_version, challenger_version
        )
        heavy[kind] = HeavyModel(
            kind, MODEL_NAMES[kind], champion_version, challenger_version, description
        )
    return replace(registered, heavy=heavy)


def calibrate_spin(target_ms: float = GIL_TARGET_MS) -> tuple[int, float]:
    """Loop turns that take about `target_ms` here, and the ns one turn costs.

    Timed by the model's own file in a fresh interpreter: in this process, MLflow's
    background threads would take the GIL now and then and make every turn look dearer.
    """
    done = subprocess.run(
        [sys.executable, str(GIL_MODEL_FILE)], capture_output=True, text=True, check=True
    )
    ns_per_turn = float(done.stdout.strip().splitlines()[-1])
    return max(1, round(target_ms * 1e6 / ns_per_turn)), ns_per_turn


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _log_gil(registered: Registered) -> tuple[str, str]:
    import mlflow
    from mlflow.models import infer_signature

    iterations, ns_per_turn = calibrate_spin()
    champion = registered.champion
    config = {
        "spin_iterations": iterations,
        "columns": COLUMNS,
        # A fixed linear combination: the champion's own, so the answers are plausible.
        "weights": champion.coef_[0].tolist(),
        "intercept": float(champion.intercept_[0]),
    }
    frame = registered.sample
    with mlflow.start_run(run_name="gil-holding-challenger"), warnings.catch_warnings():
        # predict has no type hints on purpose (the signature is given), and MLflow says so.
        warnings.filterwarnings("ignore", message=".*type hints? .*predict")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(GIL_MODEL_FILE),
            model_config=config,
            signature=infer_signature(frame.head(50), champion.predict_proba(frame.head(50))),
            input_example=frame.head(3),
            pip_requirements=pip_requirements(),
            registered_model_name=MODEL_NAMES["gil"],
        )
    description = (
        f"pyfunc from code, {iterations:,} pure-Python loop turns per call "
        f"(about {iterations * ns_per_turn / 1e6:.1f} ms here, GIL held), logistic per row"
    )
    return str(info.registered_model_version), description


def _log_hgb(registered: Registered) -> tuple[str, str]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame, labels = training_data(HGB_TRAINING_ROWS)
    estimator = HistGradientBoostingClassifier(**HGB_PARAMS, random_state=SEED)
    estimator.fit(frame, labels)
    one_row_ms = _one_row_ms(estimator, frame)
    info = log_classifier(
        estimator, frame, "hgb-1500-challenger", MODEL_NAMES["hgb"], [HIST_TREE_TYPE]
    )
    params = ", ".join(f"{k}={v}" for k, v in HGB_PARAMS.items())
    description = (
        f"HistGradientBoostingClassifier({params}), trained on {HGB_TRAINING_ROWS:,} rows; "
        f"one-row predict_proba about {one_row_ms:.1f} ms here (1 native thread)"
    )
    return str(info.registered_model_version), description


def _one_row_ms(estimator: Any, frame: Any) -> float:
    """The median one-row predict_proba, at one native thread as contender runs it."""
    import statistics

    from threadpoolctl import threadpool_limits

    row = frame.head(1)
    with threadpool_limits(1):
        estimator.predict_proba(row)
        times = [_timed(lambda: estimator.predict_proba(row)) for _ in range(15)]
    return statistics.median(times) * 1000


def _set_stages(tracking_uri: str, name: str, champion: str, challenger: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]tage.*deprecated")
        client.transition_model_version_stage(name, champion, "Production")
        client.transition_model_version_stage(name, challenger, "Staging")
