"""The prediction log as files: one row per record, SPEC section 4 fields plus `label`.

Every format streams in bounded memory: records come from the store in chunks, and
each chunk's labels are looked up by its request ids (not all labels first). Parquet
goes in row groups of `PARQUET_ROW_GROUP` records (fewer for many-row requests), over
two passes in one snapshot of the store: the first finds each column's Arrow type over
the whole log, the second writes, so every row group has the same schema, the one a
single table of all the records would have.
"""

from __future__ import annotations

import csv
import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import orjson

from contender.predictions.record import RECORD_FIELDS, JsonValue
from contender.predictions.store import LogReader, PredictionStore

EXPORT_FIELDS = (*RECORD_FIELDS, "label")
NESTED_FIELDS = ("inputs", "champion_predictions", "challenger_predictions", "label")
PARQUET_ROW_GROUP = 50_000
PARQUET_GROUP_ROWS = 200_000
"""Input rows at most per parquet row group (`_groups`)."""


@contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic collector off while a long export runs: a chunk of records and
    their nested values, alive while its labels are read, made it rescan them over and
    over (about 1.5x the time of a million-record export). An export makes no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def labelled_records(
    store: PredictionStore, since: datetime | None = None
) -> Iterator[dict[str, JsonValue]]:
    """Records with their labels: a scalar for one-row requests, else a row-aligned list.
    Any store; `reader_records` streams a SQL store's labels with its records."""
    labels = store.labels()
    for record in store.iter_records(since):
        record["label"] = _label_of(record, labels)
        yield record


def reader_records(
    reader: LogReader, since: datetime | None = None
) -> Iterator[dict[str, JsonValue]]:
    """What `labelled_records` gives, in bounded memory: the labels of each chunk of
    records are read with it."""
    for chunk in reader.record_chunks(since):
        labels = reader.labels_for(str(record["request_id"]) for record in chunk)
        for record in chunk:
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


def _groups(
    records: Iterable[dict[str, JsonValue]], size: int
) -> Iterator[list[dict[str, JsonValue]]]:
    """Row groups of `size` records, or fewer when their requests have many rows: at
    most `PARQUET_GROUP_ROWS` input rows, so that a group of 100-row requests does not
    hold gigabytes of Python lists."""
    group: list[dict[str, JsonValue]] = []
    rows = 0
    for record in records:
        group.append(record)
        inputs = record.get("inputs")
        data = inputs.get("data") if isinstance(inputs, dict) else None
        rows += len(data) if isinstance(data, list) else 1
        if len(group) >= size or rows >= PARQUET_GROUP_ROWS:
            yield group
            group, rows = [], 0
    if group:
        yield group


_AS_JSON_TEXT = None
"""A column's type in `_column_types` when Arrow cannot type it: JSON text instead."""


def _column_types(records: Iterable[dict[str, JsonValue]], row_group: int) -> dict[str, Any]:
    """Each field's Arrow type over all the records: inferred per row group, and merged
    as one inference over every value would (null takes any type, int64 widens to
    double, structs gain fields); a field Arrow cannot type in some group, or whose
    groups' types do not merge (a list and a scalar), is `_AS_JSON_TEXT`."""
    import pyarrow as pa

    types: dict[str, Any] = {field: pa.null() for field in EXPORT_FIELDS}
    for group in _groups(records, row_group):
        for field in EXPORT_FIELDS:
            known = types[field]
            if known is _AS_JSON_TEXT:
                continue
            try:
                found = pa.array([row[field] for row in group]).type
                types[field] = (
                    pa.unify_schemas(
                        [pa.schema([(field, known)]), pa.schema([(field, found)])],
                        promote_options="permissive",
                    )
                    .field(field)
                    .type
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                types[field] = _AS_JSON_TEXT
    return types


def write_parquet(
    records: Callable[[], Iterable[dict[str, JsonValue]]],
    path: str,
    *,
    row_group: int = PARQUET_ROW_GROUP,
) -> int:
    """Nested values as Arrow lists and structs; a column Arrow cannot type (mixed types
    in one list) falls back to JSON text rather than failing the export. `records` is
    called twice and must give the same records both times (the module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = _column_types(records(), row_group)
    schema = pa.schema(
        [(field, pa.string() if kind is _AS_JSON_TEXT else kind) for field, kind in types.items()]
    )
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for group in _groups(records(), row_group):
            columns = []
            for field in EXPORT_FIELDS:
                values = [row[field] for row in group]
                if types[field] is _AS_JSON_TEXT:
                    texts = [None if v is None else orjson.dumps(v).decode() for v in values]
                    columns.append(pa.array(texts, type=pa.string()))
                else:
                    columns.append(pa.array(values, type=types[field]))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema), row_group)
            count += len(group)
    return count
