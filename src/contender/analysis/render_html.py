"""`report --html FILE`: one self-contained page (plotly.js inlined, no network).

Sections: the verdict and its reason, coverage (requests both scored, and why the others
were not, as a table and one stacked bar), the numbers table, ROC and precision-recall
curves (classifiers) or predicted-against-actual (regressors), latency distributions, and
a forest plot of each metric's difference with its 95 % interval. Metrics live on
different scales, so the forest plot gives each its own row and x axis.
"""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from contender.analysis import formatting as fmt
from contender.analysis import summary_lines
from contender.analysis.coverage import Coverage
from contender.analysis.curves import ArmCurves, Curve, Histogram
from contender.analysis.quality import Difference
from contender.analysis.report import Report
from contender.analysis.task import HIGHER_IS_BETTER, Task
from contender.analysis.verdict import Decision

CHAMPION_COLOUR = "#1f77b4"
CHALLENGER_COLOUR = "#ff7f0e"
_VERDICT_COLOUR = {
    Decision.PROMOTE: "#1a7f37",
    Decision.KEEP: "#cf222e",
    Decision.INCONCLUSIVE: "#9a6700",
}
_COVERAGE_COLOUR = {
    "both scored": "#1a7f37",
    "overload": "#bf8700",
    "breaker open": "#cf222e",
    "error": "#8250df",
    "not invoked": "#8c959f",
}
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "font": {"size": 14},
    "margin": {"l": 70, "r": 30, "t": 60, "b": 60},
    "legend": {"orientation": "h", "y": -0.2},
}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; color: #1f2328; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.verdict { padding: 1rem 1.2rem; border-radius: 8px; color: white; }
.verdict b { font-size: 1.4rem; text-transform: uppercase; letter-spacing: 0.05em; }
table { border-collapse: collapse; font-size: 0.95rem; }
td, th { padding: 0.3rem 0.8rem; border-bottom: 1px solid #d0d7de; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
"""


def _arm_names(report: Report) -> tuple[str, str]:
    return (
        fmt.arm("champion", report.champion.version),
        fmt.arm(fmt.challenger_role(report.replay), report.challenger.version),
    )


def _line(curve: Curve, name: str, colour: str, mode: str = "lines") -> go.Scatter:
    return go.Scatter(
        x=curve.x, y=curve.y, name=name, mode=mode, line={"color": colour}, marker={"size": 4}
    )


def _curve_figure(
    report: Report, pick: str, title: str, axes: tuple[str, str], diagonal: bool
) -> go.Figure | None:
    """Both arms' curve `pick` (roc, precision_recall or scatter) in one figure."""
    figure = go.Figure()
    arms: tuple[ArmCurves, ArmCurves] = (report.figures.champion, report.figures.challenger)
    curves = []
    for arm, name, colour in zip(
        arms, _arm_names(report), (CHAMPION_COLOUR, CHALLENGER_COLOUR), strict=True
    ):
        curve = getattr(arm, pick)
        if curve is not None:
            curves.append(curve)
            mode = "markers" if pick == "scatter" else "lines"
            figure.add_trace(_line(curve, name, colour, mode))
    if not curves:
        return None
    if diagonal:
        # ROC: the chance line; predicted against actual: perfect predictions.
        low = min(min(c.x.min(), c.y.min()) for c in curves) if pick == "scatter" else 0.0
        high = max(max(c.x.max(), c.y.max()) for c in curves) if pick == "scatter" else 1.0
        figure.add_shape(
            type="line", x0=low, y0=low, x1=high, y1=high, line={"dash": "dot", "color": "#888"}
        )
    figure.update_layout(title=title, xaxis_title=axes[0], yaxis_title=axes[1], **_LAYOUT)
    return figure


def _histogram_figure(
    histogram: Histogram, names: tuple[str, str], title: str, axes: tuple[str, str]
) -> go.Figure | None:
    if len(histogram.edges) == 0:
        return None
    centres = (histogram.edges[:-1] + histogram.edges[1:]) / 2
    width = float(histogram.edges[1] - histogram.edges[0])
    figure = go.Figure()
    for share, name, colour in (
        (histogram.champion_share, names[0], CHAMPION_COLOUR),
        (histogram.challenger_share, names[1], CHALLENGER_COLOUR),
    ):
        figure.add_trace(
            go.Bar(x=centres, y=share, width=width, name=name, marker_color=colour, opacity=0.6)
        )
    figure.update_layout(
        title=title, xaxis_title=axes[0], yaxis_title=axes[1], barmode="overlay", **_LAYOUT
    )
    return figure


def _latency_figure(report: Report) -> go.Figure | None:
    histogram = report.figures.latency
    p99s = (report.champion.latency_ms.p99, report.challenger.latency_ms.p99)
    names = tuple(
        f"{name} (p99 {fmt.milliseconds(p99)} ms, dotted)"
        for name, p99 in zip(_arm_names(report), p99s, strict=True)
    )
    figure = _histogram_figure(
        histogram,
        (names[0], names[1]),
        "Latency distribution (share of requests; last bin holds the slowest 0.5%)",
        ("latency (ms)", "share of requests"),
    )
    if figure is None:
        return None
    for p99, colour in zip(p99s, (CHAMPION_COLOUR, CHALLENGER_COLOUR), strict=True):
        if not math.isnan(p99):
            figure.add_vline(
                x=min(p99, float(histogram.edges[-1])),
                line={"dash": "dot", "color": colour, "width": 2},
            )
    return figure


def _error_figure(report: Report) -> go.Figure | None:
    if report.figures.errors is None:
        return None
    return _histogram_figure(
        report.figures.errors,
        _arm_names(report),
        "Errors (prediction minus label)",
        ("error", "share of labeled rows"),
    )


def _coverage_parts(coverage: Coverage) -> list[tuple[str, int]]:
    """(what, requests): both scored, then every reason of `not_scored`, names in words."""
    parts = [("both scored", coverage.both_scored)]
    parts += [(reason.replace("_", " "), n) for reason, n in coverage.not_scored.items()]
    return parts


def _coverage_figure(report: Report) -> go.Figure | None:
    """One horizontal bar of all requests, stacked by what became of them."""
    coverage = report.coverage
    if not coverage.n_requests:
        return None
    figure = go.Figure()
    for name, n in _coverage_parts(coverage):
        if n:
            figure.add_trace(
                go.Bar(
                    x=[n / coverage.n_requests],
                    y=["requests"],
                    orientation="h",
                    name=f"{name} ({n:,})",
                    marker_color=_COVERAGE_COLOUR.get(name, "#57606a"),
                    hovertemplate=f"{name}: {n:,} (%{{x:.1%}})<extra></extra>",
                )
            )
    layout = {
        **_LAYOUT,
        "margin": {"l": 30, "r": 30, "t": 50, "b": 40},
        # Plotly lists stacked traces last-first; keep the legend in the bar's order.
        "legend": {**_LAYOUT["legend"], "traceorder": "normal"},
    }
    figure.update_layout(
        title="Requests by coverage",
        barmode="stack",
        height=240,
        xaxis={"tickformat": ".0%", "range": [0, 1]},
        yaxis={"showticklabels": False},
        **layout,
    )
    return figure


def _coverage_section(report: Report, figure_div: str) -> str:
    coverage = report.coverage
    total = coverage.n_requests or math.nan  # no requests: shares are undefined, not 0 / 0
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{n:,}</td><td>{fmt.share(n / total)}</td></tr>"
        for name, n in _coverage_parts(coverage)
    )
    head = "<tr><th></th><th>requests</th><th>share</th></tr>"
    return f"""<h2>Coverage</h2>
<p>{fmt.share(coverage.share)} of {coverage.n_requests:,} requests were scored by both models;
each of the others is counted under its first reason (a skip of the challenger, of the
champion, an error, the challenger not invoked).</p>
<table>{head}{rows}</table>
<div>{figure_div}</div>"""


def _forest_colour(name: str, difference: Difference) -> str:
    lo, hi = difference.ci
    better = HIGHER_IS_BETTER[name]
    if (lo > 0 and better) or (hi < 0 and not better):
        return "#1a7f37"
    if (hi < 0 and better) or (lo > 0 and not better):
        return "#cf222e"
    return "#57606a"


def _forest_figure(report: Report) -> go.Figure | None:
    if report.quality is None:
        return None
    items = [(n, d) for n, d in report.quality.differences.items() if not math.isnan(d.estimate)]
    if not items:
        return None
    titles = [
        f"{n}{' (primary)' if n == report.primary_metric else ''}: "
        f"{'higher' if HIGHER_IS_BETTER[n] else 'lower'} is better, {fmt.p_equals(d.p_value)}"
        for n, d in items
    ]
    figure = make_subplots(
        rows=len(items), cols=1, subplot_titles=titles, vertical_spacing=0.5 / len(items)
    )
    for row, (name, difference) in enumerate(items, start=1):
        lo, hi = difference.ci
        figure.add_trace(
            go.Scatter(
                x=[difference.estimate],
                y=[name],
                mode="markers",
                marker={"size": 12, "color": _forest_colour(name, difference)},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [hi - difference.estimate if not math.isnan(hi) else 0],
                    "arrayminus": [difference.estimate - lo if not math.isnan(lo) else 0],
                    "thickness": 2,
                    "width": 8,
                },
                showlegend=False,
                hovertemplate=f"{name}: %{{x:.4g}} {fmt.interval((lo, hi))}<extra></extra>",
            ),
            row=row,
            col=1,
        )
        figure.add_vline(x=0, line={"dash": "dash", "color": "#888"}, row=row, col=1)
        figure.update_yaxes(showticklabels=False, row=row, col=1)
    layout = {**_LAYOUT, "margin": {"l": 40, "r": 30, "t": 80, "b": 40}}
    figure.update_layout(
        title="Challenger minus champion, with 95% intervals",
        height=130 * len(items) + 120,
        **layout,
    )
    return figure


def _with_ci(value: float, ci: tuple[float, float], sign: bool = False) -> str:
    return f"{(fmt.signed if sign else fmt.number)(value)} {fmt.interval(ci, sign)}"


def _table_rows(report: Report) -> list[tuple[str, ...]]:
    a, b, guardrails = report.champion, report.challenger, report.guardrails
    error_p = f"{fmt.p_value(guardrails.error_rate_p_value)} (1-sided)"
    rows: list[tuple[str, ...]] = [
        ("requests invoked", f"{a.n:,}", f"{b.n:,}", "", ""),
        *(
            (f"skipped: {reason.replace('_', ' ')}", f"{by_a:,}", f"{by_b:,}", "", "")
            for reason, by_a, by_b in report.coverage.skips_per_arm()
        ),
        (
            "error rate",
            fmt.rate(a.error_rate),
            fmt.rate(b.error_rate),
            fmt.signed_rate(b.error_rate - a.error_rate),
            error_p,
        ),
        ("fallbacks", "", f"{b.fallback_count:,}", "", ""),
    ]
    for p in ("p50", "p95", "p99"):
        latencies = (getattr(a.latency_ms, p), getattr(b.latency_ms, p))
        ms = (fmt.milliseconds(latencies[0]), fmt.milliseconds(latencies[1]))
        ratio = (
            f"x{latencies[1] / latencies[0]:.2f}"
            if latencies[0] > 0 and not math.isnan(latencies[1])
            else ""
        )
        if p == "p99":
            ratio = f"{ratio} (limit x{guardrails.max_latency_ratio:g})"
        rows.append((f"latency {p} (ms)", *ms, ratio, ""))
    quality = report.quality
    if quality is None:
        return rows
    for name, champion in quality.champion.items():
        challenger, difference = quality.challenger[name], quality.differences[name]
        rows.append(
            (
                f"{name} (primary)" if name == report.primary_metric else name,
                _with_ci(champion.value, champion.ci),
                _with_ci(challenger.value, challenger.ci),
                _with_ci(difference.estimate, difference.ci, sign=True),
                fmt.p_value(difference.p_value),
            )
        )
    return rows


def _table(report: Report) -> str:
    names = _arm_names(report)
    header = ("", names[0], names[1], "difference [95% CI]", "p-value")
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _table_rows(report)
    )
    return f"<table>{head}{body}</table>"


def _overview(report: Report) -> str:
    share = report.served_share
    agreement = fmt.share(report.agreement)
    facts = [
        f"{report.task}, primary metric <b>{html.escape(report.primary_metric)}</b>",
        f"{report.n_requests:,} requests, {report.n_rows:,} rows, "
        f"{report.n_paired:,} scored by both, {report.n_labeled:,} of them labeled",
        f"served: champion {fmt.share(share.champion)}, "
        f"challenger {fmt.share(share.challenger)}; "
        f"agreement {agreement}",
    ]
    if report.task is Task.CLASSIFIER:
        facts.append(f"threshold {report.threshold:g}")
    if report.n_requests_other_versions:
        facts.append(f"{report.n_requests_other_versions:,} older-version records left out")
    if report.replay is not None:
        note = fmt.replay_note(report.replay, report.champion.version)
        facts.insert(0, f"<b>replay</b>: {html.escape(note)}")
    for name, line in (
        ("inference", summary_lines.inference_line(report)),
        ("power", summary_lines.power_line(report)),
        ("p99 latency", summary_lines.latency_line(report)),
        ("labels", summary_lines.labels_line(report)),
        ("weighted", summary_lines.weighted_line(report) or ""),
    ):
        if not line:
            continue
        facts.append(f"<b>{name}</b>: {html.escape(line)}")
    return "<ul>" + "".join(f"<li>{fact}</li>" for fact in facts) + "</ul>"


def _figures(report: Report) -> list[go.Figure | None]:
    """Quality figures (two, side by side), then latency and the forest plot."""
    if report.task is Task.CLASSIFIER:
        quality = [
            _curve_figure(
                report, "roc", "ROC curve", ("false positive rate", "true positive rate"), True
            ),
            _curve_figure(
                report, "precision_recall", "Precision-recall curve", ("recall", "precision"), False
            ),
        ]
    else:
        quality = [
            _curve_figure(
                report,
                "scatter",
                "Predicted against actual (sample)",
                ("actual", "predicted"),
                True,
            ),
            _error_figure(report),
        ]
    return [*quality, _latency_figure(report), _forest_figure(report)]


def _figure_divs(figures: list[go.Figure | None]) -> list[str]:
    """Each figure as a div ("" for None), in page order: plotly.js goes in the first."""
    divs: list[str] = []
    for figure in figures:
        if figure is None:
            divs.append("")
            continue
        divs.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=not any(divs),  # inlined once, before the first figure
                config={"displaylogo": False, "responsive": True},
            )
        )
    return divs


def render_html(report: Report) -> str:
    """The whole page as a string; plotly.js is inlined once, before the first figure."""
    verdict = report.verdict
    coverage_div, *divs = _figure_divs([_coverage_figure(report), *_figures(report)])
    pairs, rest = divs[:2], divs[2:]
    title = html.escape(f"contender report: {report.model}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<div class="verdict" style="background:{_VERDICT_COLOUR[verdict.decision]}">
<b>{verdict.decision.value}</b><br>{html.escape(verdict.reason)}</div>
{_overview(report)}
{_coverage_section(report, coverage_div)}
<h2>Numbers (95% intervals)</h2>
{_table(report)}
<h2>Figures</h2>
<div class="grid">{"".join(f"<div>{div}</div>" for div in pairs if div)}</div>
{"".join(f"<div>{div}</div>" for div in rest if div)}
</body></html>
"""
