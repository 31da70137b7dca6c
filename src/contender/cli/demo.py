"""`contender demo`: the whole champion/challenger story on an embedded default.

A local MLflow store, two real models, the service, traffic with ground truth, the
report and a promotion picked up by hot reload, all under one folder (default ./demo).
Exit status: 0 when every step showed what it should, 1 with a one-line reason
otherwise, 130 on Ctrl-C or SIGTERM; the service is stopped in every case.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from contender.errors import ContenderError


def _interrupt(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def demo(
    dir: Annotated[
        Path, typer.Option("--dir", help="Demo folder; the files a previous run left are replaced.")
    ] = Path("demo"),
    requests: Annotated[
        int, typer.Option("--requests", min=200, max=20_000, help="Requests with ground truth.")
    ] = 4400,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Service port (0: any free port).")
    ] = 0,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the service up until Ctrl-C.")
    ] = False,
) -> None:
    """Run the champion/challenger story end to end on a local MLflow store."""
    from contender.demo.story import DemoOptions, run

    console = Console()
    options = DemoOptions(root=dir, n_requests=requests, port=port, keep_running=keep_running)
    # SIGTERM unwinds like Ctrl-C, so the service (in its own session) is stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(options, console)
    except ContenderError as error:
        console.print(f"\n[bold red]demo failed:[/] {escape(str(error))}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted; the service was stopped[/]")
        raise typer.Exit(130) from None
