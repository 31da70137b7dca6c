"""How the demo's steps look on the terminal: headings, command lines and small tables."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from contender.demo.commands import CommandResult
from contender.demo.models import Candidate, RegisteredPair
from contender.demo.traffic import Answer, LogSummary
from contender.demo.workspace import Workspace

if TYPE_CHECKING:
    from contender.analysis.report import Report

TOTAL_STEPS = 8


def step(console: Console, number: int, title: str) -> None:
    console.print()
    console.rule(f"[bold]{number}/{TOTAL_STEPS}  {title}", align="left")


def command_line(console: Console, command: Sequence[str], indent: int = 0) -> None:
    """A command to copy: soft-wrapped, so the terminal folds it without inserting breaks."""
    line = Text.assemble((" " * indent + "$ ", "dim"), (shlex.join(command), "bold"))
    console.print(line, soft_wrap=True)


def command_output(console: Console, result: CommandResult) -> None:
    console.print(Padding(Text(result.output, style="dim"), (0, 0, 0, 2)))


def report_command(workspace: Workspace, model: str) -> list[str]:
    return [
        "contender",
        "report",
        "--model",
        model,
        "--log-store",
        workspace.log_store,
        "--html",
        str(workspace.report_html),
    ]


def _version(slot: dict[str, Any] | None) -> str:
    return f"version {slot['version']}" if slot else "none"


def status_line(status: dict[str, Any]) -> str:
    return (
        f"GET /status: champion [bold]{_version(status.get('champion'))}[/], "
        f"challenger [bold]{_version(status.get('challenger'))}[/], "
        f"challenger weight {status.get('challenger_weight')}"
    )


def reload_line(answer: dict[str, Any]) -> str:
    challenger = answer.get("challenger")
    changed = "changed" if answer.get("changed") else "nothing new"
    return (
        f"POST /admin/reload: {changed}; champion "
        f"[bold]version {answer.get('champion')}[/], challenger "
        f"[bold]{'version ' + str(challenger) if challenger else 'none'}[/]"
    )


def candidates_table(
    pair: RegisteredPair, champion: Candidate, challenger: Candidate, n_holdout: int
) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"registered model [bold]{pair.name}[/]",
        caption=f"AUC on the {n_holdout:,} held-out rows",
    )
    for column in ("version", "stage", "role", "model", "AUC"):
        table.add_column(column, justify="right" if column == "AUC" else "left", no_wrap=True)
    for version, stage, candidate in (
        (pair.champion_version, "Production", champion),
        (pair.challenger_version, "none yet", challenger),
    ):
        table.add_row(
            version, stage, candidate.role, candidate.description,
            f"{candidate.holdout_auc:.3f}",
        )  # fmt: skip
    return table


def replay_lines(report: Report) -> list[str]:
    """`report --replay`'s gist in three lines: rows, both AUCs, the offline verdict."""
    from contender.analysis import formatting as fmt

    champion, candidate = report.champion.version, report.challenger.version
    lines = [
        f"Offline replay, {report.n_labeled:,} labeled requests compared: champion "
        f"version {champion} as it answered them, candidate version {candidate} on the "
        "same logged inputs."
    ]
    metric = report.primary_metric
    verdict = report.verdict.decision.value
    if report.quality is not None:
        old, new = report.quality.champion[metric], report.quality.challenger[metric]
        difference = report.quality.differences[metric]
        lines.append(
            f"{metric.upper()}: champion [bold]{fmt.number(old.value)}[/] "
            f"{fmt.interval(old.ci)}, candidate [bold]{fmt.number(new.value)}[/] "
            f"{fmt.interval(new.ci)}; difference {fmt.signed(difference.estimate)} "
            f"{fmt.interval(difference.ci, sign=True)} (always-valid 95 % intervals)."
        )
    else:
        lines.append(report.verdict.reason)
    style = "green" if verdict == "promote" else "yellow"
    lines.append(
        f"Replay verdict: [bold {style}]{verdict.upper()}[/]. Its latency is offline batch "
        "time, not serving latency: the latency guardrail waits for live traffic."
    )
    return lines


def served_table(summary: LogSummary) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("served by", "version", "requests", "share"):
        table.add_column(column, justify="left" if column == "served by" else "right")
    for (arm, version), count in sorted(summary.served.items()):
        share = count / summary.n_records if summary.n_records else 0.0
        table.add_row(arm, version, f"{count:,}", f"{share:.1%}")
    return table


def log_line(summary: LogSummary) -> str:
    return (
        f"{summary.n_records:,} records, {summary.n_labeled:,} labeled, "
        f"{summary.n_fallbacks} fallbacks (challenger failures), "
        f"{summary.n_champion_errors} champion errors."
    )


def switch_line(during: list[Answer], n_failed: int) -> str:
    versions = Counter(answer.version for answer in during if answer.ok)
    served = ", ".join(
        f"{count} by version {version}" for version, count in sorted(versions.items())
    )
    style = "green" if n_failed == 0 else "red"
    return (
        f"During the switch: {len(during)} requests, [bold {style}]{n_failed} failed[/] ({served})."
    )


def after_switch_table(answers: list[Answer]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="after the switch")
    for column in ("request_id", "status", "served_by", "model_version"):
        table.add_column(column)
    shown = answers[:5]
    for answer in shown:
        table.add_row(
            answer.request_id or "-", str(answer.status), answer.served_by or "-",
            answer.version or "-",
        )  # fmt: skip
    versions = Counter(answer.version for answer in answers)
    table.caption = f"{len(answers)} requests: " + ", ".join(
        f"{count} answered by version {version}"
        for version, count in sorted(versions.items(), key=str)
    )
    return table


def files_table(workspace: Workspace) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column(style="dim")
    table.add_column(style="cyan")
    table.add_row("demo folder", f"{workspace.root}/")
    table.add_row("MLflow registry", workspace.tracking_uri)
    table.add_row("prediction log", workspace.log_store)
    table.add_row("report", str(workspace.report_html))
    table.add_row("service output", str(workspace.service_log))
    return table


def explore(console: Console, workspace: Workspace, model: str) -> None:
    console.print("Explore further:")
    commands = [
        ["contender", "log", "export", "--log-store", workspace.log_store, "--format", "jsonl"],
        report_command(workspace, model)[:-2],
        ["mlflow", "ui", "--backend-store-uri", workspace.tracking_uri],
    ]
    for command in commands:
        command_line(console, command, indent=2)
