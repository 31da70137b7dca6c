"""A private MLflow tracking server with a champion and a challenger registered.

The champion (LogisticRegression) is version 1 in stage Production, the challenger
(HistGradientBoostingClassifier) version 2 in stage Staging; both trained on the
same seeded `make_classification` data with 20 numeric features `f00`..`f19`, and
logged with `pyfunc_predict_fn="predict_proba"`, so every server answers one
(n, 2) probability row per input row. The isolation case's costly challengers, each
under a registered model of its own beside this champion, are in `heavy.py`.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.procs import Server, free_port, wait_http_ok

MODEL_NAME = "bench-classifier"
N_FEATURES = 20
COLUMNS = [f"f{i:02d}" for i in range(N_FEATURES)]
SEED = 20260101
# skops (MLflow's default format) must be told the tree type is trusted.
HIST_TREE_TYPE = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


@dataclass(frozen=True)
class Registered:
    tracking_uri: str
    model_name: str
    champion_version: str
    challenger_version: str
    champion: Any  # the fitted sklearn estimator: the reference for answer checks
    sample: pd.DataFrame  # rows the load and the checks draw from
    champion_uri: str = ""  # the champion's logged model, to register it under other names
    # The isolation case's registered models, by challenger kind (`heavy.py`).
    heavy: Mapping[str, Any] = field(default_factory=dict)


def start_tracking_server(workdir: Path) -> tuple[Server, str]:
    port = free_port()
    store = workdir / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    server = Server(
        "mlflow-tracking",
        argv,
        log_path=workdir / "mlflow-tracking.log",
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cwd=store,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", server, deadline_s=180)
    except BaseException:
        server.stop()
        raise
    return server, url


def training_data(n_samples: int = 4000) -> tuple[pd.DataFrame, np.ndarray]:
    """Seeded `make_classification` rows with the columns `f00`..`f19`, and their labels."""
    from sklearn.datasets import make_classification

    features, labels = make_classification(
        n_samples=n_samples, n_features=N_FEATURES, n_informative=12, random_state=SEED
    )
    return pd.DataFrame(features, columns=COLUMNS), labels


def pip_requirements() -> list[str]:
    """Pinned explicitly: left to infer them, MLflow spends 9-15 s per logged model."""
    import importlib.metadata as md

    names = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")
    return [f"{n}=={md.version(n)}" for n in names]


def log_classifier(
    estimator: Any, frame: pd.DataFrame, run_name: str, model_name: str, trusted: list[str]
) -> Any:
    """Log a fitted classifier answering predict_proba and register it; its ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run(run_name=run_name):
        return mlflow.sklearn.log_model(
            estimator,
            name="model",
            pyfunc_predict_fn="predict_proba",
            signature=infer_signature(frame.head(50), estimator.predict_proba(frame.head(50))),
            input_example=frame.head(3),
            pip_requirements=pip_requirements(),
            registered_model_name=model_name,
            skops_trusted_types=trusted or None,
        )


def train_and_register(tracking_uri: str) -> Registered:
    """Train both models, register them, set their stages. About 10-20 s here."""
    # The per-run "View run at ..." lines would drown the bench's own output.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    frame, labels = training_data()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("contender-bench")
    client = MlflowClient(tracking_uri)
    fitted: list[Any] = []
    versions: list[str] = []
    uris: list[str] = []
    for estimator, trusted in (
        (LogisticRegression(max_iter=1000), []),
        (HistGradientBoostingClassifier(max_iter=100, random_state=SEED), [HIST_TREE_TYPE]),
    ):
        estimator.fit(frame, labels)
        info = log_classifier(estimator, frame, type(estimator).__name__, MODEL_NAME, trusted)
        fitted.append(estimator)
        versions.append(str(info.registered_model_version))
        uris.append(info.model_uri)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]tage.*deprecated")
        client.transition_model_version_stage(MODEL_NAME, versions[0], "Production")
        client.transition_model_version_stage(MODEL_NAME, versions[1], "Staging")
    return Registered(
        tracking_uri=tracking_uri,
        model_name=MODEL_NAME,
        champion_version=versions[0],
        challenger_version=versions[1],
        champion=fitted[0],
        sample=frame.head(1000).reset_index(drop=True),
        champion_uri=uris[0],
    )


def reference_proba(registered: Registered, rows: pd.DataFrame) -> np.ndarray:
    proba: np.ndarray = registered.champion.predict_proba(rows[COLUMNS])
    return proba


def download_champion(registered: Registered, destination: Path) -> Path:
    import mlflow

    mlflow.set_tracking_uri(registered.tracking_uri)
    uri = f"models:/{registered.model_name}/{registered.champion_version}"
    path = mlflow.artifacts.download_artifacts(uri, dst_path=str(destination))
    return Path(path)
