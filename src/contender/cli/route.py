"""`contender route`: set the routing every worker and replica serves (SPEC section 2).

Writes the registered model's tag `contender.routing` one revision on and prints the new
routing as JSON on stdout; running services apply it at their next registry poll. With
neither `--challenger-weight` nor `--testing/--no-testing` it only prints the routing
in force. Without a tag yet, the fields not given start from the serve defaults.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import orjson
import typer

from contender.cli.options import TrackingUri
from contender.registry.routing_tag import (
    InvalidRouting,
    check_weight,
    next_routing,
    parse_tag,
    tag_value,
)
from contender.routing.table import Routing
from contender.settings import Settings


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _flags_default() -> Routing:
    fields = Settings.model_fields
    return Routing(fields["challenger_weight"].default, fields["testing"].default)


def route(
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    challenger_weight: Annotated[
        float | None, typer.Option(help="Share of requests the challenger answers (0 to 1).")
    ] = None,
    testing: Annotated[
        bool | None,
        typer.Option("--testing/--no-testing", help="Score the challenger on every request."),
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Write the routing tag (revision + 1) and print the new routing."""
    from mlflow.exceptions import MlflowException

    from contender.registry.client import MlflowRegistryClient

    try:
        weight = None if challenger_weight is None else check_weight(challenger_weight)
    except InvalidRouting as error:
        raise typer.BadParameter(str(error), param_hint="--challenger-weight") from None
    try:
        client = MlflowRegistryClient(tracking_uri)
        # A missing model and an unreachable registry both raise here, before any write.
        tag = client.routing_tag(model, missing_ok=False)
        try:
            current = parse_tag(tag) if tag is not None else _flags_default()
        except InvalidRouting as error:
            typer.echo(f"warning: overwriting an invalid routing tag: {error}", err=True)
            current = _flags_default()
        if weight is None and testing is None:
            typer.echo(orjson.dumps(asdict(current)).decode())
            return
        routing = next_routing(current, weight, testing)
        client.write_routing_tag(model, tag_value(routing))
    except MlflowException as error:
        raise _fail(f"the registry refused: {error.message}") from None
    typer.echo(orjson.dumps(asdict(routing)).decode())
    typer.echo(
        f"routing of {model} is now revision {routing.revision}; running services apply it "
        "at their next registry poll",
        err=True,
    )
