"""The types every layer shares: a registered version, and a model loaded from it.

They live below `registry` and `routing` so that neither imports the other for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from contender.signature import InputSpec


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One registered model version, as the registry describes it."""

    name: str
    version: str
    run_id: str | None
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


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
    local_path: str | None = None
    """Where the artifacts were downloaded: another process loads the same model from here."""
    requirements_mismatch: tuple[str, ...] = ()
    """Logged requirements this environment does not satisfy, as MLflow words them:
    `"scikit-learn (current: 1.5.2, required: scikit-learn==1.4.0)"`."""

    @property
    def input_schema(self) -> Any:
        """The signature's input schema (an `mlflow.types.Schema`), or None."""
        return self.input_spec.schema

    def describe(self) -> dict[str, object]:
        return {
            "version": self.ref.version,
            "run_id": self.ref.run_id or "",
            "source": self.ref.source,
            "loaded_at": self.loaded_at.isoformat(),
            "requirements_mismatch": list(self.requirements_mismatch),
        }
