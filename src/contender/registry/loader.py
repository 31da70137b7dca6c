"""Download, load and warm up one model version, off the request path.

A version counts as loaded only after one prediction on its input example (when it has
one) succeeded, so a model that loads but cannot predict is never swapped in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contender.clock import Clock
from contender.registry.client import ModelRef


class Model(Protocol):
    """What the router needs of a model: a blocking predict on one parsed input."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model version ready to serve: the pyfunc, where it came from, and when."""

    ref: ModelRef
    model: Model
    loaded_at: datetime
    input_schema: Any = None
    """The signature's input schema (an `mlflow.types.Schema`), or None."""
    load_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        return {
            "version": self.ref.version,
            "run_id": self.ref.run_id or "",
            "source": self.ref.source,
            "loaded_at": self.loaded_at.isoformat(),
        }


ModelLoader = Callable[[ModelRef], LoadedModel]
"""Blocking: downloads, loads and warms a version, raising if any step fails."""


class MlflowModelLoader:
    """Loads through `mlflow.pyfunc.load_model`, so any pyfunc flavour serves."""

    def __init__(self, tracking_uri: str | None, clock: Clock) -> None:
        if tracking_uri is not None:
            import mlflow

            # Parts of MLflow's artifact download (models:/ URIs resolving to logged models)
            # consult the process-wide tracking URI whatever is passed in; a service has one.
            mlflow.set_tracking_uri(tracking_uri)
        self._tracking_uri = tracking_uri
        self._clock = clock
        self.downloads = 0
        """Artifact downloads so far: promotion reuse shows as this not growing."""

    def __call__(self, ref: ModelRef) -> LoadedModel:
        import mlflow.artifacts
        import mlflow.pyfunc

        started = self._clock.monotonic()
        # The registry lives with the tracking server unless MLflow's own variables say else.
        local_path = mlflow.artifacts.download_artifacts(
            artifact_uri=ref.uri, tracking_uri=self._tracking_uri, registry_uri=self._tracking_uri
        )
        self.downloads += 1
        pyfunc = mlflow.pyfunc.load_model(local_path)
        example = pyfunc.metadata.load_input_example(local_path)
        if example is not None:
            pyfunc.predict(example)
        return LoadedModel(
            ref=ref,
            model=pyfunc,
            loaded_at=self._clock.now(),
            input_schema=pyfunc.metadata.get_input_schema(),
            load_seconds=self._clock.monotonic() - started,
        )
