"""Which versions sit in the champion and challenger slots, asked of the MLflow registry.

`RegistryClient` is the role; `MlflowRegistryClient` talks to any tracking URI MLflow
accepts (`http(s)://` server or `sqlite:///` store). Every call is blocking I/O: callers
run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from contender.models import ModelRef
from contender.registry.routing_tag import ROUTING_TAG
from contender.settings import Selector

__all__ = ["MlflowRegistryClient", "ModelRef", "RegistryClient", "SlotRefs"]

STAGE_OF_SLOT = {"champion": "Production", "challenger": "Staging"}

# MLflow retries a failed HTTP call 7 times with exponential backoff: about 4 minutes
# against a stopped server. The poller is a retry loop of its own, so a poll should fail
# in seconds and say so in /status; a CLI should not hang either. Set only where the user
# has not chosen: MLflow's variables keep their meaning (SPEC section 2).
_FAIL_FAST_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def fail_fast_http() -> None:
    """Bound MLflow's HTTP retries for this process unless MLFLOW_HTTP_REQUEST_* say else."""
    for name, value in _FAIL_FAST_HTTP.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def stages_quietly() -> Iterator[None]:
    """Stages are deprecated in MLflow but remain SPEC's default selector: no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@dataclass(frozen=True, slots=True)
class SlotRefs:
    """What the registry says fills each slot right now."""

    champion: ModelRef | None
    challenger: ModelRef | None
    routing_tag: str | None = None
    """The registered model's `contender.routing` tag, as stored; None when absent."""


class RegistryClient(Protocol):
    def resolve(self, name: str, selector: Selector) -> SlotRefs:
        """Read both slots and the routing tag; raises when the registry cannot be reached."""
        ...

    def routing_tag(self, name: str) -> str | None:
        """The routing tag alone; None when it or the model does not exist."""
        ...

    def write_routing_tag(self, name: str, value: str) -> None:
        """Set the routing tag; raises when the registry refuses or cannot be reached."""
        ...


def model_ref(version: Any) -> ModelRef:
    return ModelRef(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id,
        source=version.source,
    )


class MlflowRegistryClient:
    def __init__(self, tracking_uri: str | None) -> None:
        from mlflow import MlflowClient

        fail_fast_http()
        # registry_uri None lets MLflow apply MLFLOW_REGISTRY_URI, then the tracking URI.
        self._client = MlflowClient(tracking_uri=tracking_uri)

    def resolve(self, name: str, selector: Selector) -> SlotRefs:
        """Both slots from one registry read: read one after the other, a promotion
        between the two reads would show the old champion beside no challenger, and the
        service would drop the very model it is about to promote (and download it again)."""
        if selector is Selector.ALIASES:
            return self._by_aliases(name)
        return SlotRefs(*self._by_stages(name), routing_tag=self.routing_tag(name))

    def routing_tag(self, name: str, *, missing_ok: bool = True) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            tags: dict[str, str] = self._client.get_registered_model(name).tags or {}
        except MlflowException as error:
            if missing_ok and is_missing(error):
                return None
            raise
        return tags.get(ROUTING_TAG)

    def write_routing_tag(self, name: str, value: str) -> None:
        self._client.set_registered_model_tag(name, ROUTING_TAG, value)

    def _by_aliases(self, name: str) -> SlotRefs:
        """Aliases and the routing tag come with the registered model: one read."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._client.get_registered_model(name)
        except MlflowException as error:
            if is_missing(error):
                return SlotRefs(None, None)
            raise
        aliases: dict[str, str] = dict(model.aliases or {})
        return SlotRefs(
            self._version(name, aliases.get("champion")),
            self._version(name, aliases.get("challenger")),
            routing_tag=(model.tags or {}).get(ROUTING_TAG),
        )

    def _version(self, name: str, version: str | None) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        if version is None:
            return None
        try:
            return model_ref(self._client.get_model_version(name, str(version)))
        except MlflowException as error:
            if is_missing(error):  # deleted since the aliases were read
                return None
            raise

    def _by_stages(self, name: str) -> tuple[ModelRef | None, ModelRef | None]:
        from mlflow.exceptions import MlflowException

        try:
            with stages_quietly():
                versions = self._client.get_latest_versions(
                    name, stages=[STAGE_OF_SLOT["champion"], STAGE_OF_SLOT["challenger"]]
                )
        except MlflowException as error:
            if is_missing(error):
                return None, None
            raise

        def latest(stage: str) -> ModelRef | None:
            found = [version for version in versions if version.current_stage == stage]
            if not found:
                return None
            return model_ref(max(found, key=lambda version: int(version.version)))

        return latest(STAGE_OF_SLOT["champion"]), latest(STAGE_OF_SLOT["challenger"])


def is_missing(error: Exception) -> bool:
    """The registry answered "no such model/version/alias" (not: could not be reached)."""
    code = getattr(error, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")
