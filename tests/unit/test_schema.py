"""Log store migrations: a store written by 0.1.0 opens, records intact, in this release."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from contender.predictions.record import ArmOutcome, PredictionRecord
from contender.predictions.schema import LATEST_VERSION
from contender.predictions.store import SqlPredictionStore
from contender.replay.source import ReplayedRow, ReplaySource, Selection

FIXTURE = Path(__file__).parent.parent / "fixtures" / "store-0.1.0.db"
# Written by the release before replays (schema version 3): routing, skips, labels.
FIXTURE_V3 = Path(__file__).parent.parent / "fixtures" / "store-0.3.0.db"


def _version(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT version FROM contender_schema").fetchone()[0])


def test_a_store_written_by_0_1_0_upgrades_with_its_records_intact(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    store = SqlPredictionStore(f"sqlite:///{path}")
    records = list(store.iter_records())
    assert [r["request_id"] for r in records] == [f"r{i:02d}" for i in range(20)]
    assert records[3]["champion_predictions"] == [[0.3, 0.7]]
    assert records[3]["inputs"] == {"columns": ["a", "b"], "data": [[3, 1.5]]}
    assert records[7]["challenger_error"] == "TimeoutError: no answer within 1000 ms"
    assert all(r["challenger_skipped"] is None and r["challenger_weight"] is None for r in records)
    assert store.labels()[("r03", 0)] == 1
    new = PredictionRecord(
        request_id="new", timestamp="2026-12-01T00:00:00.000000+00:00", model_name="fixture",
        inputs={"columns": ["a"], "data": [[1]]}, served_by="champion", fallback=False,
        routing_draw=0.5, routing_key=None, champion=ArmOutcome("1", [[0.5, 0.5]], 1.0),
        challenger=ArmOutcome("2", skipped="overload"), challenger_weight=0.1,
    )  # fmt: skip
    store.append_many([new])
    stored = next(r for r in store.iter_records() if r["request_id"] == "new")
    assert stored["challenger_skipped"] == "overload"
    assert stored["challenger_weight"] == 0.1
    store.close()
    assert _version(path) == LATEST_VERSION


def test_opening_twice_migrates_once_and_a_new_store_starts_at_the_latest(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(FIXTURE, old)
    SqlPredictionStore(f"sqlite:///{old}").close()
    SqlPredictionStore(f"sqlite:///{old}").close()
    assert _version(old) == LATEST_VERSION
    fresh = tmp_path / "fresh.db"
    SqlPredictionStore(f"sqlite:///{fresh}").close()
    assert _version(fresh) == LATEST_VERSION


def _indexes(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as connection:
        names = [row[1] for row in connection.execute("PRAGMA index_list(predictions)")]
        return {
            name: [row[2] for row in connection.execute(f"PRAGMA index_info({name})")]
            for name in names
        }


REPORT_INDEX = "ix_predictions_model_timestamp"
REPORT_INDEX_COLUMNS = ["model_name", "timestamp", "champion_version", "challenger_version"]


def test_version_3_adds_the_report_index(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(FIXTURE, old)
    assert REPORT_INDEX not in _indexes(old)
    SqlPredictionStore(f"sqlite:///{old}").close()
    assert _indexes(old)[REPORT_INDEX] == REPORT_INDEX_COLUMNS
    assert _version(old) == LATEST_VERSION
    fresh = tmp_path / "fresh.db"
    SqlPredictionStore(f"sqlite:///{fresh}").close()
    assert _indexes(fresh)[REPORT_INDEX] == REPORT_INDEX_COLUMNS
    assert "ix_predictions_timestamp" in _indexes(fresh)  # the export's order


def test_a_version_2_store_gets_the_index_and_one_that_has_it_is_fine(tmp_path: Path) -> None:
    without, having = tmp_path / "v2.db", tmp_path / "v2-with-index.db"
    for path in (without, having):
        SqlPredictionStore(f"sqlite:///{path}").close()
        with sqlite3.connect(path) as connection:
            connection.execute("UPDATE contender_schema SET version = 2")
            if path == without:
                connection.execute(f"DROP INDEX {REPORT_INDEX}")
    assert REPORT_INDEX not in _indexes(without)
    for path in (without, having):
        SqlPredictionStore(f"sqlite:///{path}").close()  # CREATE INDEX IF NOT EXISTS
        assert _indexes(path)[REPORT_INDEX] == REPORT_INDEX_COLUMNS
        assert _version(path) == LATEST_VERSION


def test_a_version_3_store_gets_the_replays_table_with_its_records_intact(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    shutil.copy(FIXTURE_V3, path)
    assert _version(path) == 3
    store = SqlPredictionStore(f"sqlite:///{path}")
    records = list(store.iter_records())
    assert [r["request_id"] for r in records] == [f"r{i:02d}" for i in range(20)]
    assert records[4]["served_by"] == "challenger"
    assert records[5]["challenger_skipped"] == "overload"
    assert records[6]["challenger_predictions"] == [[0.4, 0.6]]
    assert {r["routing_revision"] for r in records} == {3}
    assert store.labels()[("r09", 0)] == 1
    source = ReplaySource(store.engine, Selection("fixture", "3"))
    assert source.counts() == (20, 20)
    source.store([ReplayedRow("r01", [[0.1, 0.9]], 0.5, None)], "2026-12-01T00:00:00+00:00")
    assert source.counts() == (20, 19)
    store.close()
    assert _version(path) == LATEST_VERSION
