"""Reading a real SQLite store written by `SqlPredictionStore`: rows, labels, versions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from contender.analysis import sql_rows
from contender.analysis.data import LoggedRows
from contender.analysis.labels import apply_label_table, read_labels_csv
from contender.analysis.load import (
    VersionGroup,
    choose_version_pair,
    load_logged_rows,
    parse_since,
)
from contender.errors import ConfigError
from contender.predictions.record import Feedback
from tests.unit.analysis.factories import record, sqlite_store


@pytest.fixture
def mixed_store(tmp_path: Path) -> str:
    """Multi-row, failed, not-invoked and champion-failed requests, partly labeled."""
    records = [
        record(
            "r1",
            [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
            [[0.8, 0.2], [0.1, 0.9], [0.7, 0.3]],
        ),
        record(
            "r2",
            [[0.3, 0.7]],
            None,
            challenger_error="timeout",
            fallback=True,
            served_by="champion",
        ),
        record("r3", [[0.5, 0.5], [0.4, 0.6]], None, versions=("1", None)),
        record("r4", None, [[0.2, 0.8]], champion_error="boom", n_inputs=1),
        record("r5", None, None, champion_error="boom", versions=("1", None), n_inputs=4),
    ]
    feedback = [
        Feedback("r1", 0, 0),
        Feedback("r1", 2, True),
        Feedback("r2", 0, 1),
        Feedback("ghost", 0, 1),  # labels a request the log does not hold
    ]
    return sqlite_store(tmp_path / "log.db", records, feedback)


def test_requests_are_exploded_into_aligned_rows(mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    assert rows.n_requests == 5
    assert list(rows.row_offsets) == [0, 3, 4, 6, 7, 11]  # r5's rows come from its inputs
    nan = np.nan
    np.testing.assert_array_equal(
        rows.champion.scores, [0.1, 0.8, 0.4, 0.7, 0.5, 0.6, nan, nan, nan, nan, nan]
    )
    np.testing.assert_array_equal(
        rows.challenger.scores, [0.2, 0.9, 0.3, nan, nan, nan, 0.8, nan, nan, nan, nan]
    )
    assert rows.champion.list_valued


def test_partial_labels_land_on_their_rows(mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    expected = np.full(11, np.nan)
    expected[[0, 2, 3]] = [0.0, 1.0, 1.0]
    np.testing.assert_array_equal(rows.labels, expected)


def test_invocation_and_failures_per_arm(mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    assert list(rows.champion.invoked) == [True] * 5
    assert list(rows.champion.failed) == [False, False, False, True, True]
    assert list(rows.challenger.invoked) == [True, True, False, True, False]
    assert list(rows.challenger.failed) == [False, True, False, False, False]
    assert list(rows.fallback) == [False, True, False, False, False]
    assert (rows.champion.version, rows.challenger.version) == ("1", "2")


def test_scalar_predictions_are_read_as_values(tmp_path: Path) -> None:
    url = sqlite_store(
        tmp_path / "log.db",
        [record("a", [12.5, 3.0], [11.0, 4.0]), record("b", [7.0], [7.5])],
        [Feedback("a", 1, 3.5), Feedback("b", 0, "7.25")],
    )
    rows = load_logged_rows(url, "m")
    np.testing.assert_array_equal(rows.champion.scores, [12.5, 3.0, 7.0])
    np.testing.assert_array_equal(rows.labels, [np.nan, 3.5, 7.25])
    assert not rows.champion.list_valued


def test_only_the_newest_version_pair_is_compared(tmp_path: Path) -> None:
    def at(second: int) -> str:
        return f"2025-03-01T12:00:{second:02d}.000000+00:00"

    records = [
        record("old-1", [0.1], [0.2], timestamp=at(1), versions=("1", "2")),
        record("old-2", [0.1], [0.2], timestamp=at(2), versions=("1", "2")),
        record("new-1", [0.1], [0.2], timestamp=at(3), versions=("2", "3")),
        record("new-2", [0.1], None, timestamp=at(4), versions=("2", None)),
        record("other", [0.1], [0.2], timestamp=at(5), model="another"),
    ]
    rows = load_logged_rows(sqlite_store(tmp_path / "log.db", records, []), "m")
    assert list(rows.request_ids) == ["new-1", "new-2"]
    assert (rows.champion.version, rows.challenger.version) == ("2", "3")
    assert rows.n_requests_other_versions == 2


def test_choose_version_pair_without_any_challenger() -> None:
    groups = [VersionGroup("1", None, 5, "2025-01-01"), VersionGroup("2", None, 3, "2025-02-01")]
    pair = choose_version_pair(groups)
    assert (pair.champion, pair.challenger, pair.n_other) == ("2", None, 5)


def test_since_keeps_later_records(tmp_path: Path) -> None:
    records = [
        record("jan", [0.1], [0.2], timestamp="2025-01-15T08:00:00.000000+00:00"),
        record("mar", [0.1], [0.2], timestamp="2025-03-15T08:00:00.000000+00:00"),
    ]
    url = sqlite_store(tmp_path / "log.db", records, [])
    rows = load_logged_rows(url, "m", since=parse_since("2025-02-01"))
    assert list(rows.request_ids) == ["mar"]
    with pytest.raises(ConfigError, match="no logged records for model 'm' since"):
        load_logged_rows(url, "m", since=parse_since("2025-04-01T00:00:00Z"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02-01", datetime(2025, 2, 1, tzinfo=UTC)),
        ("2025-02-01T10:30", datetime(2025, 2, 1, 10, 30, tzinfo=UTC)),
        ("2025-02-01T10:30:00Z", datetime(2025, 2, 1, 10, 30, tzinfo=UTC)),
        ("2025-02-01T12:30:00+02:00", datetime(2025, 2, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text) == expected


def test_bad_since_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_a_missing_store_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(ConfigError, match="log store not found"):
        load_logged_rows(f"sqlite:///{path}", "m")
    assert not path.exists()


def test_an_empty_database_has_no_prediction_log(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="no prediction log"):
        load_logged_rows(f"sqlite:///{path}", "m")


def test_an_unknown_model_has_no_records(mixed_store: str) -> None:
    with pytest.raises(ConfigError, match="no logged records for model 'nope'"):
        load_logged_rows(mixed_store, "nope")


def test_unsupported_store_urls_are_config_errors_without_passwords() -> None:
    with pytest.raises(ConfigError, match="use sqlite") as caught:
        load_logged_rows("mysql://user:secret@host/db", "m")
    assert "secret" not in str(caught.value)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_csv_labels_override_stored_ones(tmp_path: Path, mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    table = read_labels_csv(_csv(tmp_path, "request_id,row,label\nr1,0,1\nr1,1,false\nr3,1,\n"))
    labels = apply_label_table(rows, table).labels
    assert list(labels[:4]) == [1.0, 0.0, 1.0, 1.0]  # r1 row 0 overridden, row 1 added
    assert np.isnan(labels[5])  # a blank label is no label


def test_two_column_csv_labels_one_row_requests(tmp_path: Path, mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    table = read_labels_csv(_csv(tmp_path, "request_id,label\nr2,0\nr4,1\nunknown,1\n"))
    labels = apply_label_table(rows, table).labels
    assert (labels[3], labels[6]) == (0.0, 1.0)


def test_two_column_csv_refuses_multi_row_requests(tmp_path: Path, mixed_store: str) -> None:
    rows = load_logged_rows(mixed_store, "m")
    table = read_labels_csv(_csv(tmp_path, "request_id,label\nr1,1\n"))
    with pytest.raises(ConfigError, match="request 'r1' has 3 rows; use the columns"):
        apply_label_table(rows, table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,label\nr1,1\n", "needs a header request_id,label"),
        ("request_id,label\nr1,1\nr2,cat\n", "line 3: label 'cat' is not a number"),
        ("request_id,row,label\nr1,x,1\n", "line 2: row 'x' is not a number"),
        ("request_id,row,label\nr1,0.5,1\n", "every row must be a whole number"),
        ("", "not a readable CSV"),
    ],
)
def test_bad_label_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_labels_csv(_csv(tmp_path, text))


def test_a_missing_label_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels file not found"):
        read_labels_csv(tmp_path / "nope.csv")


def test_non_numeric_predictions_are_a_config_error(tmp_path: Path) -> None:
    url = sqlite_store(tmp_path / "log.db", [record("a", ["cat"], ["dog"])], [])
    with pytest.raises(ConfigError, match="predictions are not numeric"):
        load_logged_rows(url, "m")


def test_non_numeric_stored_labels_are_a_config_error(tmp_path: Path) -> None:
    url = sqlite_store(tmp_path / "log.db", [record("a", [0.2], [0.3])], [Feedback("a", 0, "cat")])
    with pytest.raises(ConfigError, match="label in the store 'cat' is not a number"):
        load_logged_rows(url, "m")


def assert_same_rows(left: LoggedRows, right: LoggedRows) -> None:
    """Every array and flag of two readings, equal (NaN where NaN)."""
    for name in ("request_ids", "challenger_served", "fallback", "row_offsets", "labels"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    for arm in ("champion", "challenger"):
        a, b = getattr(left, arm), getattr(right, arm)
        for name in ("invoked", "failed", "predicted", "skipped", "latency_ms", "scores"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert (a.version, a.list_valued) == (b.version, b.list_valued)
    assert left.n_requests_other_versions == right.n_requests_other_versions


def test_reading_in_chunks_gives_the_same_rows(
    mixed_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = load_logged_rows(mixed_store, "m")
    monkeypatch.setattr(sql_rows, "FETCH_SIZE", 2)  # chunks of 2 records, and of 2 labels
    assert_same_rows(load_logged_rows(mixed_store, "m"), whole)


def test_chunks_that_differ_in_kind_read_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of scalar predictions after one of class probabilities, one where the
    counts come from the inputs: the per-chunk steps must add up to one pass."""
    records = [
        record("a", [[0.9, 0.1]], [[0.8, 0.2]]),
        record("b", [[0.6, 0.4], [0.3, 0.7]], None, challenger_error="timeout"),
        record("c", [0.25], [0.5]),
        record("d", None, None, champion_error="boom", n_inputs=2),
        record("e", [0.75], [0.5]),
    ]
    url = sqlite_store(tmp_path / "log.db", records, [Feedback("b", 1, 1), Feedback("e", 0, 0)])
    whole = load_logged_rows(url, "m")
    monkeypatch.setattr(sql_rows, "FETCH_SIZE", 2)
    chunked = load_logged_rows(url, "m")
    assert_same_rows(chunked, whole)
    assert chunked.champion.list_valued
    np.testing.assert_array_equal(
        chunked.champion.scores, [0.1, 0.4, 0.7, 0.25, np.nan, np.nan, 0.75]
    )
