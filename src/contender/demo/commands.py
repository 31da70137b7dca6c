"""contender's own one-shot commands, run as a user would: subprocesses, so the demo
depends only on their command line (SPEC section 5)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from contender.demo.service import DemoError, subprocess_env
from contender.demo.workspace import Workspace


@dataclass(frozen=True)
class CommandResult:
    command: list[str]
    """As a user types it, starting with `contender`."""
    output: str


def promote_command(workspace: Workspace, model: str) -> list[str]:
    return [
        "contender",
        "promote",
        "--model",
        model,
        "--tracking-uri",
        workspace.tracking_uri,
        "--log-store",
        workspace.log_store,
    ]


def replay_command(workspace: Workspace, model: str, version: str) -> list[str]:
    return [
        "contender",
        "replay",
        "--model",
        model,
        "--version",
        version,
        "--log-store",
        workspace.log_store,
        "--tracking-uri",
        workspace.tracking_uri,
    ]


def run(command: list[str], width: int, timeout_s: float = 180.0) -> CommandResult:
    """Run `command` (starting with `contender`) with this interpreter, its Rich output
    `width` columns wide; DemoError with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "contender", *command[1:]],
        capture_output=True,
        text=True,
        env=subprocess_env(COLUMNS=str(width)),
        timeout=timeout_s,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise DemoError(f"`{' '.join(command)}` exited with status {result.returncode}:\n{output}")
    return CommandResult(command, output)
