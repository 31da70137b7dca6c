"""Driving a server with wrk and reading back what the Lua script reports.

wrk runs with ONE thread whatever the connection count: the machine has 2 cores,
shared with the server under test, and one wrk thread comfortably issues tens of
thousands of requests a second, far above what a Python model server answers, so
a second thread would only take CPU from the server. wrk is closed-loop: each
connection sends its next request when the previous answer arrives, so
`connections` is the concurrency.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "invocations.lua"
RESULT_PREFIX = "BENCH_RESULT "


@dataclass(frozen=True)
class Case:
    """One load shape: `rows` per request, `connections` in flight."""

    rows: int
    connections: int

    @property
    def name(self) -> str:
        return f"{self.rows}row-c{self.connections}"


DEFAULT_CASES = (Case(1, 1), Case(1, 8), Case(1, 64), Case(100, 8))


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    status_errors: int
    socket_errors: int

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def run_wrk(
    wrk: str, url: str, body_file: Path, *, connections: int, duration_s: float
) -> WrkResult:
    argv = [
        wrk, "-t", "1", "-c", str(connections), "-d", f"{max(1, round(duration_s))}s",
        "--timeout", "10s", "-s", str(LUA_SCRIPT), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file)}
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, check=False, timeout=duration_s + 60
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len(RESULT_PREFIX) :])
    duration = raw["duration_us"] / 1e6
    socket_errors = sum(
        raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    return WrkResult(
        requests=raw["requests"],
        duration_s=duration,
        requests_per_s=raw["requests"] / duration if duration else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        mean_ms=raw["latency_mean_us"] / 1000,
        max_ms=raw["latency_max_us"] / 1000,
        status_errors=raw["status_errors"],
        socket_errors=socket_errors,
    )
