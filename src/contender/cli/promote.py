"""`contender promote` and `contender rollback`: change which version is champion.

Both write the registry only (`registry/promotion.py`); running services follow at their
next poll. `promote` refuses unless the report's verdict on the prediction log is
`promote`, or `--force` says to go ahead. Errors the user can fix exit with status 1 and
one line on stderr, no traceback. MLflow and the analysis modules are imported inside
the commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contender.cli.options import DEFAULT_LOG_STORE, LogStore, SelectorOption, TrackingUri
from contender.errors import ConfigError, ContenderError
from contender.settings import Selector

if TYPE_CHECKING:
    from contender.registry.promotion import SlotChange


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _check_verdict(log_store: str, model: str, labels: Path | None, version: str) -> str:
    """The report's reason when its verdict is `promote`; ConfigError otherwise."""
    from contender.analysis.report import latest_verdict

    try:
        verdict, reason, judged = latest_verdict(log_store, model, labels_csv=labels)
    except ConfigError as error:
        raise ConfigError(
            f"cannot read the report's verdict: {error} (--force promotes anyway)"
        ) from error
    if judged != version:
        raise ConfigError(
            f"the report judged challenger version {judged}, but the registry's challenger "
            f"is version {version}: let it see traffic and ground truth first "
            "(--force promotes anyway)"
        )
    if verdict != "promote":
        raise ConfigError(
            f"the report's verdict is {verdict!r}, not 'promote': {reason}; "
            f"version {version} stays the challenger (--force promotes anyway)"
        )
    return reason


def _show(change: SlotChange, headline: str) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)
    console.print(headline)
    for step in change.steps:
        console.print(f"  [dim]-[/dim] {step}")
    for note in change.notes:
        console.print(f"  [yellow]note:[/yellow] {note}")
    challenger = f"version {change.challenger}" if change.challenger else "none"
    console.print(f"champion: version {change.champion}, challenger: {challenger}")
    console.print("Running services follow at their next registry poll.")


def promote(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    tracking_uri: TrackingUri = None,
    selector: SelectorOption = Selector.STAGES,
    force: Annotated[
        bool, typer.Option("--force", help="Promote whatever the report's verdict.")
    ] = False,
    log_store: LogStore = DEFAULT_LOG_STORE,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="CSV with request_id,label for the verdict."),
    ] = None,
) -> None:
    """Make the challenger the champion, if the report's verdict is `promote`."""
    from contender.registry.promotion import MlflowRegistryEditor

    try:
        editor = MlflowRegistryEditor(tracking_uri)
        challenger = editor.challenger(model, selector)
        why = (
            "--force: the report's verdict was not checked"
            if force
            else f"verdict promote: {_check_verdict(log_store, model, labels, challenger.version)}"
        )
        change = editor.promote(model, selector)
    except ContenderError as error:
        raise _fail(str(error)) from None
    _show(change, f"[bold green]Promoted[/bold green] {model} version {change.champion} ({why})")


def rollback(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    to: Annotated[str, typer.Option("--to", help="The version to make champion again.")],
    tracking_uri: TrackingUri = None,
    selector: SelectorOption = Selector.STAGES,
) -> None:
    """Make VERSION the champion again; the challenger is left as it is."""
    from contender.registry.promotion import MlflowRegistryEditor

    try:
        change = MlflowRegistryEditor(tracking_uri).rollback(model, selector, to)
    except ContenderError as error:
        raise _fail(str(error)) from None
    if not change.steps:
        typer.echo(f"Nothing to do: version {to} of {model} is already the champion.")
        return
    _show(change, f"[bold green]Rolled back[/bold green] {model} to version {change.champion}")
