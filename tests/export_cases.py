"""One log for the export tests, on SQLite (unit) and PostgreSQL (integration): one-row
and multi-row requests, labeled, partly labeled and not, a challenger not invoked,
inputs Arrow cannot type, and what the export wrote before it streamed, to compare."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from contender.predictions import export
from contender.predictions.record import ArmOutcome, Feedback, JsonValue, PredictionRecord
from contender.predictions.store import SqlPredictionStore


def _record(
    index: int, rows: int, *, challenger: bool = True, text: bool = False
) -> PredictionRecord:
    row: list[JsonValue] = [float(index), "x" if text else 2.5]
    return PredictionRecord(
        request_id=f"req-{index:03d}", timestamp=f"2026-01-01T00:00:{index:02d}.000000+00:00",
        model_name="m", inputs={"columns": ["a", "b"], "data": [row] * rows},
        served_by="champion", fallback=False, routing_draw=index / 20, routing_key=None,
        champion=ArmOutcome("1", [[0.4, 0.6]] * rows, 1.5),
        challenger=ArmOutcome("2", [[0.3, 0.7]] * rows, 2.5) if challenger else ArmOutcome(),
    )  # fmt: skip


def fill(store: SqlPredictionStore, *, text_inputs: bool = True) -> None:
    """Eleven records. The first few have no label and no challenger, so a reader that
    typed its columns from the first records alone would get them wrong."""
    records = [_record(i, 1, challenger=False) for i in range(3)]
    records += [_record(i, 3) for i in range(3, 7)]
    records += [_record(i, 1, text=text_inputs and i == 9) for i in range(7, 11)]
    store.append_many(records)
    store.add_feedback(
        [
            Feedback("req-003", 0, 1), Feedback("req-003", 1, 0), Feedback("req-003", 2, 1),
            Feedback("req-004", 1, 1),  # partly labeled: [null, 1, null]
            Feedback("req-005", 7, 1),  # a row the request does not have: no label
            Feedback("req-007", 0, 0), Feedback("req-010", 0, 1),
            Feedback("ghost", 0, 1),
        ]
    )  # fmt: skip


def jsonl_before(store: SqlPredictionStore) -> bytes:
    """What `contender log export --format jsonl` wrote before it streamed: every label
    loaded first (`export.labelled_records`)."""
    out = io.BytesIO()
    export.write_jsonl(export.labelled_records(store), out)
    return out.getvalue()


def csv_before(store: SqlPredictionStore) -> str:
    out = io.StringIO(newline="")
    export.write_csv(export.labelled_records(store), out)
    return out.getvalue()


def parquet_before(store: SqlPredictionStore) -> pa.Table:
    """The parquet export before row groups: one table typed over every value."""
    rows = list(export.labelled_records(store))
    columns: dict[str, Any] = {}
    for field in export.EXPORT_FIELDS:
        values = [row[field] for row in rows]
        try:
            columns[field] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[field] = pa.array(
                [None if v is None else orjson.dumps(v).decode() for v in values]
            )
    return pa.table(columns)


def streamed(store: SqlPredictionStore, fmt: str, tmp_path: Path, row_group: int = 4) -> Any:
    """The export as `contender log export` writes it now; parquet in small row groups."""
    if fmt == "parquet":
        path = tmp_path / "log.parquet"
        with store.reader(snapshot=True) as reader:
            export.write_parquet(
                lambda: export.reader_records(reader), str(path), row_group=row_group
            )
        return pq.ParquetFile(path)
    with store.reader() as reader:
        if fmt == "jsonl":
            binary = io.BytesIO()
            export.write_jsonl(export.reader_records(reader), binary)
            return binary.getvalue()
        text = io.StringIO(newline="")
        export.write_csv(export.reader_records(reader), text)
        return text.getvalue()
