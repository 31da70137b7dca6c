"""Two real scikit-learn classifiers, logged and registered in the demo's MLflow store.

The data is `make_classification` with a fixed seed, so every run tells the same story:
the champion is a random forest that sees four of the twelve features, the challenger
a gradient-boosted ensemble that sees all of them and is clearly better.

The challenger is also the cheaper of the two per row (about 1 ms against 20), on
purpose: the report refuses a challenger whose p99 latency exceeds 1.5 times the
champion's, and the p99 of a few hundred requests is noisy (a garbage-collection pause
or a busy neighbour moves it). Two models of equal cost crossed 1.5 by chance several
times in a few dozen runs on a 2-core machine; with this pair the ratio stays near 0.4.

This module is the demo's own MLflow client (training and registration); the service
reaches MLflow only through `contender.registry`.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contender.demo.workspace import Workspace

MODEL_NAME = "churn-classifier"
EXPERIMENT = "contender-demo"
FEATURES = [f"f{index:02d}" for index in range(12)]
CHAMPION_FEATURES = ["f03", "f07", "f09", "f11"]
SEED = 42
N_TRAIN = 2000
N_HOLDOUT = 5000
# Explicit requirements: inferring them re-imports the model in a subprocess (9-15 s).
_REQUIREMENTS = ["scikit-learn", "numpy", "pandas"]


@dataclass(frozen=True)
class DemoData:
    train: pd.DataFrame
    train_labels: np.ndarray
    holdout: pd.DataFrame
    """Rows the models never saw: the demo's traffic (cycled through past its end)."""
    holdout_labels: np.ndarray


@dataclass(frozen=True)
class Candidate:
    role: str
    description: str
    estimator: Any
    holdout_auc: float


@dataclass(frozen=True)
class RegisteredPair:
    name: str
    champion_version: str
    challenger_version: str


def make_data() -> DemoData:
    """A seeded binary problem: 6 informative features, 2 redundant, 4 noise, 3 % flipped
    labels. The same rows every run, whatever the number of requests."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    features, labels = make_classification(
        n_samples=N_TRAIN + N_HOLDOUT,
        n_features=len(FEATURES),
        n_informative=6,
        n_redundant=2,
        class_sep=0.8,
        flip_y=0.03,
        random_state=SEED,
    )
    frame = pd.DataFrame(features, columns=FEATURES)
    train, holdout, train_labels, holdout_labels = train_test_split(
        frame, labels, test_size=N_HOLDOUT, random_state=SEED, stratify=labels
    )
    return DemoData(
        train=train.reset_index(drop=True),
        train_labels=np.asarray(train_labels),
        holdout=holdout.reset_index(drop=True),
        holdout_labels=np.asarray(holdout_labels),
    )


def _fit(role: str, description: str, estimator: Any, data: DemoData) -> Candidate:
    from sklearn.metrics import roc_auc_score

    estimator.fit(data.train, data.train_labels)
    scores = estimator.predict_proba(data.holdout)[:, 1]
    return Candidate(
        role, description, estimator, float(roc_auc_score(data.holdout_labels, scores))
    )


def train(data: DemoData) -> tuple[Candidate, Candidate]:
    """(champion, challenger), each evaluated on the held-out rows."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.pipeline import Pipeline

    # The champion takes the full input, as the service sends it, and keeps four columns.
    select = ColumnTransformer([("keep", "passthrough", CHAMPION_FEATURES)])
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=SEED)
    champion = Pipeline([("select", select), ("model", forest)])
    challenger = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    return (
        _fit("champion", f"RandomForest, {len(CHAMPION_FEATURES)} features", champion, data),
        _fit("challenger", f"GradientBoosting, {len(FEATURES)} features", challenger, data),
    )


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """The warnings MLflow is known to emit (pyproject's filterwarnings list), silenced
    around the demo's MLflow calls so they do not interrupt the narrative."""
    with warnings.catch_warnings():
        # SPEC keeps registry stages as the default selector; MLflow deprecates them.
        warnings.filterwarnings("ignore", ".*[Ss]tage.*deprecated", FutureWarning)
        warnings.filterwarnings("ignore", ".*[Ss]tage.*deprecated", DeprecationWarning)
        # MLflow 3.17 compares a pandas Index with a range when saving an input example.
        warnings.filterwarnings("ignore", "Operation with range is deprecated")
        warnings.filterwarnings("ignore", ".*Any type hint is inferred as AnyType", UserWarning)
        warnings.filterwarnings("ignore", "The ``noload`` loader strategy is deprecated")
        yield


def _quiet_loggers() -> None:
    # After `import mlflow`, which sets its own logger to INFO. The demo's process only.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _log(mlflow: Any, candidate: Candidate, data: DemoData) -> str:
    from mlflow.models import infer_signature

    example = data.train.head(5)
    with mlflow.start_run(run_name=candidate.role):
        mlflow.log_params({"role": candidate.role, "description": candidate.description})
        mlflow.log_metric("holdout_auc", candidate.holdout_auc)
        info = mlflow.sklearn.log_model(
            candidate.estimator,
            name=candidate.role,
            signature=infer_signature(example, candidate.estimator.predict_proba(example)),
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            pip_requirements=_REQUIREMENTS,
            # skops refuses tree ensembles unless their node storage is trusted explicitly.
            skops_trusted_types=["sklearn.tree._tree.Tree"],
        )
    uri: str = info.model_uri
    return uri


def _client(workspace: Workspace) -> Any:
    import mlflow
    from mlflow import MlflowClient

    _quiet_loggers()
    # Both set: a user's MLFLOW_REGISTRY_URI would otherwise take the registrations.
    mlflow.set_tracking_uri(workspace.tracking_uri)
    mlflow.set_registry_uri(workspace.tracking_uri)
    return MlflowClient(workspace.tracking_uri, registry_uri=workspace.tracking_uri)


def register(
    workspace: Workspace, data: DemoData, champion: Candidate, challenger: Candidate
) -> RegisteredPair:
    """Log both models and register them: the champion in `Production`, the challenger
    without a stage (not live yet: `stage_challenger` moves it to `Staging` later)."""
    with _quiet_mlflow():
        import mlflow

        client = _client(workspace)
        experiment_id = client.create_experiment(
            EXPERIMENT, artifact_location=workspace.artifacts.resolve().as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment_id)
        versions = []
        for candidate in (champion, challenger):
            uri = _log(mlflow, candidate, data)
            # `register_model` prints its progress to stderr; the story says it better.
            with redirect_stderr(io.StringIO()):
                versions.append(str(mlflow.register_model(uri, MODEL_NAME).version))
        client.transition_model_version_stage(MODEL_NAME, versions[0], "Production")
    return RegisteredPair(MODEL_NAME, versions[0], versions[1])


def stage_challenger(workspace: Workspace, pair: RegisteredPair) -> None:
    """The registry change a user makes to put the candidate live: `Staging`."""
    with _quiet_mlflow():
        _client(workspace).transition_model_version_stage(
            pair.name, pair.challenger_version, "Staging"
        )
