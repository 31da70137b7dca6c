"""`contender log export` streams, chunk by chunk, and writes what it wrote before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from contender.cli.main import app
from contender.predictions import export
from contender.predictions import store as store_module
from contender.predictions.store import SqlPredictionStore
from tests.export_cases import csv_before, fill, jsonl_before, parquet_before, streamed


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlPredictionStore]:
    monkeypatch.setattr(store_module, "READ_CHUNK", 3)  # chunk boundaries inside the log
    log = SqlPredictionStore(f"sqlite:///{tmp_path / 'log.db'}")
    fill(log)
    yield log
    log.close()


def test_jsonl_and_csv_are_what_they_were(store: SqlPredictionStore, tmp_path: Path) -> None:
    jsonl = streamed(store, "jsonl", tmp_path)
    assert jsonl == jsonl_before(store)
    labels = {row["request_id"]: row["label"] for row in map(json.loads, jsonl.splitlines())}
    assert labels["req-003"] == [1, 0, 1]
    assert labels["req-004"] == [None, 1, None]
    assert labels["req-005"] is None  # a label for a row it does not have
    assert labels["req-006"] is None
    assert (labels["req-007"], labels["req-008"], labels["req-010"]) == (0, None, 1)
    assert streamed(store, "csv", tmp_path) == csv_before(store)


def test_parquet_row_groups_share_the_whole_logs_schema(
    store: SqlPredictionStore, tmp_path: Path
) -> None:
    written = streamed(store, "parquet", tmp_path, row_group=4)
    assert written.metadata.num_row_groups == 3
    before = parquet_before(store)
    table = written.read()
    assert table.schema == before.schema
    assert table.to_pylist() == before.to_pylist()
    # the first group alone has no label and no challenger: typed over the whole log
    assert table.schema.field("challenger_predictions").type == pa.list_(pa.list_(pa.float64()))
    assert table.schema.field("inputs").type == before.schema.field("inputs").type


def test_export_since(store: SqlPredictionStore, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    out = tmp_path / "since.jsonl"
    args = ["log", "export", "--log-store", url, "--since", "2026-01-01T00:00:08", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["request_id"] for line in out.read_text().splitlines()]
    assert ids == ["req-008", "req-009", "req-010"]
    bad = CliRunner().invoke(app, ["log", "export", "--log-store", url, "--since", "soon"])
    assert bad.exit_code != 0


def test_parquet_row_groups_are_capped_in_input_rows(
    store: SqlPredictionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "PARQUET_GROUP_ROWS", 5)  # the 3-row requests close groups
    written = streamed(store, "parquet", tmp_path, row_group=100)
    assert written.metadata.num_row_groups > 2
    assert written.read().to_pylist() == parquet_before(store).to_pylist()
