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

from contender.cli.options import DEFAULT_LOG_STORE, LogStore, Since
from contender.errors import ConfigError, ContenderError

if TYPE_CHECKING:
    from contender.analysis.report import Report
    from contender.policy.parse import Policy


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
    policy: Policy | None = None,
) -> None:
    """Every requested output; notes go to stderr so `--json` stdout stays one object."""
    import orjson
    from rich.console import Console

    from contender.analysis.render_json import report_to_dict
    from contender.analysis.render_terminal import render_terminal

    page = _write_html(report, html) if html is not None else None
    body = report_to_dict(report)
    evaluation = None
    if policy is not None:
        from contender.policy.evaluate import evaluate

        evaluation = evaluate(policy, body)
        body["policy"] = {"source": policy.source, **evaluation.as_dict()}
    if as_json:
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        console = Console()
        render_terminal(report, console)
        if evaluation is not None:
            from rich.panel import Panel

            title = f"policy {policy.source if policy else ''}"
            text = f"[bold]{evaluation.outcome.value.upper()}[/bold]\n{evaluation.reason}"
            console.print(Panel(text, title=title, expand=False))
    if html is not None:
        typer.echo(f"HTML report written to {html}", err=True)
    if log_to_mlflow:
        from contender.analysis.mlflow_log import log_report_to_mlflow
        from contender.analysis.render_html import render_html

        run_id = log_report_to_mlflow(report, page or render_html(report), tracking_uri)
        typer.echo(f"MLflow run {run_id} logged to experiment contender-reports", err=True)


def report(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    log_store: LogStore = DEFAULT_LOG_STORE,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="CSV with request_id,label or request_id,row,label; overrides stored labels.",
        ),
    ] = None,
    since: Since = None,
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
    inference: Annotated[
        str,
        typer.Option(
            "--inference",
            help="sequential: always-valid intervals, safe to read every day; fixed: one look.",
        ),
    ] = "sequential",
    alpha: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Error rate of every interval (two-sided).")
    ] = 0.05,
    tuning_rows: Annotated[
        int, typer.Option(min=1, help="Labeled requests where the sequential boundary is tightest.")
    ] = 5000,
    target_effect: Annotated[
        float | None,
        typer.Option(help="Difference the power line counts rows for (default 0.01 for AUC)."),
    ] = None,
    labels_follow: Annotated[
        str,
        typer.Option(
            "--labels-follow",
            help="all, or served-positive: labels arrive only for rows the served model "
            "flagged (plus --audit-rate of the rest); metrics are then weighted.",
        ),
    ] = "all",
    audit_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With served-positive: share of the rest labeled."),
    ] = 0.0,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="A promotion policy (YAML) to judge the report by."),
    ] = None,
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
    from dataclasses import replace as with_fields

    from contender.analysis.load import parse_since
    from contender.analysis.report import ReportOptions, build_report

    options = ReportOptions(
        threshold=threshold,
        metric=metric,
        max_latency_ratio=max_latency_ratio,
        min_labeled=min_labeled,
        seed=seed,
        replay=replay,
        inference=inference,
        alpha=alpha,
        tuning_rows=tuning_rows,
        target_effect=target_effect,
        labels_follow=labels_follow,
        audit_rate=audit_rate,
    )
    try:
        rules = None
        if policy is not None:
            from contender.policy.evaluate import POLICY_OPTIONS, report_options_for
            from contender.policy.parse import load_policy

            rules = load_policy(policy)
            # The policy's inference, metric and gates; the flags for the rest.
            chosen = report_options_for(rules)
            overridden = [
                f"--{name.replace('_', '-')}"
                for name in POLICY_OPTIONS
                if getattr(options, name) != getattr(ReportOptions(), name)
                and getattr(options, name) != getattr(chosen, name)
            ]
            if overridden:
                typer.echo(
                    f"note: {policy} sets {', '.join(overridden)}; the policy's values are used",
                    err=True,
                )
            options = with_fields(
                chosen,
                threshold=threshold,
                max_latency_ratio=max_latency_ratio,
                seed=seed,
                replay=replay,
                target_effect=target_effect,
                labels_follow=labels_follow,
                audit_rate=audit_rate,
            )
        since_at = parse_since(since) if since is not None else None
        result = build_report(log_store, model, labels, since_at, options)
        _emit(result, as_json, html, log_to_mlflow, tracking_uri, rules)
    except ContenderError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
