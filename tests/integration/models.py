"""Real scikit-learn models, logged and registered through the MLflow client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

FEATURES = ["f0", "f1", "f2", "f3"]
# Explicit requirements: inferring them re-imports the model in a subprocess (9-15 s).
SKLEARN_REQUIREMENTS = ["scikit-learn", "numpy", "pandas"]
PYFUNC_REQUIREMENTS = ["mlflow==3.17.2", "pandas"]
MODEL_CODE = Path(__file__).parent / "model_code"


@dataclass(frozen=True)
class TrainedModels:
    champion: Any
    challenger: Any
    champion_uri: str
    challenger_uri: str
    rows: pd.DataFrame

    def expected(self, estimator: Any, frame: pd.DataFrame) -> list[list[float]]:
        result: list[list[float]] = estimator.predict_proba(frame).tolist()
        return result


def make_data(seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    features, labels = make_classification(
        n_samples=400, n_features=len(FEATURES), n_informative=3, n_redundant=0, random_state=seed
    )
    return pd.DataFrame(features, columns=FEATURES), labels


def log_sklearn(
    estimator: Any, frame: pd.DataFrame, name: str, experiment_id: str | None = None
) -> str:
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(
            estimator,
            name=name,
            signature=infer_signature(frame, estimator.predict_proba(frame)),
            input_example=frame.head(3),
            pyfunc_predict_fn="predict_proba",
            pip_requirements=SKLEARN_REQUIREMENTS,
            # skops refuses tree ensembles unless their node storage is trusted explicitly.
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    uri: str = info.model_uri
    return uri


def log_code_model(
    code_file: str, frame: pd.DataFrame, requirements: list[str] = PYFUNC_REQUIREMENTS
) -> str:
    """A pyfunc from `model_code/`, logged without an input example on purpose: contender
    warms a model up on its example, and these models must get past loading to misbehave."""
    with mlflow.start_run(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*An input example was not provided", UserWarning)
        info = mlflow.pyfunc.log_model(
            name=code_file.removesuffix(".py"),
            python_model=str(MODEL_CODE / code_file),
            signature=infer_signature(frame, np.zeros((len(frame), 2))),
            pip_requirements=requirements,
        )
    uri: str = info.model_uri
    return uri


def train_and_log(experiment: str) -> TrainedModels:
    mlflow.set_experiment(experiment)
    frame, labels = make_data()
    champion = LogisticRegression(max_iter=500).fit(frame, labels)
    challenger = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(frame, labels)
    return TrainedModels(
        champion=champion,
        challenger=challenger,
        champion_uri=log_sklearn(champion, frame, "champion"),
        challenger_uri=log_sklearn(challenger, frame, "challenger"),
        rows=frame.head(50).reset_index(drop=True),
    )


def register(uri: str, name: str) -> str:
    version: str = mlflow.register_model(uri, name).version
    return str(version)


def set_stage(client: MlflowClient, name: str, version: str, stage: str) -> None:
    client.transition_model_version_stage(
        name, version, stage, archive_existing_versions=stage == "Production"
    )


def register_pair(
    client: MlflowClient, name: str, champion_uri: str, challenger_uri: str, by_alias: bool
) -> tuple[str, str]:
    champion_version = register(champion_uri, name)
    challenger_version = register(challenger_uri, name)
    if by_alias:
        client.set_registered_model_alias(name, "champion", champion_version)
        client.set_registered_model_alias(name, "challenger", challenger_version)
    else:
        set_stage(client, name, champion_version, "Production")
        set_stage(client, name, challenger_version, "Staging")
    return champion_version, challenger_version


@dataclass(frozen=True)
class LocalRegistry:
    uri: str
    client: MlflowClient
    model_uri: str


@contextmanager
def local_sqlite_registry(root: Path, seed: int) -> Iterator[LocalRegistry]:
    """A `sqlite:///` tracking store under `root` holding one logged model; MLflow's fluent
    API (`register`, `register_pair`) points at it inside the block only."""
    uri = f"sqlite:///{root}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = MlflowClient(uri)
        experiment = client.create_experiment("local", artifact_location=str(root / "artifacts"))
        frame, labels = make_data(seed=seed)
        estimator = LogisticRegression(max_iter=300).fit(frame, labels)
        model_uri = log_sklearn(estimator, frame, "model", experiment_id=experiment)
        yield LocalRegistry(uri, client, model_uri)
    finally:
        # set_tracking_uri also sets MLFLOW_TRACKING_URI, which later subprocesses inherit.
        mlflow.set_tracking_uri(previous)
