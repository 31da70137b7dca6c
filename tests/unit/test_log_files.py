"""`contender log import` and `contender log recover` on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from contender.cli.main import app
from contender.predictions.record import ArmOutcome, PredictionRecord
from contender.predictions.spill import SpillDirectory
from contender.predictions.store import SqlPredictionStore


def record(request_id: str, rows: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id, timestamp="2026-01-01T00:00:00.000000+00:00", model_name="m",
        inputs={"columns": ["a"], "data": [[float(i)] for i in range(rows)]},
        served_by="champion", fallback=False, routing_draw=0.5, routing_key=None,
        champion=ArmOutcome("1", [0.25] * rows, 1.0, None),
        challenger=ArmOutcome("2", [0.75] * rows, 2.0, None, None),
        challenger_weight=0.1, routing_revision=3,
    )  # fmt: skip


def test_import_loads_records_and_labels_once(tmp_path: Path) -> None:
    lines = [
        {**record("one", 1).to_row(), "label": 1},
        {**record("two", 2).to_row(), "label": [0, None]},
        {**record("three", 1).to_row(), "label": None},
    ]
    source = tmp_path / "export.jsonl"
    source.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    url = f"sqlite:///{tmp_path}/log.db"
    for _ in range(2):  # idempotent on request_id
        result = CliRunner().invoke(app, ["log", "import", str(source), "--log-store", url])
        assert result.exit_code == 0, result.output
    store = SqlPredictionStore(url)
    try:
        stored = {row["request_id"]: row for row in store.iter_records()}
        assert set(stored) == {"one", "two", "three"}
        assert stored["two"]["challenger_predictions"] == [0.75, 0.75]
        assert stored["two"]["routing_revision"] == 3
        assert store.labels() == {("one", 0): 1, ("two", 0): 0}
    finally:
        store.close()


def test_import_names_the_line_that_is_not_a_record(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(orjson.dumps(record("ok", 1).to_row()) + b"\n" + b'{"request_id": 1}\n')
    result = CliRunner().invoke(
        app, ["log", "import", str(source), "--log-store", f"sqlite:///{tmp_path}/x.db"]
    )
    assert result.exit_code == 1
    assert "bad.jsonl:2 has no field 'timestamp'" in result.output


def test_recover_loads_the_spill_directory_and_empties_it(tmp_path: Path) -> None:
    spill = SpillDirectory(tmp_path / "spill")
    spill.write([record("a", 1), record("b", 1)])
    spill.write([record("b", 1), record("c", 3)])  # a record spilled twice is stored once
    url = f"sqlite:///{tmp_path}/log.db"
    args = ["log", "recover", "--spill-dir", str(tmp_path / "spill"), "--log-store", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recovered 4 records from 2 files" in result.output
    assert list((tmp_path / "spill").iterdir()) == []
    store = SqlPredictionStore(url)
    try:
        assert sorted(row["request_id"] for row in store.iter_records()) == ["a", "b", "c"]
    finally:
        store.close()
    again = CliRunner().invoke(app, args)
    assert "nothing to recover" in again.output
