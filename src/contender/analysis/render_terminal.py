"""The default `contender report` output: Rich tables and the verdict, on a Console."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from contender.analysis import formatting as fmt
from contender.analysis import summary_lines
from contender.analysis.coverage import Coverage
from contender.analysis.quality import Estimate, QualityComparison
from contender.analysis.report import Report
from contender.analysis.task import Task
from contender.analysis.verdict import Decision

_VERDICT_STYLE = {
    Decision.PROMOTE: "bold green",
    Decision.KEEP: "bold red",
    Decision.INCONCLUSIVE: "bold yellow",
}


def _cell(main: str, detail: str = "") -> Text:
    """A value with an optional dim second line (an interval, a limit): fits 80 columns."""
    text = Text(main)
    if detail:
        text.append(f"\n{detail}", style="dim")
    return text


def _estimate(estimate: Estimate) -> Text:
    return _cell(fmt.number(estimate.value), fmt.interval(estimate.ci))


def _coverage(coverage: Coverage) -> Text:
    """`97.3% of 12,000 requests scored by both`, and below it why the rest were not."""
    reasons = fmt.counts(coverage.not_scored)
    return _cell(
        f"{fmt.share(coverage.share)} of {coverage.n_requests:,} requests scored by both",
        f"not scored: {reasons}" if reasons else "",
    )


def _overview(report: Report) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    share = report.served_share
    rows: list[tuple[str, str | Text]] = [
        ("task", f"{report.task} (primary metric: {report.primary_metric})"),
        ("requests / rows", f"{report.n_requests:,} / {report.n_rows:,}"),
        ("coverage", _coverage(report.coverage)),
        ("rows scored by both", f"{report.n_paired:,} ({report.n_labeled:,} labeled)"),
        (
            "served share",
            f"champion {fmt.share(share.champion)}, challenger {fmt.share(share.challenger)}",
        ),
        ("agreement", fmt.share(report.agreement)),
    ]
    if report.task is Task.CLASSIFIER:
        rows.append(("threshold", f"{report.threshold:g}"))
    if report.n_requests_other_versions:
        rows.append(("left out", f"{report.n_requests_other_versions:,} older-version records"))
    if report.replay is not None:
        rows.insert(0, ("replay", fmt.replay_note(report.replay, report.champion.version)))
    rows += [
        ("inference", summary_lines.inference_line(report)),
        ("power", summary_lines.power_line(report)),
        ("p99 latency", summary_lines.latency_line(report)),
        ("labels", summary_lines.labels_line(report)),
    ]
    weighted = summary_lines.weighted_line(report)
    if weighted is not None:
        rows.append(("weighted", weighted))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _operations_rows(report: Report, table: Table) -> None:
    champion, challenger, guardrails = report.champion, report.challenger, report.guardrails
    table.add_row("invoked", f"{champion.n:,}", f"{challenger.n:,}")
    # Only reasons that occurred: a log without skips keeps the table it always had.
    for reason, by_champion, by_challenger in report.coverage.skips_per_arm():
        label = _cell("skipped", reason.replace("_", " "))  # the reason below: fits 80 columns
        table.add_row(label, f"{by_champion:,}", f"{by_challenger:,}")
    table.add_row(
        "error rate",
        fmt.rate(champion.error_rate),
        fmt.rate(challenger.error_rate),
        fmt.signed_rate(challenger.error_rate - champion.error_rate),
        _cell(fmt.p_value(guardrails.error_rate_p_value), "1-sided"),
    )
    table.add_row("fallbacks", "", f"{challenger.fallback_count:,}")
    for name in ("p50", "p95", "p99"):
        a = getattr(champion.latency_ms, name)
        b = getattr(challenger.latency_ms, name)
        ratio = f"x{b / a:.2f}" if a > 0 and not math.isnan(b) else ""
        limit = f"limit x{guardrails.max_latency_ratio:g}" if name == "p99" else ""
        table.add_row(f"{name} ms", fmt.milliseconds(a), fmt.milliseconds(b), _cell(ratio, limit))


def _quality_rows(report: Report, quality: QualityComparison, table: Table) -> None:
    for name, champion in quality.champion.items():
        difference = quality.differences[name]
        table.add_row(
            f"{name} *" if name == report.primary_metric else name,
            _estimate(champion),
            _estimate(quality.challenger[name]),
            _cell(fmt.signed(difference.estimate), fmt.interval(difference.ci, sign=True)),
            fmt.p_value(difference.p_value),
        )


def _metrics_table(report: Report) -> Table:
    table = Table(
        title="champion vs challenger, 95% intervals (* primary metric)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("", no_wrap=True)
    table.add_column(fmt.arm("champion", report.champion.version), justify="right", no_wrap=True)
    table.add_column(
        fmt.arm(fmt.challenger_role(report.replay), report.challenger.version),
        justify="right",
        no_wrap=True,
    )
    table.add_column("difference", justify="right", no_wrap=True)
    table.add_column("p-value", justify="right", no_wrap=True)
    _operations_rows(report, table)
    if report.quality is None:
        table.caption = "no quality metrics: no labeled rows scored by both models"
    else:
        table.add_section()
        _quality_rows(report, report.quality, table)
    return table


def render_terminal(report: Report, console: Console) -> None:
    verdict = report.verdict
    style = _VERDICT_STYLE[verdict.decision]
    title = f"contender report: {escape(report.model)}"
    console.print(Panel(_overview(report), title=title, expand=False))
    console.print(_metrics_table(report))
    body = Group(Text(verdict.decision.value.upper(), style=style), Text(verdict.reason))
    console.print(Panel(body, title="verdict", expand=False))
    console.file.flush()  # before any note on stderr, so the two do not interleave
