"""What a hot swap costs the requests around it: p50/p99 latency, quiet vs swapping.

    .venv/bin/python bench/swap_latency.py [--cycles 5] [--quiet-s 10] [--clients 4] [--testing]

What it does, in order:
1. starts a private `mlflow server` and registers the bench champion (version 1,
   Production) and challenger (version 2, Staging), as `bench/run.py` does;
2. starts `contender serve` with an admin token and a poll interval of an hour, so that
   swaps happen exactly when `/admin/reload` asks (the same `poll` the poller runs);
3. promotes version 2, unmeasured: from then on every champion is the same kind of model
   (the challenger's, the heavier one), so every window serves the same way;
4. drives it from a separate process (so the bench's own MLflow calls never hold the
   load generator's GIL) with `--clients` closed-loop clients sending one-row requests;
5. per cycle: a "quiet" window of `--quiet-s` seconds, then
   a. register a new version of the same model and move it to Staging (not measured),
      then a "load" window: a reload (download, load and warm-up in the service, then the
      swap) and 0.5 s more;
   b. promote it (`MlflowRegistryEditor.promote`, what `contender promote` runs; not
      measured), then a "promote" window: a reload (the loaded challenger is reused as
      champion, the old champion dropped) and 0.5 s more;
6. prints p50/p99/max per kind of window (a request counts where it was sent), the
   ratios to quiet, the reload events, and the download count (one per cycle: reuse).

The registry writes are left out of the windows: in real life they run on another
machine, here they would load the same two cores (the `mlflow server` too). By default
testing is off: a challenger, once loaded, is not scored, so the windows differ by the
swap work alone. With `--testing` the load window scores two models per
request and the others one, which shows in p50 and is not the swap's doing.
Every process runs in its own session and is stopped in a `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
from rich.console import Console
from rich.table import Table

# `python bench/swap_latency.py` puts bench/ on sys.path; the harness package lives there.
from harness.models import COLUMNS, MODEL_NAME, start_tracking_server, train_and_register
from harness.procs import Server, free_port, running, wait_http_ok

TOKEN = "swap-bench"
POLL_INTERVAL_S = 3600  # swaps only when the bench asks, so the windows are exact
TAIL_S = 0.5
WARMUP_S = 3.0

Sample = tuple[float, float, int]
"""(sent at, on the system-wide monotonic clock; latency ms; HTTP status, 0: no answer)"""


def _load_worker(url: str, body: bytes, clients: int, stop: Event, out: Connection) -> None:
    """Runs in its own process; sends its samples back once `stop` is set."""

    async def client(http: httpx2.AsyncClient, samples: list[Sample]) -> None:
        headers = {"content-type": "application/json"}
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answer = await http.post("/invocations", content=body, headers=headers)
                status = answer.status_code
            except httpx2.HTTPError:
                status = 0
            samples.append((sent, (time.monotonic() - sent) * 1000, status))

    async def main() -> list[Sample]:
        samples: list[Sample] = []
        limits = httpx2.Limits(max_connections=clients)
        async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
            await asyncio.gather(*(client(http, samples) for _ in range(clients)))
        return samples

    out.send(asyncio.run(main()))


class Load:
    """Closed-loop clients in a process of their own, from `start` to `stop`."""

    def __init__(self, url: str, body: bytes, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_load_worker, args=(url, body, clients, self._stop, send), daemon=True
        )

    def start(self) -> None:
        self._process.start()

    def stop(self) -> list[Sample]:
        self._stop.set()
        samples: list[Sample] = self._receive.recv() if self._receive.poll(60) else []
        self._process.join(10)
        return samples


@dataclass(frozen=True)
class Window:
    kind: str  # "quiet", "load" (a new challenger loaded and swapped in) or "promote"
    start: float
    end: float


def figures(samples: list[Sample], windows: Sequence[Window]) -> dict[str, float]:
    sent = np.array([s[0] for s in samples])
    ms = np.array([s[1] for s in samples])
    ok = np.array([s[2] == 200 for s in samples])
    chosen = np.zeros(len(sent), dtype=bool)
    for window in windows:
        chosen |= (sent >= window.start) & (sent < window.end)
    picked = ms[chosen]
    seconds = sum(w.end - w.start for w in windows)
    nan = float("nan")
    return {
        "n": float(chosen.sum()),
        "rate": float(chosen.sum() / seconds) if seconds else nan,
        "p50": float(np.percentile(picked, 50)) if len(picked) else nan,
        "p99": float(np.percentile(picked, 99)) if len(picked) else nan,
        "max": float(picked.max()) if len(picked) else nan,
        "errors": float((~ok & chosen).sum()),
    }


class Bench:
    """The registry and the service's admin API, as the swap windows use them."""

    def __init__(self, tracking_uri: str, service_url: str) -> None:
        from mlflow import MlflowClient

        from contender.registry.promotion import MlflowRegistryEditor

        self.client = MlflowClient(tracking_uri)
        self.editor = MlflowRegistryEditor(tracking_uri)
        self.http = httpx2.Client(
            base_url=service_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )

    def reload(self, champion: str, challenger: str | None) -> None:
        answer = self.http.post("/admin/reload").json()
        if (answer["champion"], answer["challenger"]) != (champion, challenger):
            raise RuntimeError(f"unexpected slots after reload: {answer}")

    def stage_new_challenger(self, source: str) -> str:
        import mlflow

        from contender.registry.client import stages_quietly

        version = str(mlflow.register_model(source, MODEL_NAME).version)
        with stages_quietly():
            self.client.transition_model_version_stage(
                MODEL_NAME, version, "Staging", archive_existing_versions=True
            )
        return version

    def promote(self) -> None:
        from contender.settings import Selector

        self.editor.promote(MODEL_NAME, Selector.STAGES)

    def swap(self, kind: str, champion: str, challenger: str | None) -> Window:
        """The service's side of a registry change: a reload, and what it leaves behind."""
        start = time.monotonic()
        self.reload(champion, challenger)
        time.sleep(TAIL_S)  # freed models, new batchers, GC: they count too
        return Window(kind, start, time.monotonic())

    def cycle(self, source: str, champion: str) -> tuple[list[Window], str]:
        """A new challenger loaded, then promoted; the registry writes are not measured
        (they run elsewhere in real life, and here on the same two cores)."""
        version = self.stage_new_challenger(source)
        loaded = self.swap("load", champion, version)
        self.promote()
        return [loaded, self.swap("promote", version, None)], version

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = self.http.get("/status").json()
        return document


def start_contender(workdir: Path, tracking_uri: str, testing: bool) -> tuple[Server, str]:
    port = free_port()
    argv = [
        sys.executable, "-m", "contender", "serve",
        "--model", MODEL_NAME, "--tracking-uri", tracking_uri,
        "--port", str(port), "--poll-interval", str(POLL_INTERVAL_S),
        "--testing" if testing else "--no-testing",
        "--log-store", f"sqlite:///{workdir / 'log.db'}",
    ]  # fmt: skip
    server = Server(
        "contender",
        argv,
        log_path=workdir / "contender.log",
        env={"CONTENDER_ADMIN_TOKEN": TOKEN},
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/ready", server, deadline_s=240)
    return server, url


def report(console: Console, samples: list[Sample], windows: list[Window], bench: Bench) -> None:
    table = Table(title="one-row requests, latency by window (ms)")
    for column in ("window", "requests", "req/s", "p50", "p99", "max", "errors"):
        table.add_column(column, justify="left" if column == "window" else "right")
    by_kind: dict[str, dict[str, float]] = {}
    for kind in ("quiet", "load", "promote", "swap"):
        chosen = [w for w in windows if w.kind == kind or (kind == "swap" and w.kind != "quiet")]
        by_kind[kind] = f = figures(samples, chosen)
        seconds = sum(w.end - w.start for w in chosen)
        label = (f"{kind} ({len(chosen)} x {seconds / len(chosen):.1f} s)" if kind != "swap"
                 else "swap = load + promote")  # fmt: skip
        table.add_row(
            label, f"{f['n']:.0f}", f"{f['rate']:.0f}", f"{f['p50']:.2f}", f"{f['p99']:.2f}",
            f"{f['max']:.1f}", f"{f['errors']:.0f}",
        )  # fmt: skip
    console.print(table)
    quiet = by_kind["quiet"]
    for kind in ("swap", "load", "promote"):
        f = by_kind[kind]
        console.print(
            f"{kind} / quiet: p50 x{f['p50'] / quiet['p50']:.2f}, "
            f"p99 x{f['p99'] / quiet['p99']:.2f}, max x{f['max'] / quiet['max']:.2f}"
        )
    status = bench.status()
    for event in status["reloads"]:
        console.print(
            f"  {event['slot']:<10} {event['old_version']} -> {event['new_version']}: "
            f"{event['outcome']} ({event['load_seconds']:.2f} s)"
        )
    console.print(f"downloads: {status['downloads']} (2 at start, then one per cycle)")


def run_cycles(
    console: Console, bench: Bench, load: Load, cycles: int, quiet_s: float, source: str
) -> tuple[list[Sample], list[Window]]:
    windows: list[Window] = []
    champion = bench.status()["champion"]["version"]
    load.start()
    try:
        time.sleep(WARMUP_S)  # connections open, caches hot: not measured
        for cycle in range(cycles):
            start = time.monotonic()
            time.sleep(quiet_s)
            windows.append(Window("quiet", start, time.monotonic()))
            swap, champion = bench.cycle(source, champion)
            windows.extend(swap)
            took = [f"{w.kind} {w.end - w.start - TAIL_S:.2f} s" for w in swap]
            console.print(f"cycle {cycle + 1}: version {champion}: {', '.join(took)}")
    finally:
        samples = load.stop()
    return samples, windows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--quiet-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--testing", action="store_true", help="score the challenger too")
    args = parser.parse_args(argv)
    console = Console()
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    with tempfile.TemporaryDirectory(prefix="contender-swap-") as tmp:
        workdir = Path(tmp)
        console.print("starting mlflow server, training and registering (about a minute)")
        tracking, tracking_uri = start_tracking_server(workdir)
        with running(tracking):
            registered = train_and_register(tracking_uri)
            logging.getLogger("mlflow").setLevel(logging.WARNING)  # registration chatter
            source = _source(tracking_uri, registered.challenger_version)
            service, url = start_contender(workdir, tracking_uri, args.testing)
            with running(service):
                bench = Bench(tracking_uri, url)
                bench.promote()  # from now on the heavier model serves, in every window
                bench.reload(registered.challenger_version, None)
                row = registered.sample[COLUMNS].iloc[[0]].to_numpy().tolist()
                body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": row}})
                load = Load(url, body.encode(), args.clients)
                samples, windows = run_cycles(
                    console, bench, load, args.cycles, args.quiet_s, source
                )
                report(console, samples, windows, bench)
    return 0


def _source(tracking_uri: str, version: str) -> str:
    """The logged model behind a version: registered again, it makes a new version."""
    from mlflow import MlflowClient

    return str(MlflowClient(tracking_uri).get_model_version(MODEL_NAME, version).source)


if __name__ == "__main__":
    sys.exit(main())
