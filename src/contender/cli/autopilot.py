"""`contender autopilot`: apply a promotion policy to one model on its schedule (SPEC 5, 7).

One controller per model, outside the service replicas. Each evaluation builds the report
from the prediction log, evaluates the policy (`policy/evaluate.py`) and promotes (the
code of `contender promote`), rolls back (routing tag: weight 0, testing false) or holds;
the decision and its reason go to the log, to stdout, and to the registry tag
`contender.autopilot` (`policy/autopilot.py`). `--once`: one evaluation, then exit 0.
`--dry-run`: evaluate and print, change nothing in the registry (not even the tag).
Errors the user can fix exit 1 with one line on stderr, no traceback.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from contender.cli.options import DEFAULT_LOG_STORE, LogStore, SelectorOption, TrackingUri
from contender.errors import ContenderError
from contender.settings import Selector

if TYPE_CHECKING:
    from contender.policy.autopilot import Decision

_COLOURS = {"promote": "bold green", "rollback": "bold red", "hold": "yellow"}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _show(decision: Decision) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(soft_wrap=True)
    action = decision.action.value
    dry = " [dim](dry run: nothing changed)[/dim]" if decision.dry_run else ""
    console.print(
        f"[{_COLOURS[action]}]{action}[/{_COLOURS[action]}] {escape(decision.model)} "
        f"challenger {decision.challenger or 'none'} "
        f"[dim]at {decision.evaluated_at.isoformat(timespec='seconds')}, "
        f"streak {decision.streak}[/dim]{dry}"
    )
    console.print(f"  {escape(decision.reason)}")
    for change in decision.changes:
        console.print(f"  [dim]-[/dim] {escape(change)}")


def autopilot(
    model: Annotated[
        str, typer.Option("--model", envvar="CONTENDER_MODEL", help="Registered model name.")
    ],
    policy: Annotated[
        Path, typer.Option("--policy", help="Promotion policy (YAML, SPEC section 7).")
    ],
    once: Annotated[bool, typer.Option("--once", help="Evaluate once, then exit.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Evaluate and print; change nothing in the registry."),
    ] = False,
    tracking_uri: TrackingUri = None,
    log_store: LogStore = DEFAULT_LOG_STORE,
    selector: SelectorOption = Selector.STAGES,
) -> None:
    """Apply a promotion policy on its schedule: promote, roll back or hold."""
    from contender.policy.autopilot import Autopilot, MlflowAutopilotRegistry
    from contender.policy.evaluate import report_for_policy
    from contender.policy.parse import load_policy

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        loaded = load_policy(policy)
        pilot = Autopilot(
            model,
            loaded,
            MlflowAutopilotRegistry(tracking_uri, selector),
            lambda: report_for_policy(log_store, model, loaded),
            dry_run=dry_run,
        )
        # The first evaluation runs here in both modes: a wrong model name or registry
        # fails with exit 1 instead of being retried every interval.
        _show(pilot.step())
        if once:
            return
    except ContenderError as error:
        raise _fail(str(error)) from None

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        typer.echo(
            f"autopilot for {model}: next evaluation in {loaded.evaluation.interval}; Ctrl-C stops",
            err=True,
        )
        pilot.run(stop, on_decision=_show, wait_first=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"autopilot for {model}: stopped", err=True)
