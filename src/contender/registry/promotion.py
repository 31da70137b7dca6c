"""Promotion and rollback: moving versions between the champion and challenger slots.

`contender promote` and `contender rollback` (SPEC section 5) change the registry only;
every running service picks the change up at its next poll, reusing a model it already
has loaded (a promoted challenger) instead of downloading it again.

The slots are the ones the service reads (`MlflowRegistryClient.resolve`):
- stages: promote moves the challenger (latest `Staging`) to `Production` and archives
  every other `Production` version; rollback moves VERSION to `Production` the same way.
  Each is one `transition_model_version_stage(..., archive_existing_versions=True)`, so
  the registry never shows a moment without a champion.
- aliases: promote points `@champion` at the challenger's version, then drops
  `@challenger`; rollback points `@champion` at VERSION. Between the two promote calls a
  poll sees both aliases on one version, which the service serves from one loaded model.

Failure modes: anything the user can fix (no such model or version, no challenger, a
rollback onto the challenger) and an unreachable registry raise `ConfigError` with one
line saying what; nothing has been changed unless the error says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from contender.errors import ConfigError
from contender.registry.client import (
    STAGE_OF_SLOT,
    MlflowRegistryClient,
    ModelRef,
    SlotRefs,
    fail_fast_http,
    is_missing,
    model_ref,
    stages_quietly,
)
from contender.settings import Selector

_PRODUCTION = STAGE_OF_SLOT["champion"]
_ARCHIVED = "Archived"


@dataclass(frozen=True)
class SlotChange:
    """What a promotion or rollback did, for people to read."""

    model: str
    selector: Selector
    champion: str
    """The champion's version after the change."""
    challenger: str | None
    """The challenger's version after the change (None: no challenger)."""
    steps: tuple[str, ...]
    """One line per registry change made, e.g. "version 3: Staging -> Production"."""
    notes: tuple[str, ...] = ()


class MlflowRegistryEditor:
    """Writes the slots of a registered model at any tracking URI MLflow accepts."""

    def __init__(self, tracking_uri: str | None) -> None:
        import mlflow

        fail_fast_http()
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._slots = MlflowRegistryClient(tracking_uri)
        self._where = tracking_uri or mlflow.get_tracking_uri()

    def slots(self, name: str, selector: Selector) -> SlotRefs:
        """Both slots of an existing model; ConfigError when it does not exist."""
        with self._one_line_errors():
            self._require_model(name)
            return self._slots.resolve(name, selector)

    def version(self, name: str, version: str) -> ModelRef:
        """One registered version, in a slot or not; ConfigError when it does not exist."""
        with self._one_line_errors():
            self._require_model(name)
            self._require_version(name, version)
            return model_ref(self._client.get_model_version(name, version))

    def challenger(self, name: str, selector: Selector) -> ModelRef:
        """The version promote would promote; ConfigError when there is none."""
        return _challenger(self.slots(name, selector), name, selector)

    def promote(self, name: str, selector: Selector) -> SlotChange:
        with self._one_line_errors():
            before = self.slots(name, selector)
            version = _challenger(before, name, selector).version
            if selector is Selector.ALIASES:
                steps = self._promote_aliases(name, version, before)
            else:
                steps = self._to_production(name, version)
            after = self._slots.resolve(name, selector)
            notes: tuple[str, ...] = ()
            if after.challenger is not None:
                notes = (
                    f"version {after.challenger.version} is also in Staging: "
                    "it is the challenger now",
                )
            return SlotChange(name, selector, version, _version(after.challenger), steps, notes)

    def rollback(self, name: str, selector: Selector, version: str) -> SlotChange:
        with self._one_line_errors():
            before = self.slots(name, selector)
            self._require_version(name, version)
            challenger = _version(before.challenger)
            if version == _version(before.champion):
                return SlotChange(name, selector, version, challenger, steps=())
            if version == challenger:
                raise ConfigError(
                    f"version {version} of {name!r} is the challenger: "
                    "`contender promote` makes it the champion"
                )
            steps: tuple[str, ...]
            if selector is Selector.ALIASES:
                steps = self._set_champion(name, version, before)
            else:
                steps = self._to_production(name, version)
            return SlotChange(name, selector, version, challenger, steps)

    def _promote_aliases(self, name: str, version: str, before: SlotRefs) -> tuple[str, ...]:
        # Champion first: a poll in between sees both aliases on one loaded model.
        steps = self._set_champion(name, version, before)
        self._client.delete_registered_model_alias(name, "challenger")
        return (*steps, f"@challenger: removed (was version {version})")

    def _set_champion(self, name: str, version: str, before: SlotRefs) -> tuple[str]:
        self._client.set_registered_model_alias(name, "champion", version)
        was = _version(before.champion)
        return (f"@champion: version {was} -> version {version}" if was else
                f"@champion: set on version {version}",)  # fmt: skip

    def _to_production(self, name: str, version: str) -> tuple[str, ...]:
        with stages_quietly():
            current = self._client.get_model_version(name, version).current_stage
            others = [v for v in self._versions(name) if v.current_stage == _PRODUCTION]
            self._client.transition_model_version_stage(
                name, version, _PRODUCTION, archive_existing_versions=True
            )
        archived = sorted((str(v.version) for v in others if str(v.version) != version), key=int)
        return (
            f"version {version}: {current} -> {_PRODUCTION}",
            *(f"version {other}: {_PRODUCTION} -> {_ARCHIVED}" for other in archived),
        )

    def _versions(self, name: str) -> list[Any]:
        quote = '"' if "'" in name else "'"
        return list(self._client.search_model_versions(f"name = {quote}{name}{quote}"))

    def _require_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException as error:
            if is_missing(error):
                raise ConfigError(f"no registered model {name!r} in {self._where}") from None
            raise

    def _require_version(self, name: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        if not version.isdigit():
            raise ConfigError(f"a version is a number, not {version!r}")
        try:
            self._client.get_model_version(name, version)
        except MlflowException as error:
            if is_missing(error):
                raise ConfigError(f"model {name!r} has no version {version}") from None
            raise

    @contextlib.contextmanager
    def _one_line_errors(self) -> Iterator[None]:
        """MLflow's errors (often many lines of retries) become one-line ConfigErrors."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as error:
            first_line = (str(error.message).strip().splitlines() or ["(no message)"])[0]
            raise ConfigError(f"registry at {self._where}: {first_line}") from error


def _version(ref: ModelRef | None) -> str | None:
    return ref.version if ref is not None else None


def _challenger(slots: SlotRefs, name: str, selector: Selector) -> ModelRef:
    if slots.challenger is None:
        rule = "no alias @challenger" if selector is Selector.ALIASES else "no version in Staging"
        raise ConfigError(f"model {name!r} has no challenger to promote ({rule})")
    return slots.challenger
