"""`contender`: one Typer app; each command lives in its own module."""

from __future__ import annotations

import typer

from contender.cli.autopilot import autopilot
from contender.cli.demo import demo
from contender.cli.log import log_app
from contender.cli.log_files import import_log, recover
from contender.cli.promote import promote, rollback
from contender.cli.replay import replay
from contender.cli.report import report
from contender.cli.route import route
from contender.cli.serve import serve

app = typer.Typer(
    name="contender",
    help="Champion/challenger serving for models in the MLflow Model Registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve)
app.command("report")(report)
app.command("promote")(promote)
app.command("rollback")(rollback)
app.command("route")(route)
app.command("replay")(replay)
app.command("autopilot")(autopilot)
app.command("demo")(demo)
log_app.command("import")(import_log)
log_app.command("recover")(recover)
app.add_typer(log_app, name="log")
