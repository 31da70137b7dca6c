"""`contender log export`: the prediction log to jsonl, csv or parquet."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contender.cli.options import DEFAULT_LOG_STORE, LogStore, Since
from contender.errors import ConfigError
from contender.predictions import export
from contender.predictions.record import JsonValue
from contender.predictions.store import SqlPredictionStore

log_app = typer.Typer(help="The prediction log.", no_args_is_help=True)


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


@log_app.command("export")
def export_log(
    log_store: LogStore = DEFAULT_LOG_STORE,
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.JSONL
    ),
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File to write; stdout without it.")
    ] = None,
    since: Since = None,
) -> None:
    """Export every record, with the fields of the log and its `label` joined."""
    from contender.analysis.load import parse_since

    if format is ExportFormat.PARQUET and output is None:
        raise typer.BadParameter("parquet is binary: give a file with -o", param_hint="--format")
    try:
        since_at = parse_since(since) if since is not None else None
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from error
    try:
        store = SqlPredictionStore(log_store)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--log-store") from error
    console = Console(stderr=True)
    try:
        with console.status("exporting the prediction log…", spinner="dots"), export.paused_gc():
            count = _write(store, format, output, since_at)
    finally:
        store.close()
    if output is not None:
        console.print(f"wrote {count} records to {output}")


def _write(
    store: SqlPredictionStore, format: ExportFormat, output: Path | None, since: datetime | None
) -> int:
    """Streams: records and their labels chunk by chunk; parquet reads the log twice, in
    one snapshot (`export.write_parquet`)."""
    if format is ExportFormat.PARQUET:
        assert output is not None  # checked by the caller
        with store.reader(snapshot=True) as reader:
            return export.write_parquet(lambda: export.reader_records(reader, since), str(output))
    with store.reader() as reader:
        return _write_text(export.reader_records(reader, since), format, output)


def _write_text(
    records: Iterator[dict[str, JsonValue]], format: ExportFormat, output: Path | None
) -> int:
    if format is ExportFormat.JSONL:
        if output is None:
            return export.write_jsonl(records, sys.stdout.buffer)
        with output.open("wb") as out:
            return export.write_jsonl(records, out)
    if output is None:
        return export.write_csv(records, sys.stdout)
    with output.open("w", newline="") as text_out:
        return export.write_csv(records, text_out)
