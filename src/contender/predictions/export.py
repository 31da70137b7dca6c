"""The prediction log as files: one row per record, SPEC section 4 fields plus `label`."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from contender.predictions.record import RECORD_FIELDS, JsonValue
from contender.predictions.store import PredictionStore

EXPORT_FIELDS = (*RECORD_FIELDS, "label")
NESTED_FIELDS = ("inputs", "champion_predictions", "challenger_predictions", "label")


def labelled_records(store: PredictionStore) -> Iterator[dict[str, JsonValue]]:
    """Records with their labels: a scalar for one-row requests, else a row-aligned list."""
    labels = store.labels()
    for record in store.iter_records():
        record["label"] = _label_of(record, labels)
        yield record


def _label_of(record: dict[str, Any], labels: dict[tuple[str, int], JsonValue]) -> JsonValue:
    request_id = record["request_id"]
    rows = len(record["inputs"].get("data", [])) if isinstance(record["inputs"], dict) else 1
    if rows <= 1:
        return labels.get((request_id, 0))
    row_labels = [labels.get((request_id, row)) for row in range(rows)]
    return row_labels if any(label is not None for label in row_labels) else None


def write_jsonl(records: Iterable[dict[str, JsonValue]], out: IO[bytes]) -> int:
    count = 0
    for record in records:
        out.write(orjson.dumps(record) + b"\n")
        count += 1
    return count


def write_csv(records: Iterable[dict[str, JsonValue]], out: IO[str]) -> int:
    """CSV cannot nest: nested values are written as JSON text."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS)
    writer.writeheader()
    count = 0
    for record in records:
        row = dict(record)
        for field in NESTED_FIELDS:
            if row[field] is not None:
                row[field] = orjson.dumps(row[field]).decode()
        writer.writerow(row)
        count += 1
    return count


def write_parquet(records: Iterable[dict[str, JsonValue]], path: str) -> int:
    """Nested values as Arrow lists and structs; a column Arrow cannot type (mixed types
    in one list) falls back to JSON text rather than failing the export."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records)
    columns: dict[str, Any] = {}
    for field in EXPORT_FIELDS:
        values = [row[field] for row in rows]
        try:
            columns[field] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[field] = pa.array(
                [None if v is None else orjson.dumps(v).decode() for v in values]
            )
    pq.write_table(pa.table(columns), path)
    return len(rows)
