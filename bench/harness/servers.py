"""The servers under test, how to start each, and how to speak to each.

| target        | server                                   | endpoint, protocol                   |
|---------------|------------------------------------------|--------------------------------------|
| `mlflow`      | `mlflow models serve --env-manager local` | POST /invocations, MLflow scoring    |
| `mlserver`    | MLServer 1.7.1 + mlserver-mlflow         | POST /invocations, MLflow scoring    |
| `mlserver-v2` | the same MLServer process                | POST /v2/models/champion/infer (V2)  |
| `contender`   | `contender serve`, challenger weight 0   | POST /invocations, MLflow scoring    |
| `contender-w2`| the same with `--workers 2`              | POST /invocations, MLflow scoring    |

The isolation case (`--isolation`): per costly challenger `K` in `gil`, `hgb`
(`heavy.py`), registered model `bench-K` served twice, one server process each:
`contender-K-only` (`--no-testing`: the champion alone, the baseline) and
`contender-K-shadow` (`--challenger-weight 0`: both scored, champion served). Their
default cases are `ISOLATION_CASES` (100row-c8, 1row-c64); the shadow server then
runs 1row-c1 right after 1row-c64, the coverage-recovery check.

Every contender server logs to a SQLite store of its own, `<server>-log.db` in the
work directory, where the bench counts what both arms scored in each run.

MLServer's `/invocations` is a custom handler of its MLflow runtime that calls the
model directly: adaptive batching (max_batch_size 32, max_batch_time 5 ms here) only
applies on the V2 path, hence the two MLServer targets.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from harness.load import Case
from harness.models import COLUMNS, Registered, download_champion
from harness.procs import Server, free_port, wait_http_ok
from harness.results import ISOLATION

Protocol = Literal["mlflow", "v2"]
MLSERVER_MODEL = "champion"
READY_DEADLINE_S = 240.0


@dataclass(frozen=True)
class Target:
    name: str
    server: str  # targets with the same server share one process
    path: str
    protocol: Protocol
    description: str
    # Both arms are scored: the share of requests both scored is read from its log store.
    shadow: bool = False
    # Its own cases, in order, when --cases is not given (None: the bench's defaults).
    cases: tuple[Case, ...] | None = None
    # The costly challenger's kind (heavy.py) for the isolation targets.
    heavy: str | None = None


# The same history on both servers; the 100-row case first, so that what 64 connections
# leave behind (an open breaker, a queue) does not colour it. Shadow servers then run
# 1row-c1 right after 1row-c64: does everything get scored again once the load is light?
ISOLATION_CASES = {
    "only": (Case(100, 8), Case(1, 64)),
    "shadow": (Case(100, 8), Case(1, 64), Case(1, 1)),
}


def _isolation_targets() -> tuple[Target, ...]:
    targets = []
    for kind, (only, shadow) in ISOLATION.items():
        targets += [
            Target(
                only, only, "/invocations", "mlflow",
                f"contender serve --no-testing, champion of bench-{kind} alone",
                cases=ISOLATION_CASES["only"], heavy=kind,
            ),
            Target(
                shadow, shadow, "/invocations", "mlflow",
                f"contender serve, weight 0, costly {kind} challenger in shadow",
                shadow=True, cases=ISOLATION_CASES["shadow"], heavy=kind,
            ),
        ]  # fmt: skip
    return tuple(targets)


TARGETS = (
    Target("mlflow", "mlflow", "/invocations", "mlflow", "mlflow models serve (1 uvicorn worker)"),
    Target("mlserver", "mlserver", "/invocations", "mlflow", "MLServer 1.7.1, MLflow endpoint"),
    Target(
        "mlserver-v2",
        "mlserver",
        f"/v2/models/{MLSERVER_MODEL}/infer",
        "v2",
        "MLServer 1.7.1, V2 endpoint, adaptive batching 32 / 5 ms",
    ),
    Target(
        "contender", "contender", "/invocations", "mlflow", "contender serve, weight 0", shadow=True
    ),
    Target(
        "contender-w2",
        "contender-w2",
        "/invocations",
        "mlflow",
        "contender serve --workers 2, weight 0",
        shadow=True,
    ),
    *_isolation_targets(),
)
TARGET_NAMES = tuple(t.name for t in TARGETS)
ISOLATION_NAMES = tuple(t.name for t in TARGETS if t.heavy is not None)


@dataclass(frozen=True)
class Context:
    workdir: Path
    registered: Registered
    mlserver_bin: Path | None


def request_body(protocol: Protocol, rows: pd.DataFrame) -> bytes:
    if protocol == "mlflow":
        payload: dict[str, Any] = {
            "dataframe_split": {"columns": COLUMNS, "data": rows[COLUMNS].to_numpy().tolist()}
        }
    else:
        payload = {
            "inputs": [
                {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
                for c in COLUMNS
            ]
        }
    return json.dumps(payload).encode()


def parse_predictions(protocol: Protocol, answer: Any) -> np.ndarray:
    if protocol == "mlflow":
        return np.asarray(answer["predictions"], dtype=float)
    output = answer["outputs"][0]
    return np.asarray(output["data"], dtype=float).reshape(output["shape"])


def _start_mlflow(ctx: Context, port: int) -> tuple[Server, str]:
    reg = ctx.registered
    argv = [
        sys.executable, "-m", "mlflow", "models", "serve",
        "-m", f"models:/{reg.model_name}/{reg.champion_version}",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    # It execs `uvicorn` through bash: the venv's bin must be on PATH.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = {"MLFLOW_TRACKING_URI": reg.tracking_uri, "PATH": path}
    return Server("mlflow", argv, log_path=ctx.workdir / "mlflow-serve.log", env=env), "/ping"


def _start_mlserver(ctx: Context, port: int) -> tuple[Server, str]:
    if ctx.mlserver_bin is None:
        raise RuntimeError("the MLServer venv was not built")
    repo = ctx.workdir / "mlserver-repo"
    model_dir = repo / MLSERVER_MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    artifacts = download_champion(ctx.registered, model_dir / "download")
    settings = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
        "debug": False,
    }
    model_settings = {
        "name": MLSERVER_MODEL,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "max_batch_size": 32,
        "max_batch_time": 0.005,
        "parameters": {"uri": str(artifacts)},
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    argv = [str(ctx.mlserver_bin), "start", str(repo)]
    server = Server("mlserver", argv, log_path=ctx.workdir / "mlserver.log", cwd=repo)
    return server, f"/v2/models/{MLSERVER_MODEL}/ready"


def log_store_path(ctx: Context, server_name: str) -> Path:
    """The SQLite prediction log of one contender server."""
    return ctx.workdir / f"{server_name}-log.db"


def _start_contender(
    ctx: Context,
    port: int,
    *,
    name: str = "contender",
    workers: int = 1,
    heavy: str | None = None,
    testing: bool = True,
) -> tuple[Server, str]:
    reg = ctx.registered
    model = reg.model_name if heavy is None else reg.heavy[heavy].model_name
    routing = ["--challenger-weight", "0"] if testing else ["--no-testing"]
    argv = [
        sys.executable, "-m", "contender", "serve",
        "--model", model, "--tracking-uri", reg.tracking_uri,
        "--host", "127.0.0.1", "--port", str(port),
        *routing, "--workers", str(workers),
        "--log-store", f"sqlite:///{log_store_path(ctx, name)}",
    ]  # fmt: skip
    server = Server(name, argv, log_path=ctx.workdir / f"{name}.log", cwd=ctx.workdir)
    return server, "/ready"


STARTERS: dict[str, Callable[[Context, int], tuple[Server, str]]] = {
    "mlflow": _start_mlflow,
    "mlserver": _start_mlserver,
    "contender": _start_contender,
    "contender-w2": partial(_start_contender, name="contender-w2", workers=2),
    **{
        target.server: partial(
            _start_contender, name=target.server, heavy=target.heavy, testing=target.shadow
        )
        for target in TARGETS
        if target.heavy is not None
    },
}


def start(server_name: str, ctx: Context) -> tuple[Server, str]:
    """Start a server and wait until it is ready; returns it and its base URL."""
    port = free_port()
    server, ready_path = STARTERS[server_name](ctx, port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(base_url + ready_path, server, deadline_s=READY_DEADLINE_S)
    except BaseException:
        server.stop()
        raise
    return server, base_url


def servers_for(targets: Sequence[Target]) -> list[tuple[str, list[Target]]]:
    """Group targets by server, in the order of TARGETS."""
    grouped: dict[str, list[Target]] = {}
    for target in targets:
        grouped.setdefault(target.server, []).append(target)
    return list(grouped.items())
