"""`contender replay`: score logged inputs with a version offline (SPEC section 5).

Loads the version through the service's own loader (any pyfunc flavour, warmed on its
input example), scores the logged inputs of the model in batches with a progress bar and
stores the predictions beside the records; `contender report --replay V` then compares
V with the champion on exactly those rows. Re-running stores nothing twice and picks up
where an interrupted run stopped. Errors the user can fix: one line, exit status 1.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from contender.cli.options import DEFAULT_LOG_STORE, LogStore, Since, TrackingUri
from contender.errors import ContenderError

_INTERRUPTED = 130


def replay(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    version: Annotated[str, typer.Option("--version", help="The version to score with.")],
    log_store: LogStore = DEFAULT_LOG_STORE,
    since: Since = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many records (oldest).")
    ] = None,
    tracking_uri: TrackingUri = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", min=1, help="Input rows scored per predict call.")
    ] = 10_000,
) -> None:
    """Score the logged inputs with VERSION offline and store its predictions."""
    from contender.analysis.load import open_engine, parse_since
    from contender.clock import SystemClock
    from contender.predictions.store import SqlPredictionStore
    from contender.registry.loader import MlflowModelLoader
    from contender.registry.promotion import MlflowRegistryEditor
    from contender.replay.run import replay as run_replay
    from contender.replay.source import ReplaySource, Selection

    console = Console(stderr=True, soft_wrap=True)
    try:
        selection = Selection(
            model, version, parse_since(since) if since is not None else None, limit
        )
        open_engine(log_store).dispose()  # a missing SQLite file is an error, not a new store
        store = SqlPredictionStore(log_store)  # brings the store's tables up to date
        ref = MlflowRegistryEditor(tracking_uri).version(model, version)
        with console.status(f"loading {model} version {version}…", spinner="dots"):
            loaded = MlflowModelLoader(tracking_uri, SystemClock())(ref)
    except ContenderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    progress = Progress(
        TextColumn(f"replaying version {version}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeRemainingColumn(),
        console=console,
    )
    task = progress.add_task("replay", total=None)
    try:
        with progress:
            summary = run_replay(
                ReplaySource(store.engine, selection),
                loaded,
                batch_rows=batch_rows,
                on_start=lambda pending: progress.update(task, total=pending),
                on_batch=lambda records: progress.advance(task, records),
            )
    except ContenderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        done = int(progress.tasks[0].completed)
        console.print(f"interrupted after {done} records; run it again to resume")
        raise typer.Exit(_INTERRUPTED) from None
    finally:
        store.close()
    if summary.in_scope == 0:
        console.print(f"no logged records of {model} to replay")
        return
    rate = f" ({summary.rows / summary.seconds:,.0f} rows/s)" if summary.seconds > 0 else ""
    console.print(
        f"version {version}: scored {summary.scored:,} records ({summary.rows:,} rows) in "
        f"{summary.seconds:.1f} s{rate}; {summary.already:,} were already replayed"
    )
    if summary.n_unfit:
        console.print(
            f"[yellow]{summary.n_unfit:,} records could not be scored[/yellow] (stored with "
            "the reason; the report leaves them out):"
        )
        for reason, count in summary.unfit.most_common(5):
            console.print(f"  {count:,} x {reason}")
    console.print(f"compare: contender report --model {model} --replay {version}")
