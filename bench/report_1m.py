"""`contender report --json` over one million logged one-row requests, end to end.

    .venv/bin/python bench/report_1m.py [--rows 1000000] [--keep DIR]

1. creates a SQLite store through `SqlPredictionStore` (so the schema is the real one),
   then bulk-inserts the records and one label per request with `executemany` in large
   transactions (the service's one-by-one path would take minutes);
2. runs `python -m contender report --json` in a subprocess and times it, wall clock,
   including interpreter start-up and imports;
3. checks the JSON (row counts, a verdict) and prints the seconds against the
   60-second budget.

The log is a binary classifier (`[[p0, p1]]` rows); the challenger is slightly better,
10 % of requests are served by it; 0.1 % of each model's calls fail (the challenger's
failures on its 10 % fall back to the champion).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from contender.predictions.store import SqlPredictionStore

MODEL = "bench-model"
BUDGET_S = 60.0
_CHUNK = 100_000
_PREDICTION_COLUMNS = (
    "request_id, timestamp, model_name, inputs, served_by, fallback, routing_draw, "
    "routing_key, champion_version, champion_predictions, champion_latency_ms, "
    "champion_error, challenger_version, challenger_predictions, challenger_latency_ms, "
    "challenger_error"
)


def _probabilities(labels: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    logits = strength * (2 * labels - 1) + rng.normal(0.0, 1.5, len(labels))
    return np.asarray(1 / (1 + np.exp(-logits)))


def _records(
    n: int, seed: int
) -> Iterator[tuple[list[tuple[object, ...]], list[tuple[object, ...]]]]:
    """Chunks of (prediction rows, feedback rows) ready for executemany."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, _CHUNK):
        size = min(_CHUNK, n - start)
        labels = (rng.random(size) < 0.3).astype(np.int64)
        champion = _probabilities(labels, 1.0, rng).round(6)
        challenger = _probabilities(labels, 1.1, rng).round(6)
        draws = rng.random(size)
        failed = rng.random(size) < 0.001
        champion_failed = rng.random(size) < 0.001
        champion_ms = rng.lognormal(np.log(8.0), 0.3, size).round(3)
        challenger_ms = rng.lognormal(np.log(9.0), 0.3, size).round(3)
        predictions = []
        for i in range(size):
            index = start + i
            served = "challenger" if draws[i] >= 0.9 and not failed[i] else "champion"
            predictions.append(
                (
                    f"req-{index:08d}",
                    f"2025-01-01T{index // 3_600_000 % 24:02d}:{index // 60_000 % 60:02d}:"
                    f"{index // 1000 % 60:02d}.{index % 1000:03d}000+00:00",
                    MODEL,
                    f'{{"columns": ["x"], "data": [[{champion[i]}]]}}',
                    served,
                    int(bool(failed[i] and draws[i] >= 0.9)),
                    float(draws[i]),
                    None,
                    "3",
                    "null" if champion_failed[i] else f"[[{1 - champion[i]:.6f}, {champion[i]}]]",
                    float(champion_ms[i]),
                    "boom" if champion_failed[i] else None,
                    "4",
                    "null" if failed[i] else f"[[{1 - challenger[i]:.6f}, {challenger[i]}]]",
                    float(challenger_ms[i]),
                    "timeout" if failed[i] else None,
                )
            )
        feedback = [(f"req-{start + i:08d}", 0, str(labels[i])) for i in range(size)]
        yield predictions, feedback


def write_store(path: Path, n: int, seed: int = 7) -> float:
    """Create the store with the real schema, bulk-load it; returns the seconds taken."""
    started = time.perf_counter()
    SqlPredictionStore(f"sqlite:///{path}").close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" * 16)
    with connection:
        for predictions, feedback in _records(n, seed):
            connection.executemany(
                f"INSERT INTO predictions ({_PREDICTION_COLUMNS}) VALUES ({placeholders})",
                predictions,
            )
            connection.executemany("INSERT INTO feedback VALUES (?, ?, ?)", feedback)
    connection.close()
    return time.perf_counter() - started


def time_report(path: Path) -> tuple[float, dict[str, object]]:
    command = [
        sys.executable, "-m", "contender", "report",
        "--model", MODEL, "--log-store", f"sqlite:///{path}", "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"report failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the store here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        directory = args.keep or Path(temporary)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "report-bench.db"
        path.unlink(missing_ok=True)
        write_s = write_store(path, args.rows)
        print(f"wrote {args.rows:,} records with labels in {write_s:.1f} s")
        elapsed, report = time_report(path)
    assert report["n_rows"] == args.rows, report["n_rows"]
    assert report["n_labeled"], "no labeled rows"
    print(
        f"contender report --json over {args.rows:,} rows: {elapsed:.1f} s "
        f"({elapsed / BUDGET_S:.0%} of the {BUDGET_S:.0f} s budget); "
        f"verdict {report['verdict']}: {report['verdict_reason']}"
    )
    if elapsed > BUDGET_S:
        raise SystemExit(f"over budget: {elapsed:.1f} s > {BUDGET_S:.0f} s")


if __name__ == "__main__":
    main()
