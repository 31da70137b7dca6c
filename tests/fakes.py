"""Test doubles for contender's interfaces: plain classes, no mocks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from contender.models import LoadedModel
from contender.predictions.record import Feedback, JsonValue, PredictionRecord
from contender.registry.client import ModelRef, SlotRefs
from contender.settings import Selector


class FakeClock:
    """Time that only moves when a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


class FakeModel:
    """A model whose answer per row is `score(row)`, or that raises when told to."""

    def __init__(
        self, score: Callable[[pd.Series], float] | None = None, error: Exception | None = None
    ) -> None:
        self._score = score or (lambda row: float(row.sum()))
        self._error = error
        self.calls = 0
        self._lock = threading.Lock()

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        with self._lock:
            self.calls += 1
        if self._error is not None:
            raise self._error
        return [[1 - self._score(row), self._score(row)] for _, row in data.iterrows()]


def model_ref(name: str, version: str) -> ModelRef:
    return ModelRef(
        name=name, version=version, run_id=f"run-{version}", source=f"models:/m-{version}"
    )


def loaded(name: str, version: str, model: Any | None = None) -> LoadedModel:
    return LoadedModel(
        ref=model_ref(name, version),
        model=model or FakeModel(),
        loaded_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class FakeRegistryClient:
    """A RegistryClient whose slots the test sets; with `down` set, every call raises it."""

    def __init__(
        self, champion: ModelRef | None = None, challenger: ModelRef | None = None
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.down: Exception | None = None
        self.calls = 0
        self.tag: str | None = None
        """The model's `contender.routing` tag."""
        self.refuse_writes: Exception | None = None

    def resolve(self, name: str, selector: Selector) -> SlotRefs:
        self.calls += 1
        if self.down is not None:
            raise self.down
        return SlotRefs(self.champion, self.challenger, self.tag)

    def routing_tag(self, name: str) -> str | None:
        if self.down is not None:
            raise self.down
        return self.tag

    def write_routing_tag(self, name: str, value: str) -> None:
        refusal = self.down or self.refuse_writes
        if refusal is not None:
            raise refusal
        self.tag = value


class FakeLoader:
    """A ModelLoader handing out FakeModels; versions in `broken` raise, like a bad artifact.

    Every call counts as a download, as with `MlflowModelLoader`."""

    def __init__(self, clock: FakeClock | None = None, load_seconds: float = 0.5) -> None:
        self.downloads = 0
        self.loaded: list[str] = []
        self.broken: set[str] = set()
        self._clock = clock or FakeClock()
        self._load_seconds = load_seconds

    def __call__(self, ref: ModelRef) -> LoadedModel:
        self.downloads += 1
        self._clock.advance(self._load_seconds)
        if ref.version in self.broken:
            raise RuntimeError(f"artifact of version {ref.version} is broken")
        self.loaded.append(ref.version)
        return LoadedModel(
            ref=ref,
            model=FakeModel(),
            loaded_at=self._clock.now(),
            load_seconds=self._load_seconds,
        )


class ListStore:
    """A PredictionStore in memory."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.feedback: list[Feedback] = []
        self.fail_next = 0

    def append_many(self, records: Any) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("store is down")
        known = {record.request_id for record in self.records}
        self.records.extend(record for record in records if record.request_id not in known)

    def add_feedback(self, items: Any) -> list[str]:
        self.feedback.extend(items)
        known = {record.request_id for record in self.records}
        return sorted({item.request_id for item in items} - known)

    def iter_records(self, since: datetime | None = None) -> Any:
        return iter([record.to_row() for record in self.records])

    def labels(self) -> dict[tuple[str, int], JsonValue]:
        return {(item.request_id, item.row): item.label for item in self.feedback}

    def close(self) -> None:
        pass
