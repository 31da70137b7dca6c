"""Options several commands share, declared once: the same flag, variable and help
everywhere (SPEC section 5)."""

from __future__ import annotations

from typing import Annotated

import typer

from contender.settings import Selector

DEFAULT_LOG_STORE = "sqlite:///contender.db"

LogStore = Annotated[
    str,
    typer.Option(
        "--log-store",
        envvar="CONTENDER_LOG_STORE",
        help="Prediction log: sqlite:///path.db or postgresql://...",
    ),
]
Since = Annotated[
    str | None,
    typer.Option("--since", help="Only records at or after this ISO date/datetime (UTC)."),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        envvar="CONTENDER_TRACKING_URI",
        help="MLflow tracking URI (default: MLflow's own MLFLOW_TRACKING_URI).",
    ),
]
SelectorOption = Annotated[
    Selector,
    typer.Option(envvar="CONTENDER_SELECTOR", help="Find slots by stage or alias."),
]
