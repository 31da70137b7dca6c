"""Child processes: start in their own session, find by session, measure, stop.

Every server is started with `start_new_session=True`, so its pid is also its
session id and its process group id. That makes the whole tree (uvicorn workers,
MLServer's inference pool) easy to find in /proc, to measure, and to stop with
one `killpg`, without a psutil dependency.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx2

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TreeSample:
    """CPU and memory of every live process in one session, at one moment."""

    cpu_s: float
    rss_bytes: int
    processes: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces; everything after its ')' is fixed.
    return raw[raw.rindex(")") + 2 :].split()


def sample_session(session_id: int) -> TreeSample:
    """Sum utime+stime and RSS over the processes whose session is `session_id`.

    Reaped children's CPU shows up in their parent's cutime/cstime; it is added
    too, so a worker that exits during a run is still counted.
    """
    cpu_ticks = rss_pages = count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        # After ')': state ppid pgrp session ... utime(11) stime(12) cutime(13) cstime(14) ...
        if fields is None or int(fields[3]) != session_id:
            continue
        cpu_ticks += sum(int(v) for v in fields[11:15])
        rss_pages += int(fields[21])
        count += 1
    return TreeSample(cpu_ticks / CLOCK_TICKS_PER_S, rss_pages * PAGE_BYTES, count)


class Server:
    """One started server process tree; `stop()` ends all of it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> TreeSample:
        return sample_session(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        # Workers may outlive the leader; the group id is still the leader's pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._log.close()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


class ServerFailed(RuntimeError):
    """A server exited or never became ready; `log_tail` says why."""

    def __init__(self, summary: str, log_tail: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.log_tail = log_tail


def wait_http_ok(url: str, server: Server, *, deadline_s: float) -> None:
    """Poll `url` until it answers 2xx; fail early if the server exits."""
    end = time.monotonic() + deadline_s
    with httpx2.Client(timeout=2.0) as client:
        while time.monotonic() < end:
            if server.process.poll() is not None:
                raise ServerFailed(
                    f"{server.name} exited with code {server.process.returncode}",
                    server.log_tail(),
                )
            with contextlib.suppress(httpx2.HTTPError):
                if client.get(url).is_success:
                    return
            time.sleep(0.25)
    raise ServerFailed(f"{server.name} not ready after {deadline_s:.0f} s", server.log_tail())
