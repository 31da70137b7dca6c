"""Download, load and warm up one model version, off the request path.

A version counts as loaded only after one prediction on its input example (when it has
one) succeeded, so a model that loads but cannot predict is never swapped in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from contender.clock import Clock
from contender.models import LoadedModel, ModelRef
from contender.signature import InputSpec

__all__ = ["LoadedModel", "MlflowModelLoader", "ModelLoader"]

_log = logging.getLogger(__name__)


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
        mismatches = requirements_mismatch(Path(local_path))
        if mismatches:
            _log.warning(
                "version %s of %s was logged with requirements this environment does not "
                "satisfy (it is served anyway, as `mlflow models serve --env-manager local` "
                "does): %s",
                ref.version, ref.name, "; ".join(mismatches),
            )  # fmt: skip
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
            predict_unchecked=unchecked_predict(pyfunc),
            local_path=local_path,
            requirements_mismatch=mismatches,
        )


def requirements_mismatch(model_dir: Path) -> tuple[str, ...]:
    """The model's `requirements.txt` lines this environment does not satisfy, checked
    the way MLflow checks them when it loads a model (its own wording)."""
    from mlflow.utils.requirements_utils import _check_requirement_satisfied

    path = model_dir / "requirements.txt"
    if not path.is_file():
        return ()
    found = []
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement or requirement.startswith("-"):  # options, `-r other.txt`
            continue
        mismatch = _check_requirement_satisfied(requirement)
        if mismatch is not None:
            found.append(str(mismatch))
    return tuple(found)


def unchecked_predict(pyfunc: Any) -> Callable[[Any], Any] | None:
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
