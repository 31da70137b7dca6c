"""Helpers shared by the integration tests: free ports, polling, processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx2 as httpx
import psycopg

T = TypeVar("T")
POSTGRES = "postgresql://127.0.0.1:5432"
"""The local PostgreSQL the tests use (trust auth); `test` is its administration database."""
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll_until(
    check: Callable[[], T | None], *, timeout_s: float, interval_s: float = 0.1, what: str = ""
) -> T:
    """Call `check` until it returns something other than None, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError) as error:
            last_error = error
            result = None
        if result is not None:
            return result
        time.sleep(interval_s)
    raise TimeoutError(f"gave up after {timeout_s} s waiting for {what} (last error: {last_error})")


def run_cli(args: Sequence[str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a one-shot command to completion, capturing its output."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout_s, check=False
    )


class Process:
    """A subprocess in its own process group, with its output captured to a file."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            list(args),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.alive():
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def wait_http_ok(url: str, process: Process, timeout_s: float) -> None:
    def check() -> bool | None:
        if not process.alive():
            raise AssertionError(f"process exited early:\n{process.output()[-4000:]}")
        return True if httpx.get(url, timeout=2.0).status_code == 200 else None

    poll_until(check, timeout_s=timeout_s, interval_s=0.25, what=url)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database on the local PostgreSQL: yields its URL, drops it afterwards
    (connections allowed again first, in case a test refused them)."""
    name = f"contender_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
