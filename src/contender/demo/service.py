"""`contender serve` as a subprocess of the demo: started, waited for, always stopped.

The service runs in its own session so a Ctrl-C in the terminal reaches only the demo,
which then stops the service itself with SIGTERM: the service drains its log writer on
SIGTERM, so every answered request is in the store once `stop` returns.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx2 as httpx

from contender.demo.workspace import Workspace
from contender.errors import ContenderError


class DemoError(ContenderError):
    """A step of the demo failed; the message says which and where to look."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The demo's subprocesses get their store and settings from their command lines only:
# a CONTENDER_SELECTOR=aliases or MLFLOW_REGISTRY_URI meant for real work must not leak in.
_LEAKY_PREFIXES = ("CONTENDER_", "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_URI")


def subprocess_env(**extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    return {**kept, **extra}


@dataclass(frozen=True)
class ServiceConfig:
    model: str
    port: int
    admin_token: str
    poll_interval_s: float = 2.0
    challenger_weight: float = 0.5


def serve_command(workspace: Workspace, config: ServiceConfig) -> list[str]:
    """The command line, as a user would type it after `python -m`."""
    return [
        "contender",
        "serve",
        "--model",
        config.model,
        "--tracking-uri",
        workspace.tracking_uri,
        "--log-store",
        workspace.log_store,
        "--port",
        str(config.port),
        "--poll-interval",
        f"{config.poll_interval_s:g}",
        "--challenger-weight",
        f"{config.challenger_weight:g}",
    ]


class Service:
    """A running `contender serve`; use as a context manager so it is always stopped."""

    def __init__(self, workspace: Workspace, config: ServiceConfig) -> None:
        self.url = f"http://127.0.0.1:{config.port}"
        self.log_path = workspace.service_log
        self.command = serve_command(workspace, config)
        self._log: IO[bytes] = self.log_path.open("wb")
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "contender", *self.command[1:]],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(CONTENDER_ADMIN_TOKEN=config.admin_token),
            start_new_session=True,
        )

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    def output_tail(self, n_chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:]

    def wait_ready(self, client: httpx.Client, timeout_s: float) -> float:
        """Seconds until `/ready` answered 200; DemoError if the process dies or the
        deadline passes."""
        started = time.monotonic()

        def ready() -> bool:
            if not self.alive():
                raise DemoError(
                    f"contender serve exited with status {self._popen.returncode}; "
                    f"its output ({self.log_path}) ends with:\n{self.output_tail()}"
                )
            return client.get(f"{self.url}/ready", timeout=2.0).status_code == 200

        wait_until(ready, timeout_s, f"{self.url}/ready to answer 200", self.log_path)
        return time.monotonic() - started

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (graceful: the log is flushed), then SIGKILL past the deadline.
        Returns the exit status; idempotent."""
        if self.alive():
            os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
        if not self._log.closed:
            self._log.close()
        return self._popen.returncode


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, log_path: Path) -> None:
    """Call `check` until it is true; connection errors count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise DemoError(f"gave up after {timeout_s:g} s waiting for {what} (see {log_path})")
