"""`contender serve`: the prediction service."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError

from contender.settings import Selector, Settings


def _settings(flags: dict[str, Any]) -> Settings:
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"--{'-'.join(str(part) for part in issue['loc']).replace('_', '-')}: {issue['msg']}"
            for issue in error.errors()
        )
        raise typer.BadParameter(problems) from error


def serve(
    model: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    selector: Annotated[Selector | None, typer.Option(help="Find slots by stage or alias.")] = None,
    challenger_weight: Annotated[
        float | None, typer.Option(help="Share answered by the challenger [default: 0.10].")
    ] = None,
    testing: Annotated[
        bool | None, typer.Option("--testing/--no-testing", help="Score the challenger too.")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds between registry polls [default: 30].")
    ] = None,
    log_store: Annotated[str | None, typer.Option(help="Prediction log store URL.")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [default: 8080].")] = None,
    workers: Annotated[int | None, typer.Option(help="Server processes [default: 1].")] = None,
    challenger_timeout_ms: Annotated[
        float | None, typer.Option(help="Challenger time limit [default: 1000].")
    ] = None,
    shadow_max_lag_ms: Annotated[
        float | None, typer.Option(help="Skip shadow work not started by then [default: 1000].")
    ] = None,
    breaker_window: Annotated[
        int | None, typer.Option(help="Challenger predictions the breaker judges [default: 100].")
    ] = None,
    breaker_error_rate: Annotated[
        float | None, typer.Option(help="Failed share that opens the breaker [default: 0.2].")
    ] = None,
    breaker_cooldown_s: Annotated[
        float | None, typer.Option(help="Seconds of good probes before it closes [default: 30].")
    ] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest body accepted.")] = None,
    max_rows: Annotated[int | None, typer.Option(help="Most rows in one request.")] = None,
    redact: Annotated[
        str | None, typer.Option(help="Comma-separated input columns to store hashed.")
    ] = None,
    log_buffer_records: Annotated[
        int | None,
        typer.Option(help="Records kept in memory while the store is down [default: 50000]."),
    ] = None,
    spill_dir: Annotated[
        str | None,
        typer.Option(help="Where records past the buffer go [default: ./contender-spill]."),
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Most rows per model call under load; 1: no batching.")
    ] = None,
    max_batch_wait_ms: Annotated[
        float | None, typer.Option(help="Extra wait for company under load [default: 0].")
    ] = None,
) -> None:
    """Serve the champion and test the challenger. Every flag is also CONTENDER_<FLAG>."""
    flags = {key: value for key, value in locals().items()}
    settings = _settings(flags)
    # Imported here: they pull in MLflow (4 s), which the other commands do not need.
    from contender.compose import build_services, tune_process
    from contender.errors import ConfigError
    from contender.http.app import create_app
    from contender.http.transport import NoDelayHttpToolsProtocol

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    server_options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access_log": False,
        # Longer than the idle timeout of the proxies in front (nginx's upstream keepalive
        # and AWS load balancers: 60 s). uvicorn's 5 s let a proxy reuse a connection just
        # as it was closed: the reset came back to a client as a 502 (POST is not retried).
        "timeout_keep_alive": 75,
        "http": NoDelayHttpToolsProtocol,
    }
    if settings.workers == 1:
        tune_process()
        try:
            services = build_services(settings)
        except ConfigError as error:
            raise typer.BadParameter(str(error)) from error
        uvicorn.run(create_app(services), **server_options)
        return
    # Worker processes rebuild the settings from the environment.
    for name, value in settings.model_dump(exclude_none=True, exclude={"metrics_dir"}).items():
        os.environ[f"CONTENDER_{name.upper()}"] = (
            ",".join(value) if isinstance(value, tuple) else str(value)
        )
    with metrics_directory(settings.metrics_dir) as directory:
        # Read by prometheus-client as each worker imports it: set before they start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        uvicorn.run(
            "contender.http.factory:app_from_environment",
            factory=True,
            workers=settings.workers,
            **server_options,
        )


@contextlib.contextmanager
def metrics_directory(given: str | None) -> Iterator[Path]:
    """The workers' shared metrics directory, empty at start (values of an earlier run
    would be summed in) and cleaned up at exit; made and removed here unless given."""
    if given is None:
        made = Path(tempfile.mkdtemp(prefix="contender-metrics-"))
        try:
            yield made
        finally:
            shutil.rmtree(made, ignore_errors=True)
        return
    directory = Path(given)
    directory.mkdir(parents=True, exist_ok=True)
    _clear(directory)
    try:
        yield directory
    finally:
        _clear(directory)


def _clear(directory: Path) -> None:
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)
