"""Replay speed: `contender replay` over a million logged one-row requests, against a floor.

    .venv/bin/python bench/replay.py [--quick] [--records N] [--batch-rows N] [--keep]

In a temporary directory: a local MLflow store (SQLite, no server) with a seeded
LogisticRegression on 20 float columns registered as `bench-replay` version 1 (pyfunc
answering `predict_proba`), and an SQLite prediction log filled with `--records` one-row
records of that model (1,000,000; `--quick` 100,000). Then:

- `contender replay --model bench-replay --version 1` as a child process: wall time,
  rows/s (records / wall, model loading included), the rows/s the command itself prints
  (scoring only) and the child's peak RSS (VmRSS sampled every 0.2 s, VmHWM, and wait4's
  ru_maxrss); afterwards the `replays` table must hold one error-free row per record;
- the floor, in a child of its own: `mlflow.pyfunc.load_model` of the same version, the
  same records' inputs read and parsed into one DataFrame (timed apart), and ONE
  `predict` over all of them; its rows/s and peak RSS;
- the same replay again: it must score nothing, so its time is the cost of finding
  that out (counting, the anti-join, loading the model).

It prints a table and writes `bench/results/replay.json` and `replay.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
CONTENDER = Path(sys.executable).with_name("contender")
MODEL = "bench-replay"
VERSION = "1"
N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
SEED = 11
FILL_CHUNK = 50_000
RSS_EVERY_S = 0.2
FLOOR_CHUNK = 10_000
console = Console() if sys.stdout.isatty() else Console(width=120)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="logged records")
    parser.add_argument("--quick", action="store_true", help="100,000 records, for trying it")
    parser.add_argument(
        "--batch-rows", type=int, default=None, help="passed to replay (default: its own)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    # The floor runs in a child of this script, so that its memory is its own.
    parser.add_argument("--floor-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--log-db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.records = 100_000
    return args


# --- setup -----------------------------------------------------------------------------


def train_and_register(workdir: Path, tracking_uri: str) -> Any:
    """The fitted model, logged and registered as MODEL version 1."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    features, labels = make_classification(
        n_samples=4000, n_features=N_FEATURES, n_informative=12, random_state=SEED
    )
    frame = pd.DataFrame(features, columns=COLUMNS)
    model = LogisticRegression(max_iter=1000).fit(frame, labels)
    mlflow.set_tracking_uri(tracking_uri)
    # With a SQLite store the default artifact root is ./mlruns of the current directory.
    experiment = mlflow.create_experiment(MODEL, artifact_location=(workdir / "art").as_uri())
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment):
        warnings.simplefilter("ignore")
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(frame, model.predict_proba(frame)),
            input_example=frame.head(3),
            pyfunc_predict_fn="predict_proba",
            # Left to infer them, MLflow spends about 10 s.
            pip_requirements=["scikit-learn", "numpy", "pandas"],
            registered_model_name=MODEL,
        )
    return model


_INSERT = (
    "INSERT INTO predictions (request_id, timestamp, model_name, inputs, served_by, fallback,"
    " champion_version, champion_predictions, champion_latency_ms)"
    " VALUES (?, ?, ?, ?, 'champion', 0, ?, ?, 1.0)"
)


def fill_log(log_db: Path, model: Any, n: int) -> float:
    """N one-row records of MODEL, as the service would log them; seconds taken."""
    import pandas as pd

    from contender.predictions.store import SqlPredictionStore

    SqlPredictionStore(f"sqlite:///{log_db}").close()  # the schema, at its latest version
    rng = np.random.default_rng(SEED)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    header = b'{"columns":' + orjson.dumps(COLUMNS) + b',"data":[['
    started = time.perf_counter()
    connection = sqlite3.connect(log_db)
    # A throwaway file: durability per transaction is not what is measured.
    connection.execute("PRAGMA synchronous=OFF")
    with (
        contextlib.closing(connection),
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task(f"logging {n:,} records", total=n)
        for first in range(0, n, FILL_CHUNK):
            count = min(FILL_CHUNK, n - first)
            features = rng.standard_normal((count, N_FEATURES))
            proba = model.predict_proba(pd.DataFrame(features, columns=COLUMNS))
            rows = []
            for offset, (cells, answer) in enumerate(
                zip(features.tolist(), proba.tolist(), strict=True)
            ):
                i = first + offset
                rows.append(
                    (
                        f"req-{i:08d}",
                        (start + timedelta(milliseconds=i)).isoformat(timespec="microseconds"),
                        MODEL,
                        (header + orjson.dumps(cells)[1:] + b"]}").decode(),
                        VERSION,
                        orjson.dumps([answer]).decode(),
                    )
                )
            with connection:
                connection.executemany(_INSERT, rows)
            progress.update(task, advance=count)
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - started


# --- measuring a child -----------------------------------------------------------------


@dataclass
class ChildRun:
    seconds: float
    peak_rss_mib: float
    """VmHWM, or the largest VmRSS sample if larger (the last live reading may be late)."""
    sampled_rss_mib: float
    hwm_mib: float
    ru_maxrss_mib: float
    stdout: str
    stderr: str


def _status_kib(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                found[name] = int(value.split()[0])
    return found


def run_child(command: list[str], workdir: Path) -> ChildRun:
    """Run to the end, sampling memory on the side; exit on failure."""
    out, err = workdir / "child.out", workdir / "child.err"
    peaks = {"VmRSS": 0, "VmHWM": 0}
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        done = threading.Event()

        def sample() -> None:
            # A zombie's status has no Vm lines, so the last live reading stays.
            while not done.is_set():
                for name, kib in _status_kib(proc.pid).items():
                    peaks[name] = max(peaks[name], kib)
                done.wait(RSS_EVERY_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Only a cross-check: Linux carries the parent's peak RSS across exec into the
        # child's ru_maxrss (getrusage(RUSAGE_CHILDREN) too), so a child lighter than
        # this process reads as heavy as it. VmHWM of the live child is its own.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout_text, stderr_text = out.read_text(), err.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{command[1:3]} failed ({proc.returncode}): {stderr_text[-3000:]}")
    ru = usage.ru_maxrss / 1024
    sampled, hwm = peaks["VmRSS"] / 1024, peaks["VmHWM"] / 1024
    return ChildRun(seconds, max(sampled, hwm), sampled, hwm, ru, stdout_text, stderr_text)


_SCORED = re.compile(
    r"scored ([\d,]+) records \(([\d,]+) rows\) in ([\d.]+) s(?: \(([\d,]+) rows/s\))?"
)


def reported(stderr: str) -> tuple[int, float, float | None]:
    """(records, seconds, rows/s) from replay's closing line."""
    match = _SCORED.search(stderr)
    if match is None:
        raise SystemExit(f"no summary line in replay's output: {stderr[-2000:]}")
    rate = match.group(4)
    return (
        int(match.group(1).replace(",", "")),
        float(match.group(3)),
        float(rate.replace(",", "")) if rate else None,
    )


def check_replays(log_db: Path, n: int) -> None:
    with contextlib.closing(sqlite3.connect(log_db)) as connection:
        total, failed = connection.execute(
            "SELECT count(*), count(error) FROM replays WHERE version = ?", (VERSION,)
        ).fetchone()
    if total != n or failed:
        raise SystemExit(f"replays: {total:,} rows for {n:,} records, {failed:,} with an error")


# --- the floor (child) -----------------------------------------------------------------


def floor_child(tracking_uri: str, log_db: Path) -> None:
    """Load, read + parse, one predict; the figures as JSON on stdout."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    import mlflow
    import pandas as pd

    started = time.perf_counter()
    mlflow.set_tracking_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{VERSION}")
    load_s = time.perf_counter() - started
    read_s = parse_s = 0.0
    blocks: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    with contextlib.closing(sqlite3.connect(log_db)) as connection:
        cursor = connection.execute(
            "SELECT inputs FROM predictions WHERE model_name = ? ORDER BY timestamp, request_id",
            (MODEL,),
        )
        while True:
            started = time.perf_counter()
            texts = [text for (text,) in cursor.fetchmany(FLOOR_CHUNK)]
            read_s += time.perf_counter() - started
            if not texts:
                break
            started = time.perf_counter()
            # The cheapest honest parse, a chunk at a time as the replay reads them: one
            # orjson call (as `parse_json_column` does), then the cells into one array.
            parsed = orjson.loads("[" + ",".join(texts) + "]")
            blocks.append(np.array([record["data"][0] for record in parsed], dtype=np.float64))
            parse_s += time.perf_counter() - started
    started = time.perf_counter()
    frame = pd.DataFrame(np.concatenate(blocks), columns=COLUMNS)
    del blocks
    parse_s += time.perf_counter() - started
    started = time.perf_counter()
    answer = model.predict(frame)
    predict_s = time.perf_counter() - started
    assert len(answer) == len(frame), (len(answer), len(frame))
    print(
        json.dumps(
            {
                "rows": len(frame),
                "load_s": load_s,
                "read_s": read_s,
                "parse_s": parse_s,
                "predict_s": predict_s,
            }
        )
    )


# --- results ---------------------------------------------------------------------------


@dataclass
class Results:
    records: int
    batch_rows: int | None
    fill_s: float
    replay_wall_s: float
    replay_rows_per_s: float
    replay_scoring_s: float
    replay_reported_rows_per_s: float | None
    replay_peak_rss_mib: float
    replay_rss: dict[str, float]
    floor_load_s: float
    floor_read_s: float
    floor_parse_s: float
    floor_predict_s: float
    floor_rows_per_s: float
    floor_wall_s: float
    floor_peak_rss_mib: float
    floor_rss: dict[str, float]
    ratio_replay_to_floor: float
    floor_end_to_end_rows_per_s: float
    """Rows / (read + parse + predict): the floor of work a replay cannot skip."""
    ratio_replay_to_floor_end_to_end: float
    second_run_s: float
    second_run_peak_rss_mib: float


def _rss(run: ChildRun) -> dict[str, float]:
    return {
        "sampled_vmrss_mib": round(run.sampled_rss_mib, 1),
        "vmhwm_mib": round(run.hwm_mib, 1),
        "ru_maxrss_mib": round(run.ru_maxrss_mib, 1),
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    return {
        name: md.version(name)
        for name in ("mlflow", "scikit-learn", "pandas", "numpy", "sqlalchemy")
    }


def write_results(results: Results, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC)
    versions = _versions()
    (results_dir / "replay.json").write_text(
        json.dumps(
            {
                "when": when.isoformat(timespec="seconds"),
                "machine": {
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average": os.getloadavg(),
                    **versions,
                },
                "results": asdict(results),
            },
            indent=2,
        )
        + "\n"
    )
    r = results
    lines = [
        "# Replay speed (`bench/replay.py`)",
        "",
        f"{when:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} shared cores, Python "
        f"{platform.python_version()}, MLflow {versions['mlflow']}, scikit-learn "
        f"{versions['scikit-learn']}. {r.records:,} logged one-row records (SQLite log), "
        "a LogisticRegression on 20 float columns (pyfunc `predict_proba`).",
        "",
        "| | rows/s | wall time | peak RSS |",
        "|---|---|---|---|",
        f"| `contender replay` (records / wall, model loading included) "
        f"| **{r.replay_rows_per_s:,.0f}** | {r.replay_wall_s:.1f} s "
        f"| {r.replay_peak_rss_mib:,.0f} MiB |",
        f"| `contender replay`, as it reports (scoring only) "
        f"| {r.replay_reported_rows_per_s or 0:,.0f} | {r.replay_scoring_s:.1f} s | |",
        f"| floor: one `pyfunc.predict` over all rows "
        f"| **{r.floor_rows_per_s:,.0f}** | {r.floor_predict_s:.2f} s "
        f"| {r.floor_peak_rss_mib:,.0f} MiB |",
        f"| floor: read + parse the inputs into one DataFrame | "
        f"{r.records / (r.floor_read_s + r.floor_parse_s):,.0f} "
        f"| {r.floor_read_s + r.floor_parse_s:.1f} s "
        f"(read {r.floor_read_s:.1f}, parse {r.floor_parse_s:.1f}) | |",
        f"| second replay (scores nothing) | | {r.second_run_s:.1f} s "
        f"| {r.second_run_peak_rss_mib:,.0f} MiB |",
        "",
        f"Replay / floor (predict only): **{r.ratio_replay_to_floor:.3f}** "
        f"(1 / {1 / r.ratio_replay_to_floor:,.0f}); against the floor's read + parse + "
        f"predict ({r.floor_end_to_end_rows_per_s:,.0f} rows/s): "
        f"**{r.ratio_replay_to_floor_end_to_end:.2f}**. Filling the log took {r.fill_s:.0f} s "
        "(not measured above).",
    ]
    (results_dir / "replay.md").write_text("\n".join(lines) + "\n")


def print_table(r: Results) -> None:
    table = Table(title=f"replay of {r.records:,} one-row records")
    for name in ("", "rows/s", "seconds", "peak RSS MiB"):
        table.add_column(name, justify="left" if not name else "right")
    table.add_row(
        "replay (wall)",
        f"{r.replay_rows_per_s:,.0f}",
        f"{r.replay_wall_s:.1f}",
        f"{r.replay_peak_rss_mib:,.0f}",
    )
    table.add_row(
        "replay (as reported)",
        f"{r.replay_reported_rows_per_s or 0:,.0f}",
        f"{r.replay_scoring_s:.1f}",
        "",
    )
    table.add_row(
        "floor predict",
        f"{r.floor_rows_per_s:,.0f}",
        f"{r.floor_predict_s:.2f}",
        f"{r.floor_peak_rss_mib:,.0f}",
    )
    table.add_row("floor read + parse", "", f"{r.floor_read_s + r.floor_parse_s:.1f}", "")
    table.add_row("second replay", "", f"{r.second_run_s:.1f}", f"{r.second_run_peak_rss_mib:,.0f}")
    console.print(table)
    console.print(
        f"replay / floor: {r.ratio_replay_to_floor:.4f} (predict only), "
        f"{r.ratio_replay_to_floor_end_to_end:.2f} (read + parse + predict)"
    )


# --- main ------------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="contender-replay-"))
    try:
        yield path
    finally:
        if keep:
            console.print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.floor_child:
        floor_child(args.tracking_uri, args.log_db)
        return
    n = args.records
    with workspace(args.keep) as workdir:
        tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        log_db = workdir / "log.db"
        with console.status("MLflow store, training and registering…"):
            model = train_and_register(workdir, tracking_uri)
        fill_s = fill_log(log_db, model, n)
        console.print(f"logged {n:,} records in {fill_s:.1f} s")

        command = [
            str(CONTENDER), "replay", "--model", MODEL, "--version", VERSION,
            "--log-store", f"sqlite:///{log_db}", "--tracking-uri", tracking_uri,
        ]  # fmt: skip
        if args.batch_rows is not None:
            command += ["--batch-rows", str(args.batch_rows)]
        console.print("replaying…")
        first = run_child(command, workdir)
        scored, scoring_s, reported_rate = reported(first.stderr)
        if scored != n:
            raise SystemExit(f"replay scored {scored:,} of {n:,} records: {first.stderr[-2000:]}")
        check_replays(log_db, n)
        console.print(f"  {first.seconds:.1f} s, {first.peak_rss_mib:,.0f} MiB")

        console.print("floor…")
        floor_run = run_child(
            [
                sys.executable, __file__, "--floor-child",
                "--tracking-uri", tracking_uri, "--log-db", str(log_db),
            ],
            workdir,
        )  # fmt: skip
        floor = json.loads(floor_run.stdout.strip().splitlines()[-1])
        console.print(f"  predict {floor['predict_s']:.2f} s, {floor_run.peak_rss_mib:,.0f} MiB")

        console.print("replaying again…")
        second = run_child(command, workdir)
        if "scored 0 records" not in second.stderr:
            raise SystemExit(f"the second replay scored something: {second.stderr[-2000:]}")
        check_replays(log_db, n)

    floor_rate = n / floor["predict_s"]
    replay_rate = n / first.seconds
    end_to_end = n / (floor["read_s"] + floor["parse_s"] + floor["predict_s"])
    results = Results(
        records=n,
        batch_rows=args.batch_rows,
        fill_s=round(fill_s, 1),
        replay_wall_s=round(first.seconds, 2),
        replay_rows_per_s=round(replay_rate),
        replay_scoring_s=scoring_s,
        replay_reported_rows_per_s=reported_rate,
        replay_peak_rss_mib=round(first.peak_rss_mib, 1),
        replay_rss=_rss(first),
        floor_load_s=round(floor["load_s"], 2),
        floor_read_s=round(floor["read_s"], 2),
        floor_parse_s=round(floor["parse_s"], 2),
        floor_predict_s=round(floor["predict_s"], 3),
        floor_rows_per_s=round(floor_rate),
        floor_wall_s=round(floor_run.seconds, 2),
        floor_peak_rss_mib=round(floor_run.peak_rss_mib, 1),
        floor_rss=_rss(floor_run),
        ratio_replay_to_floor=round(replay_rate / floor_rate, 4),
        floor_end_to_end_rows_per_s=round(end_to_end),
        ratio_replay_to_floor_end_to_end=round(replay_rate / end_to_end, 3),
        second_run_s=round(second.seconds, 2),
        second_run_peak_rss_mib=round(second.peak_rss_mib, 1),
    )
    write_results(results, args.results_dir)
    print_table(results)


if __name__ == "__main__":
    main()
