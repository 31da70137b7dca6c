"""`contender`: one Typer app; each command lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="contender",
    help="Champion/challenger serving for models in the MLflow Model Registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
