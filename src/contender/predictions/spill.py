"""The spill directory: prediction records and labels the store could not take, as JSONL.

Records go to `spill-*.jsonl` files (a record's row of SPEC section 4 a line), labels to
`labels-*.jsonl` (`{"request_id", "row", "label"}` a line).

Each spill is one file, written as `<name>.jsonl.part`, fsynced, then renamed to
`<name>.jsonl`: a reader never sees a half-written file, and a crash mid-write leaves
only a `.part` file. A loader claims a finished file by renaming it to
`<name>.jsonl.loading-<pid>` (a rename succeeds for one process only, so workers sharing
the directory never load a file twice at once), stores its records (idempotent on
`request_id`) and deletes it. A `.part` or `.loading-<pid>` file whose process is gone
was left by a crash: `contender log recover` loads it too, skipping a torn last line.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from contender.jsonio import dumps
from contender.pids import pid_alive
from contender.predictions.record import Feedback, JsonValue, PredictionRecord

_log = logging.getLogger(__name__)

_OWNED = re.compile(r"-(?P<pid>\d+)-\d+\.jsonl\.part$|\.jsonl\.loading-(?P<loader>\d+)$")


_KINDS = ("spill", "labels")


@dataclass(frozen=True, slots=True)
class Loaded:
    files: int
    records: int
    torn_lines: int
    labels: int = 0


class SpillDirectory:
    def __init__(self, path: str | Path, *, pid: int | None = None) -> None:
        self.path = Path(path)
        self._pid = os.getpid() if pid is None else pid
        self._sequence = 0

    def write(self, records: Sequence[PredictionRecord]) -> Path:
        """Spill `records` to one new file, durably; returns its path."""
        return self._write("spill", (record.to_row() for record in records))

    def write_labels(self, labels: Sequence[Feedback]) -> Path:
        """Spill `labels` to one new file, durably; returns its path."""
        rows = (
            {
                "request_id": i.request_id,
                "row": i.row,
                "label": i.label,
                "received_at": i.received_at,
            }
            for i in labels
        )
        return self._write("labels", rows)

    def _write(self, kind: str, rows: Iterable[dict[str, JsonValue]]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        final = self.path / f"{kind}-{stamp}-{self._pid}-{self._sequence}.jsonl"
        part = final.with_name(final.name + ".part")
        with part.open("wb") as out:
            out.write(b"".join(dumps(row) + b"\n" for row in rows))
            out.flush()
            os.fsync(out.fileno())
        part.rename(final)
        _fsync_directory(self.path)
        return final

    def finished(self) -> list[Path]:
        """Spill files ready to load, oldest first."""
        return self._sorted("jsonl")

    def _sorted(self, suffix: str) -> list[Path]:
        if not self.path.is_dir():
            return []
        paths = [path for kind in _KINDS for path in self.path.glob(f"{kind}-*.{suffix}")]
        return sorted(paths, key=lambda path: path.name.split("-", 1)[1])  # by time

    def orphaned(self) -> list[Path]:
        """Files a process that no longer runs left half-written or half-loaded."""
        if not self.path.is_dir():
            return []
        found = []
        for path in self._sorted("jsonl.*"):
            match = _OWNED.search(path.name)
            if match is None:
                continue
            pid = int(match["pid"] or match["loader"])
            if pid != self._pid and not pid_alive(pid):
                found.append(path)
        return found

    def pending_records(self) -> int:
        """Records and labels in finished spill files (lines; a torn line counts too)."""
        total = 0
        for path in self.finished():
            try:
                with path.open("rb") as source:
                    total += sum(1 for _ in source)
            except FileNotFoundError:  # another worker claimed it meanwhile
                continue
        return total

    def load_into(
        self,
        store_records: Callable[[Sequence[PredictionRecord]], None],
        store_labels: Callable[[Sequence[Feedback]], object],
        *,
        include_orphans: bool = False,
        chunk: int = 5000,
        limit_files: int | None = None,
    ) -> Loaded:
        """Store every finished file (and, with `include_orphans`, what crashed processes
        left), deleting each once it is stored; a file that fails to store is put back."""
        candidates = self.finished() + (self.orphaned() if include_orphans else [])
        files = records = labels = torn = 0
        for path in candidates[:limit_files]:
            claimed = self._claim(path)
            if claimed is None:
                continue
            try:
                rows, torn_here = read_rows(claimed)
                if path.name.startswith("labels-"):
                    parsed_labels = [_label(row) for row in rows]
                    for start in range(0, len(parsed_labels), chunk):
                        store_labels(parsed_labels[start : start + chunk])
                    labels += len(parsed_labels)
                else:
                    parsed = [PredictionRecord.from_row(row) for row in rows]
                    for start in range(0, len(parsed), chunk):
                        store_records(parsed[start : start + chunk])
                    records += len(parsed)
            except Exception:
                claimed.rename(path.with_name(_base_name(path.name)))  # back for a later try
                raise
            claimed.unlink()
            files += 1
            torn += torn_here
        return Loaded(files, records, torn, labels)

    def _claim(self, path: Path) -> Path | None:
        claimed = path.with_name(f"{_base_name(path.name)}.loading-{self._pid}")
        try:
            path.rename(claimed)
        except FileNotFoundError:  # another worker took it
            return None
        return claimed


def read_rows(path: Path) -> tuple[list[dict[str, JsonValue]], int]:
    """The rows of a spill file, and how many lines could not be read (a torn last line
    of a crashed write; anything else torn is logged)."""
    rows: list[dict[str, JsonValue]] = []
    torn = 0
    for number, line in enumerate(iter_lines(path), start=1):
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            torn += 1
            _log.warning("spill file %s line %d is not a record: skipped", path, number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            torn += 1
    return rows, torn


def _label(row: dict[str, JsonValue]) -> Feedback:
    row_number = row["row"]
    if not isinstance(row_number, int):
        raise ValueError(f"a spilled label's row {row_number!r} is not a row number")
    received_at = row.get("received_at")
    return Feedback(
        str(row["request_id"]),
        row_number,
        row["label"],
        received_at if isinstance(received_at, str) else None,
    )


def iter_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        for line in source:
            if line.strip():
                yield line


def _base_name(name: str) -> str:
    """`x.jsonl` from `x.jsonl`, `x.jsonl.part` or `x.jsonl.loading-<pid>`."""
    return name[: name.index(".jsonl") + len(".jsonl")]


def _fsync_directory(path: Path) -> None:
    # The rename is durable only once the directory entry is.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
