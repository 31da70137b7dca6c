"""How much of a measured run both arms scored, read from the server's own log store.

A contender server logs one record per request (SPEC section 4), written off the
request path within about 2 s, and later still when its shadow work queues. After a
run, `settle` reads the records whose `timestamp` (the request's arrival) falls
inside the run's window, so warm-up and answer-check requests are left out, and
reads again every `POLL_S` until the count stops growing: it is done once it has
at least as many records as wrk counted answers and one poll saw no new one, or
after `QUIET_S` without a new record, or at `DEADLINE_S` (then `settled` is false).

The store is SQLite (WAL), read with the standard library's `sqlite3`, never
written. SQLAlchemy stores a JSON `None` as the text `null`, so a prediction counts
as present when it is neither SQL NULL nor `null`. A store without the
`challenger_skipped` column (written by contender 0.1.0) reads as nothing skipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

POLL_S = 0.5
QUIET_S = 3.0
DEADLINE_S = 120.0


@dataclass(frozen=True)
class Coverage:
    records: int  # records of requests that arrived during the measured run
    both_scored: int  # champion_predictions and challenger_predictions both present
    challenger_skipped: dict[str, int] = field(default_factory=dict)  # by reason
    challenger_errors: int = 0  # records with a challenger_error
    settled: bool = True  # the count stopped growing before the deadline
    wait_s: float = 0.0  # how long after the run the count took to settle

    @property
    def share(self) -> float | None:
        """The share of the run's requests that both arms scored."""
        return self.both_scored / self.records if self.records else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


def coverage_from_json(data: dict[str, Any] | None) -> Coverage | None:
    if data is None:
        return None
    return Coverage(**{k: v for k, v in data.items() if k != "share"})


def settle(db_path: Path, started_at: datetime, ended_at: datetime, *, expected: int) -> Coverage:
    """Poll the store until the run's records stop arriving; returns their coverage."""
    begun = time.monotonic()
    last_count, last_change = -1, begun
    while True:
        rows = _read(db_path, started_at, ended_at)
        now = time.monotonic()
        if len(rows) != last_count:
            last_count, last_change = len(rows), now
        quiet_s = now - last_change
        if (last_count >= expected and quiet_s >= POLL_S) or quiet_s >= QUIET_S:
            return _coverage(rows, settled=True, wait_s=last_change - begun)
        if now - begun >= DEADLINE_S:
            return _coverage(rows, settled=False, wait_s=now - begun)
        time.sleep(POLL_S)


Row = tuple[bool, bool, str | None]


def _read(db_path: Path, started_at: datetime, ended_at: datetime) -> list[Row]:
    """(both scored, challenger error, challenger_skipped) per record in the window."""
    # A coarse, index-friendly bound in SQL; the exact window is applied on parsed times.
    lower = (started_at - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    try:
        connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.OperationalError:
        return []  # the server has not created its store yet
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(predictions)")}
        skipped = "challenger_skipped" if "challenger_skipped" in columns else "NULL"
        # The only interpolation is a column name chosen above, never outside text.
        query = f"""
            SELECT timestamp,
                   COALESCE(champion_predictions, 'null') != 'null'
                   AND COALESCE(challenger_predictions, 'null') != 'null',
                   challenger_error IS NOT NULL,
                   {skipped}
            FROM predictions WHERE timestamp >= ?
        """
        found = connection.execute(query, (lower,)).fetchall()
    except sqlite3.OperationalError:
        return []  # no table yet
    finally:
        connection.close()
    return [
        (bool(both), bool(error), skip)
        for stamp, both, error, skip in found
        if started_at <= _parse(stamp) <= ended_at
    ]


def _parse(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _coverage(rows: list[Row], *, settled: bool, wait_s: float) -> Coverage:
    skipped = Counter(skip for _, _, skip in rows if skip is not None)
    return Coverage(
        records=len(rows),
        both_scored=sum(1 for both, _, _ in rows if both),
        challenger_skipped=dict(sorted(skipped.items())),
        challenger_errors=sum(1 for _, error, _ in rows if error),
        settled=settled,
        wait_s=round(wait_s, 2),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
