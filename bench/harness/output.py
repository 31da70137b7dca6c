"""Rendering a run: a Rich table, `latest.json` and `throughput.png`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.coverage import Coverage
from harness.results import GOALS, ISOLATION_TARGETS, Measurement

# One colour per server in every panel; contender in red.
COLORS = {
    "mlflow": "C0", "mlserver": "C1", "mlserver-v2": "C2", "contender": "C3", "contender-w2": "C4",
}  # fmt: skip


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _mark(ok: bool) -> str:
    return "[green]pass[/green]" if ok else "[red]FAIL[/red]"


def _skipped(coverage: Coverage) -> str:
    parts = [f"{reason} {n:,}" for reason, n in coverage.challenger_skipped.items()]
    return ", ".join(parts) or "0"


def print_tables(
    console: Console,
    measurements: Sequence[Measurement],
    ratio_rows: Sequence[dict[str, Any]],
    isolation: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    table = Table(title="contender and its peers, same machine, same run")
    columns = (
        "server", "case", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req", "RSS MB",
        "both scored",
    )  # fmt: skip
    for column in columns:
        justify = "left" if column in ("server", "case") else "right"
        table.add_column(column, justify=justify, no_wrap=column == "server")
    for m in measurements:
        if m.wrk is None:
            table.add_row(m.target, m.case.name, "[red]failed[/red]")
            continue
        errors = f"[red]{m.errors}[/red]" if m.errors else "0"
        table.add_row(
            m.target,
            m.case.name,
            f"{m.wrk.requests_per_s:,.0f}",
            f"{m.wrk.p50_ms:.2f}",
            f"{m.wrk.p99_ms:.2f}",
            errors,
            _num(m.cpu_ms_per_request, ".2f"),
            _num(m.rss_mb, ",.0f"),
            _share(m.coverage.share) if m.coverage else "-",
        )
    console.print(table)
    _print_coverage(console, measurements)
    for reason in dict.fromkeys(f"{m.target}: {m.failure}" for m in measurements if m.failure):
        console.print(f"[red]failed[/red] {reason}", highlight=False)
    if isolation and (isolation["ratios"] or isolation["recovery"]):
        _print_isolation(console, isolation)
    if not ratio_rows:
        if not set(m.target for m in measurements) <= ISOLATION_TARGETS:
            console.print("[yellow]no contender/peer ratios: contender or every peer is missing[/]")
        return
    ratios = Table(title="contender ÷ peer (req/s: >1 is better; p50, p99, CPU: <1 is better)")
    for column in ("case", "ours", "peer", "req/s", "p50", "p99", "CPU/req"):
        ratios.add_column(column, justify="right" if column[0] in "rpC" else "left")
    for row in ratio_rows:
        ratios.add_row(
            row["case"],
            row.get("ours", "contender"),
            row["peer"],
            _num(row["requests_per_s"], ".2f"),
            _num(row["p50"], ".2f"),
            _num(row["p99"], ".2f"),
            _num(row["cpu_per_request"], ".2f"),
        )
    console.print(ratios)


def _print_coverage(console: Console, measurements: Sequence[Measurement]) -> None:
    """Servers that score both arms: what their log store says about each run."""
    scored = [m for m in measurements if m.coverage is not None]
    if not scored:
        return
    table = Table(title="who scored what: records of each measured run in the server's log store")
    columns = ("server", "case", "records", "both scored", "challenger skipped", "errors", "wait s")
    for column in columns:
        justify = "left" if column in ("server", "case", "challenger skipped") else "right"
        table.add_column(column, justify=justify, no_wrap=column == "server")
    for m in scored:
        coverage = m.coverage
        if coverage is None:
            continue
        wait = f"{coverage.wait_s:.1f}" + ("" if coverage.settled else " [yellow]unsettled[/]")
        table.add_row(
            m.target,
            m.case.name,
            f"{coverage.records:,}",
            _share(coverage.share),
            _skipped(coverage),
            f"[red]{coverage.challenger_errors:,}[/red]" if coverage.challenger_errors else "0",
            wait,
        )
    console.print(table)


def _print_isolation(console: Console, isolation: dict[str, list[dict[str, Any]]]) -> None:
    throughput_min, p99_max = GOALS["requests_per_s_ratio_min"], GOALS["p99_ratio_max"]
    table = Table(
        title=f"costly challenger in shadow ÷ champion alone "
        f"(goals: req/s >= {throughput_min}, p99 <= {p99_max})"
    )
    for column in ("challenger", "case", "req/s ratio", "", "p99 ratio", " ", "both scored"):
        table.add_column(column, justify="left" if column in ("challenger", "case") else "right")
    for row in isolation["ratios"]:
        table.add_row(
            row["challenger"],
            row["case"],
            _num(row["requests_per_s_ratio"], ".2f"),
            _mark(row["requests_per_s_ok"]),
            _num(row["p99_ratio"], ".2f"),
            _mark(row["p99_ok"]),
            _share(row["shadow_both_scored_share"]),
        )
    console.print(table)
    for row in isolation["ratios"]:
        if row.get("shadow_breaker_open"):
            console.print(
                f"[yellow]{row['challenger']} {row['case']}: breaker open for "
                f"{row['shadow_breaker_open']:,} of the shadow run's requests; the challenger's "
                "cost was not paid for those, and the ratios flatter the shadow server[/yellow]"
            )
    if not isolation["recovery"]:
        return
    recovery = Table(
        title=f"recovery after overload (goal: both scored >= {GOALS['recovery_share_min']:.0%})"
    )
    for column in ("challenger", "case", "right after", "both scored", "", "not scored"):
        recovery.add_column(column, justify="right" if column.startswith("both") else "left")
    for row in isolation["recovery"]:
        not_scored = [f"{why} {n:,}" for why, n in (row.get("challenger_skipped") or {}).items()]
        if row.get("challenger_errors"):
            not_scored.append(f"errors {row['challenger_errors']:,}")
        recovery.add_row(
            row["challenger"],
            row["case"],
            row["after"],
            _share(row["both_scored_share"]),
            _mark(row["ok"]),
            ", ".join(not_scored) or "0",
        )
    console.print(recovery)


def write_json(
    path: Path,
    meta: dict[str, Any],
    measurements: Sequence[Measurement],
    ratio_rows: Sequence[dict[str, Any]],
    isolation: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "results": [m.to_json() for m in measurements],
        "ratios": list(ratio_rows),
        "isolation": {"goals": GOALS, **(isolation or {"ratios": [], "recovery": []})},
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


def write_chart(path: Path, measurements: Sequence[Measurement], title: str) -> None:
    """Throughput and p99 against concurrency for one-row requests, one line per
    server; a third panel with the 100-row case as bars (rows/s). The isolation
    targets are left out: they compare with each other, not with the peers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ok = [m for m in measurements if m.wrk is not None and m.target not in ISOLATION_TARGETS]
    targets = list(dict.fromkeys(m.target for m in ok))
    colors = {t: COLORS.get(t, f"C{4 + i}") for i, t in enumerate(targets)}
    fig, (tput, tail, batch) = plt.subplots(
        1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 3, 2]}
    )
    for target in targets:
        single = sorted(
            (m for m in ok if m.target == target and m.case.rows == 1),
            key=lambda m: m.case.connections,
        )
        if not single:
            continue
        xs = [m.case.connections for m in single]
        style = {"marker": "o", "label": target, "color": colors[target]}
        tput.plot(xs, [m.wrk.requests_per_s for m in single if m.wrk], **style)
        tail.plot(xs, [m.wrk.p99_ms for m in single if m.wrk], **style)
    connections = sorted({m.case.connections for m in ok if m.case.rows == 1})
    for axis, ylabel in ((tput, "requests/s (1-row requests)"), (tail, "p99 latency, ms")):
        axis.set_xscale("log")
        axis.set_xticks(connections or [1])
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("concurrent connections")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        if axis.lines:
            axis.legend()
    tail.set_yscale("log")
    tail.yaxis.set_major_formatter(ScalarFormatter())
    tput.set_ylim(bottom=0)
    bars = [m for m in ok if m.case.rows > 1]
    if bars:
        names = [m.target for m in bars]
        values = [m.wrk.requests_per_s * m.case.rows for m in bars if m.wrk]
        batch.bar(names, values, color=[colors[m.target] for m in bars])
        batch.set_ylabel("rows/s")
        batch.tick_params(axis="x", labelsize=8, labelrotation=30)
        batch.set_title(f"{bars[0].case.rows}-row requests, {bars[0].case.connections} connections")
    else:
        batch.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
