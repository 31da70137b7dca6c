"""The demo's narrative: eight steps, each doing one thing and saying what it showed.

`run` owns the service's lifetime: whatever happens (an error, Ctrl-C), the service is
stopped with SIGTERM before `run` returns or raises. Every wait has a deadline.
"""

from __future__ import annotations

import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from contender.demo import commands, models, narrate, traffic
from contender.demo.service import DemoError, Service, ServiceConfig, free_port, wait_until
from contender.demo.workspace import Workspace

READY_TIMEOUT_S = 120.0
PICKUP_TIMEOUT_S = 60.0
LOG_TIMEOUT_S = 20.0
AFTER_SWITCH_REQUESTS = 20
REPLAY_REQUESTS = 200
"""Champion-only requests the candidate is replayed on before it goes live."""


@dataclass(frozen=True)
class DemoOptions:
    root: Path
    n_requests: int = 4400
    port: int = 0
    """0: any free port."""
    keep_running: bool = False


@dataclass(frozen=True)
class _Context:
    console: Console
    workspace: Workspace
    data: models.DemoData
    pair: models.RegisteredPair


def run(options: DemoOptions, console: Console) -> None:
    started = time.monotonic()
    workspace = Workspace(options.root)
    data, pair = _registry(console, workspace)
    context = _Context(console, workspace, data, pair)
    config = ServiceConfig(
        model=pair.name,
        port=options.port or free_port(),
        admin_token=secrets.token_urlsafe(24),
    )
    with traffic.new_client() as client:
        service = Service(workspace, config)
        try:
            _serve(context, service, client)
            offline = _replay(context, service, client)
            _traffic(context, service, client, options.n_requests, offline)
            _report(context)
            _promote(context, service, client, config.admin_token)
            if options.keep_running:
                _keep_running(console, service)
        finally:
            status = service.stop()
        _wrap_up(context, status, time.monotonic() - started)


def _registry(
    console: Console, workspace: Workspace
) -> tuple[models.DemoData, models.RegisteredPair]:
    narrate.step(console, 1, "A local MLflow registry")
    removed = workspace.reset()
    if removed:
        console.print(
            f"Cleared the previous run's files in {workspace.root}/: {', '.join(removed)}"
        )
    console.print(
        f"Tracking and registry store [cyan]{workspace.tracking_uri}[/], "
        f"artifacts under [cyan]{workspace.artifacts}/[/]."
    )
    narrate.step(console, 2, "Two real models, trained and registered")
    data = models.make_data()
    with console.status("training both models on the same data..."):
        champion, challenger = models.train(data)
    console.print(
        f"Synthetic churn data (scikit-learn make_classification, seed {models.SEED}): "
        f"{len(data.train):,} training rows, {len(data.holdout):,} held out for the traffic."
    )
    with console.status("logging and registering both models in MLflow..."):
        pair = models.register(workspace, data, champion, challenger)
    console.print(narrate.candidates_table(pair, champion, challenger, len(data.holdout)))
    console.print(
        "The registry says who is who: the latest [bold]Production[/] version is the "
        "champion, the latest [bold]Staging[/] version the challenger. Version "
        f"{pair.challenger_version} has no stage yet: the service starts with the "
        "champion alone."
    )
    return data, pair


def _serve(context: _Context, service: Service, client: httpx.Client) -> None:
    console = context.console
    narrate.step(console, 3, "contender serve")
    narrate.command_line(console, service.command)
    console.print(f"pid {service.pid}, output in [cyan]{service.log_path}[/]")
    with console.status("waiting for the service to load the champion..."):
        ready_s = service.wait_ready(client, READY_TIMEOUT_S)
    status = client.get(f"{service.url}/status").json()
    console.print(f"Ready after {ready_s:.1f} s at [bold cyan]{service.url}[/]")
    console.print(narrate.status_line(status))


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _send(context: _Context, service: Service, client: httpx.Client, first: int, n: int) -> int:
    """`n` one-row requests from held-out row `first` on (cycling past the end), then
    their labels; the labels accepted. The log already holds `first` records: DemoError
    when a request fails or the log does not reach `first + n` records in time."""
    console, data = context.console, context.data
    # Past the held-out rows' end the traffic starts over: more requests, same rows.
    order = (first + np.arange(n)) % len(data.holdout)
    rows, labels = data.holdout.iloc[order].reset_index(drop=True), data.holdout_labels[order]
    with _progress(console) as progress:
        task = progress.add_task("POST /invocations", total=n)
        answers = traffic.send_traffic(client, service.url, rows, lambda: progress.advance(task))
    failed = [answer for answer in answers if not answer.ok]
    if failed:
        raise DemoError(f"{len(failed)} of {n} requests failed; first: {failed[0].error}")
    accepted = traffic.send_feedback(client, service.url, answers, labels)
    expected = first + n
    summary = traffic.wait_for_log(context.workspace.log_store, expected, LOG_TIMEOUT_S)
    if summary.n_records < expected:
        raise DemoError(f"only {summary.n_records} of {expected} records reached the log")
    return accepted


def _replay(context: _Context, service: Service, client: httpx.Client) -> str:
    """The replay's verdict."""
    from contender.analysis.report import ReportOptions, build_report

    console, workspace, pair = context.console, context.workspace, context.pair
    candidate = pair.challenger_version
    narrate.step(console, 4, "Replay: the candidate on logged traffic, before it goes live")
    console.print(
        f"{REPLAY_REQUESTS} requests of one held-out row each, answered by the champion "
        f"alone, and their labels: the prediction log now holds real inputs. "
        f"`contender replay` scores them offline with version {candidate}; no client "
        "ever sees its answers."
    )
    _send(context, service, client, 0, REPLAY_REQUESTS)
    result = commands.run(
        commands.replay_command(workspace, pair.name, candidate), console.width - 2
    )
    narrate.command_line(console, result.command)
    narrate.command_output(console, result)
    report = build_report(workspace.log_store, pair.name, options=ReportOptions(replay=candidate))
    for line in narrate.replay_lines(report):
        console.print(line)
    return report.verdict.decision.value


def _go_live(context: _Context, service: Service, client: httpx.Client, offline: str) -> None:
    console, pair = context.console, context.pair
    candidate = pair.challenger_version
    console.print(
        (
            "Promising offline, so it goes live"
            if offline == "promote"
            else "Better on these rows, but 200 cannot settle it: the always-valid interval "
            "still holds 0, and the demo never promotes on a hunch. So it goes live, "
            "to gather the evidence"
        )
        + f": version {candidate} moves to [bold]Staging[/] "
        "in the registry (the change a user makes, in the MLflow UI or its client). The "
        "running service finds it at its next registry poll and loads it."
    )
    staged_at = time.monotonic()
    models.stage_challenger(context.workspace, pair)
    with console.status("waiting for the service to load the challenger..."):
        status = _wait_for_status(service, client, "challenger", candidate)
    console.print(
        f"Loaded {time.monotonic() - staged_at:.1f} s after the registry change. "
        + narrate.status_line(status)
    )


def _traffic(
    context: _Context, service: Service, client: httpx.Client, n: int, offline: str
) -> None:
    console = context.console
    narrate.step(console, 5, "The challenger goes live: Staging, traffic, ground truth")
    _go_live(context, service, client, offline)
    console.print(
        f"{n:,} more requests to {service.url}/invocations, one at a time. Both models "
        "score every request; the challenger answers about half of them "
        "(--challenger-weight 0.5: enough answers from each for a p99 latency that can "
        "be judged), the champion the rest. Then their labels to "
        f"{service.url}/feedback (ground truth usually arrives later: a customer churns "
        "or not)."
    )
    accepted = _send(context, service, client, REPLAY_REQUESTS, n)
    summary = traffic.read_log(context.workspace.log_store)
    console.print(f"{accepted:,} labels accepted. What the prediction log says (both steps):")
    console.print(narrate.served_table(summary))
    console.print(narrate.log_line(summary))


def _report(context: _Context) -> None:
    from contender.analysis.render_html import render_html
    from contender.analysis.render_terminal import render_terminal
    from contender.analysis.report import build_report

    console, workspace = context.console, context.workspace
    narrate.step(console, 6, "The report")
    narrate.command_line(console, narrate.report_command(workspace, context.pair.name))
    report = build_report(workspace.log_store, context.pair.name)
    render_terminal(report, console)
    console.print(
        f"Coverage counts the {REPLAY_REQUESTS} requests of step 4 as not invoked (same "
        "champion, challenger not live yet); the metrics use only the rows both scored."
    )
    workspace.report_html.write_text(render_html(report), encoding="utf-8")
    console.print(f"HTML report (ROC and PR curves, latency): [cyan]{workspace.report_html}[/]")
    if report.verdict.decision.value != "promote":
        raise DemoError(
            f"the verdict is {report.verdict.decision.value}, not promote "
            f"({report.verdict.reason}); the demo promotes only on the report's say-so"
        )


def _promote(context: _Context, service: Service, client: httpx.Client, token: str) -> None:
    console, pair = context.console, context.pair
    narrate.step(console, 7, "Promotion, picked up by the running service")
    console.print(
        "The verdict is promote, so `contender promote` agrees without --force (it checks "
        "the verdict itself). Meanwhile a client keeps sending requests, one at a time."
    )
    with traffic.BackgroundTraffic(client, service.url, context.data.holdout) as background:
        result = commands.run(
            commands.promote_command(context.workspace, pair.name), console.width - 2
        )
        promoted_at = time.monotonic()
        narrate.command_line(console, result.command)
        narrate.command_output(console, result)
        with console.status("waiting for the service's next registry poll..."):
            status = _wait_for_status(service, client, "champion", pair.challenger_version)
        pickup_s = time.monotonic() - promoted_at
        time.sleep(0.5)  # a few more requests after the swap, still in the background
    during = background.stop()
    when = (
        "before the command had even returned"
        if pickup_s < 0.1
        else f"{pickup_s:.1f} s after the command returned"
    )
    console.print(
        f"[bold green]The service picked up the new champion[/] (version "
        f"{pair.challenger_version}) by itself, {when}: its registry poll saw the change, "
        "reused the already loaded challenger and swapped the routing table. No restart."
    )
    console.print(narrate.status_line(status))
    _check_switch(console, during)
    _admin_reload(console, service, client, token)
    _after_switch(context, service, client)


def _admin_reload(console: Console, service: Service, client: httpx.Client, token: str) -> None:
    console.print(
        "An operator need not wait for the poll: the admin endpoint polls at once "
        "(a bearer token, CONTENDER_ADMIN_TOKEN, guards it)."
    )
    answer = client.post(
        f"{service.url}/admin/reload", headers={"Authorization": f"Bearer {token}"}
    )
    if answer.status_code != 200:
        raise DemoError(f"POST /admin/reload answered {answer.status_code}: {answer.text[:300]}")
    console.print(narrate.reload_line(answer.json()))


def _wait_for_status(
    service: Service, client: httpx.Client, slot: str, version: str
) -> dict[str, Any]:
    """`/status` once its `slot` (champion or challenger) is `version`, with a deadline."""
    seen: dict[str, Any] = {}

    def loaded() -> bool:
        seen.update(client.get(f"{service.url}/status", timeout=5.0).json())
        return (seen.get(slot) or {}).get("version") == version

    wait_until(loaded, PICKUP_TIMEOUT_S, f"{slot} version {version}", service.log_path)
    return seen


def _check_switch(console: Console, during: list[traffic.Answer]) -> None:
    failed = [answer for answer in during if not answer.ok]
    console.print(narrate.switch_line(during, len(failed)))
    if failed:
        raise DemoError(f"{len(failed)} requests failed during the switch: {failed[0].error}")


def _after_switch(context: _Context, service: Service, client: httpx.Client) -> None:
    console, pair = context.console, context.pair
    rows = context.data.holdout
    answers = [
        traffic.score_row(client, service.url, rows, row) for row in range(AFTER_SWITCH_REQUESTS)
    ]
    console.print(narrate.after_switch_table(answers))
    wrong = [a for a in answers if not a.ok or a.version != pair.challenger_version]
    if wrong:
        raise DemoError(
            f"{len(wrong)} requests after the switch were not served by the new champion"
        )


def _keep_running(console: Console, service: Service) -> None:
    console.print(
        f"\nThe service stays up at [bold cyan]{service.url}[/] "
        f"(try: curl -s {service.url}/status). Press Ctrl-C to stop it."
    )
    try:
        while service.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print()
    if not service.alive():
        raise DemoError(f"the service exited on its own; see {service.log_path}")


def _wrap_up(context: _Context, status: int | None, elapsed_s: float) -> None:
    console, workspace = context.console, context.workspace
    narrate.step(console, 8, "Stopped; where everything is")
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
    if status not in (0, -signal.SIGTERM):
        raise DemoError(f"the service exited with status {status}; see {workspace.service_log}")
    summary = traffic.read_log(workspace.log_store)
    console.print(
        "SIGTERM: the service drained its log writer and stopped. The log holds "
        f"{summary.n_records:,} records ({summary.n_labeled:,} labeled)."
    )
    console.print(narrate.files_table(workspace))
    narrate.explore(console, workspace, context.pair.name)
    console.print(f"\n[bold]Demo finished in {elapsed_s:.0f} s.[/]")
