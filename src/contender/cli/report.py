"""`contender report`: offline champion vs challenger comparison (SPEC section 5).

Reads the prediction log, prints a Rich table (or `--json`), optionally writes an HTML
page and logs an MLflow run. The analysis modules are imported inside the command so
other commands (and `--help`) do not pay for numpy, scipy or plotly.
Errors the user can fix exit with status 1 and one line on stderr, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contender.errors import ConfigError, ContenderError

if TYPE_CHECKING:
    from contender.analysis.report import Report


def _write_html(report: Report, path: Path) -> str:
    from contender.analysis.render_html import render_html

    page = render_html(report)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from error
    return page


def _emit(
    report: Report,
    as_json: bool,
    html: Path | None,
    log_to_mlflow: bool,
    tracking_uri: str | None,
) -> None:
    """Every requested output; notes go to stderr so `--json` stdout stays one object."""
    from rich.console import Console

    from contender.analysis.render_json import report_to_json
    from contender.analysis.render_terminal import render_terminal

    page = _write_html(report, html) if html is not None else None
    if as_json:
        typer.echo(report_to_json(report))
    else:
        render_terminal(report, Console())
    if html is not None:
        typer.echo(f"HTML report written to {html}", err=True)
    if log_to_mlflow:
        from contender.analysis.mlflow_log import log_report_to_mlflow
        from contender.analysis.render_html import render_html

        run_id = log_report_to_mlflow(report, page or render_html(report), tracking_uri)
        typer.echo(f"MLflow run {run_id} logged to experiment contender-reports", err=True)


def report(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    log_store: Annotated[
        str,
        typer.Option(
            "--log-store",
            envvar="CONTENDER_LOG_STORE",
            help="Prediction log: sqlite:///path.db or postgresql://...",
        ),
    ] = "sqlite:///contender.db",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="CSV with request_id,label or request_id,row,label; overrides stored labels.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only records at or after this ISO date/datetime (UTC)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page.")
    ] = None,
    log_to_mlflow: Annotated[
        bool, typer.Option("--log-to-mlflow", help="Log an MLflow run with metrics and HTML.")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Classifier decision threshold.")
    ] = 0.5,
    metric: Annotated[
        str | None,
        typer.Option(help="Primary metric of the verdict (default auc, or rmse for regressors)."),
    ] = None,
    max_latency_ratio: Annotated[
        float, typer.Option(min=0.0, help="Largest allowed challenger/champion p99 latency.")
    ] = 1.5,
    min_labeled: Annotated[
        int, typer.Option(min=0, help="Fewer labeled paired rows: inconclusive.")
    ] = 200,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI for --log-to-mlflow.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    replay: Annotated[
        str | None,
        typer.Option(
            "--replay",
            help="Compare this version, as `contender replay` scored the logged inputs, "
            "with the champion on exactly those rows.",
        ),
    ] = None,
) -> None:
    """Compare champion and challenger on the logged predictions; print a verdict."""
    from contender.analysis.load import parse_since
    from contender.analysis.report import ReportOptions, build_report

    options = ReportOptions(
        threshold=threshold,
        metric=metric,
        max_latency_ratio=max_latency_ratio,
        min_labeled=min_labeled,
        seed=seed,
        replay=replay,
    )
    try:
        since_at = parse_since(since) if since is not None else None
        result = build_report(log_store, model, labels, since_at, options)
        _emit(result, as_json, html, log_to_mlflow, tracking_uri)
    except ContenderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
