"""The prediction log on PostgreSQL at volume: sustained writes, report and export.

    .venv/bin/python bench/pg_volume.py [--quick] [--write-seconds 20] [--repeats 3]

(a) Sustained writes, 2 replicas x 2 workers: four writer processes, each running
    `contender.predictions.writer.LogWriter` over its own `SqlPredictionStore`, as a
    serving worker does, against one fresh database. In each process a thread
    generates realistic records (`harness/records.py`) and submits them as fast as the
    writer takes them (at most 4 batches in flight: an unbounded queue would only
    measure memory). Records landed per second are read from PostgreSQL itself
    (`count(*)` at the start and end of the window), after a warm-up; median of
    `--repeats` runs, each in a fresh database, with the store's COPY and, beside it,
    its executemany of before (`--no-before` skips those). 1-row and 100-row records
    (`--write-rows`). What runs is the log path alone, not `contender serve`: no HTTP,
    no models.
(b) `contender report --json` on 1 and 10 million one-row records (`--quick`: 100,000
    and 1 million), about 30 % labeled, bulk-loaded with COPY from bench/report_1m.py's
    generator (uuid-like request ids); and `contender log export --format jsonl
    -o /dev/null` on the 1 million (`--quick`: the 100,000). Each command is a child
    process, timed wall clock including start-up, its peak RSS from `wait4`; median of
    `--repeats` runs (the largest log: `--repeats-largest`, default 2).

Writes `bench/results/pg_volume.json` and `bench/results/pg_volume.md`. Every database
is `contender_bench_*`, dropped at the end. About 20 minutes in full, 8 with `--quick`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from contender.metrics import ServiceMetrics
from contender.predictions.record import Feedback, PredictionRecord
from contender.predictions.store import SqlPredictionStore
from contender.predictions.writer import LogWriter
from harness.pg import bulk_load, count_rows, fresh_database
from harness.records import RecordFactory

RESULTS = Path(__file__).parent / "results"
WRITERS = 4
IN_FLIGHT = 4 * 512
MODEL = "bench-model"


# --- (a) one writer process ---------------------------------------------------------


class _CountingStore:
    """The store, counting what it has stored (the feeder's back-pressure)."""

    def __init__(self, store: SqlPredictionStore, insert: str) -> None:
        self._store = store
        self._insert = insert
        self.stored = 0

    def append_many(self, records: Sequence[PredictionRecord]) -> None:
        if self._insert == "executemany":  # the store's PostgreSQL path before COPY
            self._store._insert_many(records)
        else:
            self._store.append_many(records)
        self.stored += len(records)

    def add_feedback(self, items: Sequence[Feedback]) -> list[str]:
        return self._store.add_feedback(items)

    def iter_records(self, since: datetime | None = None) -> Any:
        return self._store.iter_records(since)

    def labels(self) -> Any:
        return self._store.labels()

    def close(self) -> None:
        self._store.close()


def writer_process(url: str, rows: int, seed: int, insert: str) -> None:
    """Run until SIGTERM: this thread submits records to a LogWriter."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = _CountingStore(SqlPredictionStore(url), insert)
    writer = LogWriter(store, ServiceMetrics(CollectorRegistry()))
    writer.start()
    factory = RecordFactory(rows, seed=seed)
    submitted = 0
    while store.stored == 0:  # ready once a first batch went in
        for record in factory.make(64):
            writer.submit(record)
        submitted += 64
        time.sleep(0.01)
    print("ready", flush=True)
    while not stop.is_set():
        if submitted - store.stored >= IN_FLIGHT:
            time.sleep(0.0005)
            continue
        for record in factory.make(128):
            writer.submit(record)
        submitted += 128
    writer.close()
    print(f"done submitted={submitted} stored={store.stored}", flush=True)
    store.close()


@dataclass
class WriteRun:
    rows: int
    insert: str
    records: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


def _timed_count(url: str) -> tuple[float, int]:
    before = time.perf_counter()
    count = count_rows(url)
    return (before + time.perf_counter()) / 2, count


def measure_writes(
    rows: int, insert: str, window_s: float, warmup_s: float, compression: str = "lz4"
) -> WriteRun:
    with fresh_database("writes") as url:
        SqlPredictionStore(url).close()  # the schema, before four processes race to it
        if compression != "lz4":  # as a store before migration 3 compresses
            with psycopg.connect(url, autocommit=True) as connection:
                for column in ("inputs", "champion_predictions", "challenger_predictions"):
                    connection.execute(
                        f"ALTER TABLE predictions ALTER COLUMN {column} "
                        f"SET COMPRESSION {compression}"
                    )
        command = [sys.executable, __file__, "--writer", url, "--rows", str(rows)]
        command += ["--insert", insert]
        procs = [
            subprocess.Popen([*command, "--seed", str(i)], stdout=subprocess.PIPE, text=True)
            for i in range(WRITERS)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline().strip()
                if line != "ready":
                    raise SystemExit(f"a writer did not start: {line!r}")
            time.sleep(warmup_s)
            start_at, start_count = _timed_count(url)
            time.sleep(window_s)
            end_at, end_count = _timed_count(url)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)
        return WriteRun(rows, insert, end_count - start_count, end_at - start_at)


# --- (b) report and export on a bulk-loaded log ---------------------------------------


@dataclass
class CommandRun:
    what: str
    records: int
    seconds: float
    max_rss_mb: float


def run_child(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process, from wait4."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command[3:5]} failed ({proc.returncode}): {errors.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def _report_command(url: str) -> list[str]:
    return [
        sys.executable, "-m", "contender", "report",
        "--model", MODEL, "--log-store", url, "--json",
    ]  # fmt: skip


def _export_command(url: str) -> list[str]:
    return [
        sys.executable, "-m", "contender", "log", "export",
        "--log-store", url, "--format", "jsonl", "-o", os.devnull,
    ]  # fmt: skip


def _check_report(url: str, n: int) -> dict[str, Any]:
    done = subprocess.run(_report_command(url), capture_output=True, text=True, check=True)
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["n_requests"] == n, report["n_requests"]
    assert 0.25 < report["n_labeled"] / n < 0.35, report["n_labeled"]
    return report


def measure_log(
    n: int, repeats: int, export: bool, console: Console
) -> tuple[list[CommandRun], dict[str, Any]]:
    runs: list[CommandRun] = []
    with fresh_database(f"log{n}") as url:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"loading {n:,} records", total=n)
            started = time.perf_counter()
            bulk_load(url, n, progress=lambda done: progress.update(task, completed=done))
        load_s = time.perf_counter() - started
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE predictions")
            connection.execute("CHECKPOINT")
        first = _check_report(url, n)  # also warms the caches, as a second run would find
        for i in range(repeats):
            seconds, rss = run_child(_report_command(url))
            runs.append(CommandRun("report --json", n, seconds, rss))
            console.print(f"  report {n:,} run {i + 1}: {seconds:.1f} s, {rss:,.0f} MiB")
        if export:
            for i in range(repeats):
                seconds, rss = run_child(_export_command(url))
                runs.append(CommandRun("log export --format jsonl", n, seconds, rss))
                console.print(f"  export {n:,} run {i + 1}: {seconds:.1f} s, {rss:,.0f} MiB")
    meta = {"records": n, "load_s": round(load_s, 1), "verdict": first["verdict"]}
    return runs, meta


# --- results -------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def write_results(
    writes: list[WriteRun], commands: list[CommandRun], loads: list[dict[str, Any]], args: Any
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# PostgreSQL at volume (`bench/pg_volume.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"PostgreSQL {_server_version()}; medians, each run listed in brackets.",
        "",
        "| sustained writes: 4 writer processes (LogWriter + SqlPredictionStore, "
        f"as 2 replicas x 2 workers), JSON columns {args.write_compression} "
        "| records/s landed |",
        "|---|---|",
    ]
    for rows, insert in sorted({(run.rows, run.insert) for run in writes}):
        rates = [run.records_per_s for run in writes if (run.rows, run.insert) == (rows, insert)]
        each = ", ".join(f"{rate:,.0f}" for rate in rates)
        how = "COPY (now)" if insert == "copy" else "executemany (the insert before COPY)"
        label = f"{rows} input row{'s' if rows > 1 else ''} per record, {how}"
        lines.append(f"| {label} | **{_median(rates):,.0f}** ({each}) |")
    if commands:
        lines += ["", "| command | records | wall time | peak RSS |", "|---|---|---|---|"]
    for what, n in dict.fromkeys((c.what, c.records) for c in commands):
        mine = [c for c in commands if (c.what, c.records) == (what, n)]
        seconds = ", ".join(f"{c.seconds:.1f}" for c in mine)
        rss = ", ".join(f"{c.max_rss_mb:,.0f}" for c in mine)
        lines.append(
            f"| `contender {what}` | {n:,} | **{_median([c.seconds for c in mine]):.1f} s** "
            f"({seconds}) | **{_median([c.max_rss_mb for c in mine]):,.0f} MiB** ({rss}) |"
        )
    if loads:
        lines += ["", "Bulk loads (COPY, not measured above): " + ", ".join(
        f"{m['records']:,} records in {m['load_s']:.0f} s" for m in loads
    ) + "."]  # fmt: skip
    (RESULTS / f"{args.results_name}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{args.results_name}.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                "postgresql": _server_version(),
                "options": vars(args),
                "writes": [{**asdict(w), "records_per_s": w.records_per_s} for w in writes],
                "commands": [asdict(c) for c in commands],
                "loads": loads,
            },
            indent=2,
        )
        + "\n"
    )


def _server_version() -> str:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test") as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M records only")
    parser.add_argument("--write-seconds", type=float, default=20.0)
    parser.add_argument("--write-rows", default="1,100", help="input rows per record, a list")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repeats-largest", type=int, default=2)
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument("--skip-logs", action="store_true")
    parser.add_argument("--writer", help=argparse.SUPPRESS)  # the writer process: its URL
    parser.add_argument("--rows", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--insert",
        default="copy",
        help="writers: copy (the store now) or executemany (before); "
        "the main process measures both unless --no-before",
    )
    parser.add_argument("--no-before", action="store_true", help="skip the executemany runs")
    parser.add_argument(
        "--write-compression",
        default="lz4",
        choices=["lz4", "pglz"],
        help="the JSON columns' compression for the write runs (pglz: as before migration 3)",
    )
    parser.add_argument("--results-name", default="pg_volume", help="results/<name>.json and .md")
    args = parser.parse_args()
    if args.writer:
        writer_process(args.writer, args.rows, args.seed, args.insert)
        return
    console = Console()
    writes: list[WriteRun] = []
    if not args.skip_writes:
        inserts = ["copy"] if args.no_before else ["copy", "executemany"]
        for rows in (int(value) for value in args.write_rows.split(",")):
            for i in range(args.repeats):
                for insert in inserts if i % 2 == 0 else inserts[::-1]:
                    run = measure_writes(
                        rows, insert, args.write_seconds, 3.0, args.write_compression
                    )
                    writes.append(run)
                    console.print(
                        f"writes, {rows} row(s) per record, {insert}, run {i + 1}: "
                        f"{run.records_per_s:,.0f} records/s "
                        f"({run.records:,} in {run.seconds:.1f} s)"
                    )
    sizes = (100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)
    commands: list[CommandRun] = []
    loads: list[dict[str, Any]] = []
    if not args.skip_logs:
        for n in sizes:
            repeats = args.repeats if n == sizes[0] else args.repeats_largest
            runs, meta = measure_log(n, repeats, export=n == sizes[0], console=console)
            commands += runs
            loads.append(meta)
    write_results(writes, commands, loads, args)
    table = Table(title="PostgreSQL at volume (medians)")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for rows in sorted({w.rows for w in writes}):
        rates = [w.records_per_s for w in writes if w.rows == rows]
        table.add_row(
            f"4 writer processes, {rows} row(s)/record", f"{_median(rates):,.0f} records/s"
        )
    for what, n in dict.fromkeys((c.what, c.records) for c in commands):
        mine = [c for c in commands if (c.what, c.records) == (what, n)]
        table.add_row(
            f"{what}, {n:,} records",
            f"{_median([c.seconds for c in mine]):.1f} s, "
            f"{_median([c.max_rss_mb for c in mine]):,.0f} MiB",
        )
    console.print(table)
    console.print(f"wrote results/{args.results_name}.json and .md")


if __name__ == "__main__":
    main()
