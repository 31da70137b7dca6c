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
from contender.signature import InputSpec


class Model(Protocol):
    """What the router needs of a model: a blocking predict on one parsed input."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model version ready to serve: the pyfunc, where it came from, and when."""

    ref: ModelRef
    model: Model
    loaded_at: datetime
    input_spec: InputSpec = field(default_factory=InputSpec)
    """The signature's inputs, prepared for parsing requests."""
    load_seconds: float = 0.0
    predict_unchecked: Callable[[Any], Any] | None = None
    """The flavour's own predict, skipping MLflow's schema enforcement: only for input
    that was already enforced against `input_schema`."""

    @property
    def input_schema(self) -> Any:
        """The signature's input schema (an `mlflow.types.Schema`), or None."""
        return self.input_spec.schema

    def describe(self) -> dict[str, str]:
        return {
            "version": self.ref.version,
            "run_id": self.ref.run_id or "",
            "source": self.ref.source,
            "loaded_at": self.loaded_at.isoformat(),
        }


class ModelLoader(Protocol):
    """Blocking: downloads, loads and warms a version, raising if any step fails."""

    @property
    def downloads(self) -> int:
        """Artifact downloads so far: a promotion that reuses a model leaves it unchanged."""
        ...

    def __call__(self, ref: ModelRef) -> LoadedModel: ...


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
            input_spec=InputSpec.of(pyfunc.metadata.get_input_schema()),
            load_seconds=self._clock.monotonic() - started,
            predict_unchecked=_unchecked_predict(pyfunc),
        )


def _unchecked_predict(pyfunc: Any) -> Callable[[Any], Any] | None:
    """What `PyFuncModel.predict` calls once enforcement is done, when that is all it does.

    Models whose signature comes from type hints convert and validate their input in
    ways `_enforce_schema` alone does not: those keep going through `predict`.
    """
    metadata = pyfunc.metadata
    if (
        metadata.get_input_schema() is None
        or metadata._is_signature_from_type_hint()
        or metadata._is_type_hint_from_example()
    ):
        return None
    predict_fn: Callable[[Any], Any] | None = getattr(pyfunc, "_predict_fn", None)
    return predict_fn
