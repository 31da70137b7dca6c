"""Replay scoring: one predict per batch, and only the records at fault carry an error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types import ColSpec, DataType, Schema

from contender.models import LoadedModel, ModelRef
from contender.replay.run import _batches
from contender.replay.scoring import score_batch
from contender.replay.source import LoggedInput
from contender.signature import InputSpec

DOUBLES = Schema([ColSpec(DataType.double, name) for name in ("a", "b")])


class CountingModel:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        frame = pd.DataFrame(data)
        self.calls.append(len(frame))
        if (frame["b"] < -100).any():
            raise ValueError("b is far too small")
        a = frame["a"].to_numpy(dtype=float)
        return np.column_stack([1 - a / 10, a / 10])


def loaded(model: CountingModel) -> LoadedModel:
    ref = ModelRef("m", "3", None, "models:/m/3")
    return LoadedModel(ref, model, datetime.now(UTC), InputSpec.of(DOUBLES))


def item(request_id: str, columns: list[str], *rows: list[Any]) -> LoggedInput:
    return LoggedInput(request_id, {"columns": columns, "data": [list(row) for row in rows]})


def n_rows(record: LoggedInput) -> int:
    assert record.inputs is not None
    data = record.inputs["data"]
    assert isinstance(data, list)
    return len(data)


def test_a_clean_batch_is_one_predict_and_each_record_gets_its_rows() -> None:
    model = CountingModel()
    batch = [item(f"r{i}", ["a", "b"], [i, 0.5]) for i in range(9)]
    batch.append(item("five", ["a", "b"], *([1.0, 2.0] for _ in range(5))))
    results = score_batch(loaded(model), batch)
    assert model.calls == [14]
    assert [row.request_id for row in results] == [i.request_id for i in batch]
    assert results[3].predictions == [[0.7, 0.3]]
    assert results[-1].predictions == [[0.9, 0.1]] * 5
    assert all(row.error is None for row in results)
    latencies = [row.latency_ms for row in results]
    assert all(latency is not None and latency >= 0 for latency in latencies)


def test_records_that_do_not_fit_are_named_and_the_rest_scored() -> None:
    model = CountingModel()
    good = [item(f"g{i}", ["a", "b"], [i, 1.0]) for i in range(30)]
    null = item("null", ["a", "b"], [None, 1.0])
    text = item("text", ["a", "b"], [1.0, "many"])
    renamed = item("renamed", ["a", "c"], [1.0, 2.0])
    breaks = item("breaks", ["a", "b"], [1.0, -1000.0])
    empty = LoggedInput("empty", None)
    batch = [*good[:10], null, *good[10:20], text, renamed, breaks, *good[20:], empty]
    results = {row.request_id: row for row in score_batch(loaded(model), batch)}
    assert all(results[g.request_id].error is None for g in good)
    assert results["g4"].predictions == [[0.6, 0.4]]
    assert "column 'a'" in str(results["null"].error)
    assert "does not fit the signature" in str(results["text"].error)
    assert "does not fit the signature" in str(results["renamed"].error)
    assert "b is far too small" in str(results["breaks"].error)
    assert results["empty"].error == "the record has no logged input rows"
    for name in ("null", "text", "renamed", "breaks", "empty"):
        assert results[name].predictions is None
    # Halving finds the few at fault: far fewer predicts than one per record.
    assert len(model.calls) < 15


def test_batches_hold_at_most_the_rows_asked_and_a_large_record_goes_alone() -> None:
    records = [item(f"r{i}", ["a", "b"], *([1.0, 1.0] for _ in range(n))) for i, n in
               enumerate([1, 2, 3, 10, 1, 1])]  # fmt: skip
    sizes = [[n_rows(r) for r in batch] for batch in _batches(records, 4)]
    assert sizes == [[1, 2], [3], [10], [1, 1]]
