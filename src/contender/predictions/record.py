"""One prediction log record per `/invocations` request (SPEC section 4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

JsonValue = Any
"""A value that serialises to JSON: predictions, labels and input cells."""


@dataclass(frozen=True, slots=True)
class ArmOutcome:
    """What one model did with the request; all None when it was not invoked.

    A skipped arm keeps the `version` that would have run and says why in `skipped`
    (`"overload"` or `"breaker_open"`); its predictions, latency and error stay None."""

    version: str | None = None
    predictions: JsonValue | None = None
    latency_ms: float | None = None
    error: str | None = None
    skipped: str | None = None


_OUTCOME_FIELDS = tuple(field.name for field in fields(ArmOutcome))


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    request_id: str
    timestamp: str
    """UTC, ISO-8601."""
    model_name: str
    inputs: dict[str, JsonValue] | Callable[[], dict[str, JsonValue]]
    """`{"columns": [...], "data": [[...]]}`, redacted columns already hashed; or what
    builds it, so that the work happens in the log writer's thread, off the request path."""
    served_by: str
    fallback: bool
    routing_draw: float | None
    routing_key: str | None
    champion: ArmOutcome
    challenger: ArmOutcome
    challenger_weight: float | None = None
    """The weight the draw used."""
    routing_revision: int | None = None
    """The registry routing tag's revision the draw used; None when the flags set it."""

    def to_row(self) -> dict[str, JsonValue]:
        """The flat field names of SPEC section 4, as stores and exports use them."""
        row: dict[str, JsonValue] = {
            "request_id": self.request_id,
            "timestamp": self.timestamp,
            "model_name": self.model_name,
            "inputs": self.inputs() if callable(self.inputs) else self.inputs,
            "served_by": self.served_by,
            "fallback": self.fallback,
            "routing_draw": self.routing_draw,
            "routing_key": self.routing_key,
        }
        for arm, outcome in (("champion", self.champion), ("challenger", self.challenger)):
            # Not `asdict`: it deep-copies the predictions, the writer thread's biggest cost.
            for name in _OUTCOME_FIELDS:
                row[f"{arm}_{name}"] = getattr(outcome, name)
        row["challenger_weight"] = self.challenger_weight
        row["routing_revision"] = self.routing_revision
        return row

    @classmethod
    def from_row(cls, row: dict[str, JsonValue]) -> PredictionRecord:
        """The record `to_row` (or an export line) describes; fields added since a row was
        written read as None. `KeyError`/`TypeError` for a row that is not a record."""

        def outcome(arm: str) -> ArmOutcome:
            return ArmOutcome(*(row.get(f"{arm}_{name}") for name in _OUTCOME_FIELDS))

        return cls(
            request_id=str(row["request_id"]),
            timestamp=str(row["timestamp"]),
            model_name=str(row["model_name"]),
            inputs=row["inputs"],
            served_by=str(row["served_by"]),
            fallback=bool(row["fallback"]),
            routing_draw=row.get("routing_draw"),
            routing_key=row.get("routing_key"),
            champion=outcome("champion"),
            challenger=outcome("challenger"),
            challenger_weight=row.get("challenger_weight"),
            routing_revision=row.get("routing_revision"),
        )


RECORD_FIELDS: tuple[str, ...] = (
    "request_id",
    "timestamp",
    "model_name",
    "inputs",
    "served_by",
    "fallback",
    "routing_draw",
    "routing_key",
    "champion_version",
    "champion_predictions",
    "champion_latency_ms",
    "champion_error",
    "challenger_version",
    "challenger_predictions",
    "challenger_latency_ms",
    "challenger_error",
    "champion_skipped",
    "challenger_skipped",
    "challenger_weight",
    "routing_revision",
)


@dataclass(frozen=True, slots=True)
class Feedback:
    """Ground truth for one row of a logged request (`row` 0 for one-row requests)."""

    request_id: str
    row: int
    label: JsonValue
    received_at: str | None = None
    """When the service accepted it (UTC ISO-8601): the report's label delay."""
