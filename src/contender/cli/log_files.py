"""`contender log recover` and `contender log import`: records from files into the store.

`recover` loads the spill directory (records and labels the service wrote during a store
outage, including those a crashed process left half-written), then removes what it loaded.
`import` loads records in the export's JSONL form; a `label` field is stored as feedback.
Both are idempotent on `request_id`: running them twice stores nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from contender.cli.options import DEFAULT_LOG_STORE, LogStore
from contender.errors import ConfigError
from contender.predictions.record import Feedback, JsonValue, PredictionRecord
from contender.predictions.spill import SpillDirectory, iter_lines
from contender.predictions.store import SqlPredictionStore

_CHUNK = 5000


def _open(log_store: str) -> SqlPredictionStore:
    try:
        return SqlPredictionStore(log_store)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--log-store") from error


def recover(
    spill_dir: Annotated[
        Path, typer.Option(envvar="CONTENDER_SPILL_DIR", help="The service's spill directory.")
    ] = Path("contender-spill"),
    log_store: LogStore = DEFAULT_LOG_STORE,
) -> None:
    """Load spilled records and labels into the store, then remove the files it loaded."""
    spill = SpillDirectory(spill_dir)
    pending = spill.finished() + spill.orphaned()
    console = Console(stderr=True, soft_wrap=True)
    if not pending:
        console.print(f"nothing to recover in {spill_dir}")
        return
    store = _open(log_store)
    try:
        with console.status(f"loading {len(pending)} spill files…", spinner="dots"):
            loaded = spill.load_into(store.append_many, store.add_feedback, include_orphans=True)
    except Exception as error:
        console.print(f"[red]error:[/red] the store refused the records: {error}")
        console.print("the files not loaded are still in the spill directory")
        raise typer.Exit(1) from None
    finally:
        store.close()
    torn = f", {loaded.torn_lines} torn lines skipped" if loaded.torn_lines else ""
    labels = f" and {loaded.labels} labels" if loaded.labels else ""
    console.print(f"recovered {loaded.records} records{labels} from {loaded.files} files{torn}")


def _feedback(row: dict[str, JsonValue]) -> list[Feedback]:
    label = row.get("label")
    if label is None:
        return []
    request_id = str(row["request_id"])
    if isinstance(label, list):
        return [
            Feedback(request_id, i, value) for i, value in enumerate(label) if value is not None
        ]
    return [Feedback(request_id, 0, label)]


def import_log(
    file: Annotated[Path, typer.Argument(help="Records in the export's JSONL form.")],
    log_store: LogStore = DEFAULT_LOG_STORE,
) -> None:
    """Load exported records (and their labels) into the store; idempotent on request_id."""
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="FILE")
    total_bytes = file.stat().st_size
    store = _open(log_store)
    records: list[PredictionRecord] = []
    labels: list[Feedback] = []
    imported = 0
    console = Console(stderr=True, soft_wrap=True)
    progress = Progress(TextColumn("importing"), BarColumn(), TaskProgressColumn(), console=console)
    try:
        with progress:
            task = progress.add_task("import", total=total_bytes)
            for number, line in enumerate(iter_lines(file), start=1):
                progress.advance(task, len(line))
                try:
                    row = orjson.loads(line)
                    records.append(PredictionRecord.from_row(row))
                except KeyError as error:
                    console.print(f"[red]error:[/red] {file}:{number} has no field {error}")
                    raise typer.Exit(1) from None
                except (orjson.JSONDecodeError, TypeError, AttributeError) as error:
                    console.print(f"[red]error:[/red] {file}:{number} is not a record: {error}")
                    raise typer.Exit(1) from None
                labels.extend(_feedback(row))
                if len(records) >= _CHUNK:
                    imported += _flush(store, records, labels)
            imported += _flush(store, records, labels)
    finally:
        store.close()
    console.print(
        f"imported {imported} records from {file} (already stored ones left as they were)"
    )


def _flush(
    store: SqlPredictionStore, records: list[PredictionRecord], labels: list[Feedback]
) -> int:
    count = len(records)
    store.append_many(records)
    # Labels after their records, so none is reported as an orphan.
    if labels:
        store.add_feedback(labels)
    records.clear()
    labels.clear()
    return count
