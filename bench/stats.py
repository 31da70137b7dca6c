"""Always-valid decisions in simulation: the bigger runs of tests/unit/analysis/test_sequential.py
and test_power.py.

    .venv/bin/python bench/stats.py [--runs 10000] [--auc-runs 10000] [--seed 0]

With `contender.analysis.sequential.Boundary()` (alpha 0.05, tuned at 5,000 rows) and the
fixed 95 % interval beside it, on the same seeded runs (one request per row):

(a) A/A with daily peeking: 30 looks x 100 rows, t(3) paired differences of mean 0;
    "promote" is the lower bound above zero at any look with at least 200 rows.
(b) Time-uniform coverage over 30 looks x 100 rows: the share of runs whose interval
    misses the true difference at some look, for log-loss and Brier differences
    (logistic truths by Gauss-Hermite quadrature), squared-error differences with t(3)
    noise (truth 0.03 exactly) and AUC differences (binormal, truth exact; DeLong
    recomputed at every look, vectorised over runs, checked against
    `delong.paired_delong` first).
(c) Power by day 30: an effect of 4.5 fixed-horizon standard errors at 5,000 rows,
    looks at round(5000 k / 30) rows, k = 1..30, burn-in 200.
(d) The rows `power.rows_needed` asks for (sd 1, effect 0.05, sequential) simulated at
    exactly that size, one look: the share detected (target 80 %); the same for AUC
    0.75 against 0.80 with `power.auc_rows_needed` (at most 2,000 runs).
(e) `power.auc_rows_needed` for +0.01 AUC (0.80 to 0.81, correlation 0.7, 80 % power)
    at 50 % and 10 % positives, fixed and sequential.

Each rate comes with its binomial standard error. Writes `bench/results/stats.json` and
`bench/results/stats.md`. About two minutes with the defaults on two busy cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from scipy.special import expit
from scipy.stats import norm

from contender.analysis.delong import paired_delong
from contender.analysis.intervals import dense_clusters
from contender.analysis.power import auc_rows_needed, rows_needed
from contender.analysis.sequential import Boundary

# `python bench/stats.py` puts bench/ on sys.path: the repository root holds the tests'
# simulation helpers, which this runs bigger.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.simulations import (
    classifier_truths,
    multipliers,
    running_mean_se,
    vectorised_delong,
)

RESULTS = Path(__file__).parent / "results"
SEQUENTIAL = Boundary()
FIXED = Boundary(mode="fixed")
LOOKS = 30
PER_LOOK = 100
LOOK_ROWS = PER_LOOK * np.arange(1, LOOKS + 1)
BURN_IN = 200
CHUNK = 500  # runs simulated at once: bounds memory to CHUNK x 5,000 rows

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Generate = Callable[[np.random.Generator, int], FloatArray]


@dataclass
class Rate:
    """A share of simulated runs with its binomial standard error."""

    share: float
    runs: int

    @property
    def se(self) -> float:
        return math.sqrt(self.share * (1 - self.share) / self.runs)

    def text(self) -> str:
        return f"{100 * self.share:.2f} % +- {100 * self.se:.2f}"

    def as_dict(self) -> dict[str, float]:
        return {"share": self.share, "se": self.se, "runs": self.runs}


def _any_look(hit: BoolArray) -> BoolArray:
    """Per run (row): true at some look (column)."""
    return np.asarray(hit.any(axis=1), dtype=np.bool_)


def _chunks(runs: int) -> list[int]:
    return [min(CHUNK, runs - start) for start in range(0, runs, CHUNK)]


# --- scenarios: per-row paired differences (champion loss minus challenger loss) -------


def log_loss_differences(rng: np.random.Generator, runs: int) -> FloatArray:
    x = rng.normal(size=(runs, LOOKS * PER_LOOK))
    y = rng.random(size=x.shape) < expit(1.5 * x)
    q1, q2 = expit(x), expit(1.4 * x + 0.2)
    out: FloatArray = np.where(y, np.log(q2) - np.log(q1), np.log1p(-q2) - np.log1p(-q1))
    return out


def brier_differences(rng: np.random.Generator, runs: int) -> FloatArray:
    x = rng.normal(size=(runs, LOOKS * PER_LOOK))
    y = rng.random(size=x.shape) < expit(1.5 * x)
    q1, q2 = expit(x), expit(1.4 * x + 0.2)
    out: FloatArray = (y - q1) ** 2 - (y - q2) ** 2
    return out


def squared_error_differences(rng: np.random.Generator, runs: int) -> FloatArray:
    """y = x + t(3); champion 0.8 x, challenger x + 0.1: mean 0.04 - 0.01 = 0.03."""
    x = rng.normal(size=(runs, LOOKS * PER_LOOK))
    y = x + rng.standard_t(3, size=x.shape)
    out: FloatArray = (y - 0.8 * x) ** 2 - (y - x - 0.1) ** 2
    return out


def missed_at_any_look(
    generate: Generate, truth: float, runs: int, rng: np.random.Generator
) -> dict[str, Rate]:
    missed: dict[str, list[BoolArray]] = {"sequential": [], "fixed": []}
    for size in _chunks(runs):
        mean, se = running_mean_se(generate(rng, size), LOOK_ROWS)
        for boundary in (SEQUENTIAL, FIXED):
            outside = np.abs(mean - truth) > multipliers(boundary, LOOK_ROWS) * se
            missed[boundary.mode].append(_any_look(outside))
    return {mode: Rate(float(np.concatenate(m).mean()), runs) for mode, m in missed.items()}


# --- AUC: DeLong at every look, vectorised over runs --------------------------------------


def binormal_scores(
    rng: np.random.Generator, runs: int, rows: int, auc_a: float, auc_b: float, rho: float
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """30 % positives, scores N(mu y, 1) with AUC Phi(mu / sqrt 2), noise correlation rho."""
    mu_a, mu_b = math.sqrt(2) * norm.ppf(auc_a), math.sqrt(2) * norm.ppf(auc_b)
    positive = rng.random(size=(runs, rows)) < 0.3
    noise = rng.normal(size=(runs, rows))
    champion = mu_a * positive + noise
    other = math.sqrt(1 - rho * rho) * rng.normal(size=(runs, rows))
    challenger = mu_b * positive + rho * noise + other
    return champion, challenger, positive


def check_vectorised_delong(rng: np.random.Generator) -> float:
    """Largest relative gap to `paired_delong` on a few runs and looks (should be ~1e-12)."""
    champion, challenger, positive = binormal_scores(rng, 3, 700, 0.75, 0.80, 0.6)
    looks = np.array([150, 700], dtype=np.int64)
    difference, se = vectorised_delong(champion, challenger, positive, looks)
    worst = 0.0
    for run in range(3):
        for j, n in enumerate(looks):
            cluster, k = dense_clusters(np.arange(n))
            labels = positive[run, :n].astype(np.float64)
            ref = paired_delong(champion[run, :n], challenger[run, :n], labels, cluster, k)
            worst = max(
                worst,
                abs(difference[run, j] / ref.difference - 1),
                abs(se[run, j] / math.sqrt(ref.var_difference) - 1),
            )
    return worst


def auc_missed_at_any_look(runs: int, rng: np.random.Generator) -> tuple[dict[str, Rate], float]:
    truth = 0.80 - 0.75  # binormal_scores sets the true AUCs
    missed: dict[str, list[BoolArray]] = {"sequential": [], "fixed": []}
    for size in _chunks(runs):
        champion, challenger, positive = binormal_scores(
            rng, size, LOOKS * PER_LOOK, 0.75, 0.80, 0.6
        )
        difference, se = vectorised_delong(champion, challenger, positive, LOOK_ROWS)
        for boundary in (SEQUENTIAL, FIXED):
            outside = np.abs(difference - truth) > multipliers(boundary, LOOK_ROWS) * se
            missed[boundary.mode].append(_any_look(outside))
    return {mode: Rate(float(np.concatenate(m).mean()), runs) for mode, m in missed.items()}, truth


# --- decisions ------------------------------------------------------------------------------


def false_promotion(runs: int, rng: np.random.Generator) -> dict[str, Rate]:
    looks = LOOK_ROWS[LOOK_ROWS >= BURN_IN]
    promoted: dict[str, list[BoolArray]] = {"sequential": [], "fixed": []}
    for size in _chunks(runs):
        mean, se = running_mean_se(rng.standard_t(3, size=(size, LOOKS * PER_LOOK)), looks)
        for boundary in (SEQUENTIAL, FIXED):
            lower = mean - multipliers(boundary, looks) * se
            promoted[boundary.mode].append(_any_look(lower > 0))
    return {mode: Rate(float(np.concatenate(p).mean()), runs) for mode, p in promoted.items()}


def power_by_day_30(runs: int, rng: np.random.Generator) -> dict[str, Rate]:
    effect = 4.5 / math.sqrt(SEQUENTIAL.tuning_rows)
    looks = np.round(5000 * np.arange(1, 31) / 30).astype(np.int64)
    looks = looks[looks >= BURN_IN]
    promoted: dict[str, list[BoolArray]] = {"sequential": [], "fixed": []}
    for size in _chunks(runs):
        noise = rng.standard_t(3, size=(size, 5000)) / math.sqrt(3)
        mean, se = running_mean_se(effect + noise, looks)
        for boundary in (SEQUENTIAL, FIXED):
            lower = mean - multipliers(boundary, looks) * se
            promoted[boundary.mode].append(_any_look(lower > 0))
    return {mode: Rate(float(np.concatenate(p).mean()), runs) for mode, p in promoted.items()}


def rows_needed_check(runs: int, rng: np.random.Generator) -> tuple[int, Rate]:
    n = rows_needed(1.0, 0.05, SEQUENTIAL)
    detected = []
    for size in _chunks(runs):
        differences = 0.05 + rng.standard_t(3, size=(size, n)) / math.sqrt(3)
        mean = differences.mean(axis=1)
        se = differences.std(axis=1, ddof=1) / math.sqrt(n)
        detected.append(mean - SEQUENTIAL.multiplier(n) * se > 0)
    return n, Rate(float(np.concatenate(detected).mean()), runs)


def auc_rows_needed_check(runs: int, rng: np.random.Generator) -> tuple[float, int, Rate]:
    """Correlation of the AUC estimates from a pilot, then runs at the rows needed."""
    champion, challenger, positive = binormal_scores(rng, 2000, 500, 0.75, 0.80, 0.5)
    single = [vectorised_auc(scores, positive) for scores in (champion, challenger)]
    correlation = float(np.corrcoef(single[0], single[1])[0, 1])
    n = auc_rows_needed(0.75, 0.80, 0.3, correlation, SEQUENTIAL)
    detected = []
    for size in _chunks(runs):
        champion, challenger, positive = binormal_scores(rng, size, n, 0.75, 0.80, 0.5)
        difference, se = vectorised_delong(champion, challenger, positive, np.array([n]))
        detected.append(difference[:, 0] - SEQUENTIAL.multiplier(n) * se[:, 0] > 0)
    return correlation, n, Rate(float(np.concatenate(detected).mean()), runs)


def vectorised_auc(scores: FloatArray, positive: BoolArray) -> FloatArray:
    """AUC of each run (no ties): Mann-Whitney from the ranks."""
    ranks = np.argsort(np.argsort(scores, axis=1), axis=1) + 1
    m = positive.sum(axis=1)
    k = positive.shape[1] - m
    out: FloatArray = (np.where(positive, ranks, 0).sum(axis=1) - m * (m + 1) / 2) / (m * k)
    return out


def auc_plus_001() -> list[dict[str, Any]]:
    return [
        {
            "positives": prevalence,
            "mode": boundary.mode,
            "rows": auc_rows_needed(0.80, 0.81, prevalence, 0.7, boundary),
        }
        for prevalence in (0.5, 0.1)
        for boundary in (FIXED, SEQUENTIAL)
    ]


# --- results ------------------------------------------------------------------------------


def write_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "options": vars(args),
        "boundary": {
            **asdict(SEQUENTIAL),
            "r_squared": SEQUENTIAL.r_squared,
            "multiplier_at_tuning_rows": SEQUENTIAL.multiplier(SEQUENTIAL.tuning_rows),
        },
        **results,
    }
    (RESULTS / "stats.json").write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    if isinstance(value, Rate):
        return value.as_dict()
    raise TypeError(f"not JSON: {type(value)}")


def markdown(results: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    aa, cov = results["false_promotion"], results["coverage"]
    lines = [
        "# Always-valid decisions in simulation (`bench/stats.py`)",
        "",
        f"`Boundary()`: alpha 0.05, tuned at {SEQUENTIAL.tuning_rows:,} rows (multiplier "
        f"{SEQUENTIAL.multiplier(SEQUENTIAL.tuning_rows):.3f} there, against 1.960 fixed). "
        f"{args.runs:,} runs ({args.auc_runs:,} for AUC), seed {args.seed}, "
        f"{seconds:.0f} s on {os.cpu_count()} cores. Shares +- one binomial standard error.",
        "",
        "| what | sequential | fixed 95 % |",
        "|---|---|---|",
        f"| A/A false promotion, 30 daily looks x 100 rows, t(3), burn-in {BURN_IN} "
        f"| **{aa['sequential'].text()}** | {aa['fixed'].text()} |",
    ]
    for metric, entry in cov.items():
        lines.append(
            f"| missed the truth ({entry['truth']:+.5f}) at some look: {metric} "
            f"| **{entry['sequential'].text()}** | {entry['fixed'].text()} |"
        )
    power = results["power_by_day_30"]
    lines.append(
        "| promoted by day 30, effect 4.5 fixed se at 5,000 rows "
        f"| **{power['sequential'].text()}** | {power['fixed'].text()} |"
    )
    check, auc_check = results["rows_needed_check"], results["auc_rows_needed_check"]
    lines += [
        "",
        f"Rows needed for sd 1, effect 0.05, sequential, 80 % power: {check['rows']:,}; "
        f"simulated at that size, detected in **{check['detected'].text()}**.",
        f"AUC 0.75 against 0.80 (30 % positives, binormal, estimate correlation "
        f"{auc_check['correlation']:.2f} from a pilot): {auc_check['rows']:,} rows; detected "
        f"in **{auc_check['detected'].text()}** of {auc_check['detected'].runs:,} runs "
        "(Hanley-McNeil assumes exponential scores "
        "and overstates the binormal variance, hence above 80 %).",
        f"Vectorised DeLong against `paired_delong`: largest relative gap "
        f"{results['delong_check_gap']:.1e}.",
        "",
        "Rows needed for +0.01 AUC (0.80 to 0.81, correlation 0.7, 80 % power):",
        "",
        "| positives | fixed 95 % | sequential |",
        "|---|---|---|",
    ]
    by = {(e["positives"], e["mode"]): e["rows"] for e in results["auc_plus_001"]}
    for prevalence in (0.5, 0.1):
        lines.append(
            f"| {100 * prevalence:.0f} % | {by[prevalence, 'fixed']:,} "
            f"| {by[prevalence, 'sequential']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs per loss scenario")
    parser.add_argument("--auc-runs", type=int, default=10_000, help="runs for AUC coverage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console()
    started = time.perf_counter()
    seeds = np.random.SeedSequence(args.seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in seeds]
    results: dict[str, Any] = {}
    results["delong_check_gap"] = check_vectorised_delong(rngs[0])
    results["false_promotion"] = false_promotion(args.runs, rngs[1])
    console.print(f"A/A done ({time.perf_counter() - started:.0f} s)")
    truth_log_loss, truth_brier = classifier_truths()
    scenarios: list[tuple[str, Generate, float]] = [
        ("log loss", log_loss_differences, truth_log_loss),
        ("Brier", brier_differences, truth_brier),
        ("squared error, t(3) noise", squared_error_differences, 0.03),
    ]
    coverage: dict[str, dict[str, Any]] = {}
    for (name, generate, truth), rng in zip(scenarios, rngs[2:5], strict=True):
        coverage[name] = {"truth": truth, **missed_at_any_look(generate, truth, args.runs, rng)}
        console.print(f"coverage of {name} done ({time.perf_counter() - started:.0f} s)")
    auc_rates, auc_truth = auc_missed_at_any_look(args.auc_runs, rngs[5])
    coverage["AUC (DeLong)"] = {"truth": auc_truth, **auc_rates}
    console.print(f"coverage of AUC done ({time.perf_counter() - started:.0f} s)")
    results["coverage"] = coverage
    results["power_by_day_30"] = power_by_day_30(args.runs, rngs[6])
    rows, detected = rows_needed_check(args.runs, rngs[7])
    results["rows_needed_check"] = {"rows": rows, "detected": detected}
    correlation, auc_rows, auc_detected = auc_rows_needed_check(
        min(args.runs, 2000), np.random.default_rng(seeds[7].spawn(1)[0])
    )
    results["auc_rows_needed_check"] = {
        "correlation": correlation,
        "rows": auc_rows,
        "detected": auc_detected,
    }
    results["auc_plus_001"] = auc_plus_001()
    seconds = time.perf_counter() - started
    results["seconds"] = seconds
    write_results(results, args)
    (RESULTS / "stats.md").write_text(markdown(results, args, seconds))

    table = Table(title="Always-valid decisions in simulation")
    table.add_column("what")
    table.add_column("sequential", justify="right")
    table.add_column("fixed 95 %", justify="right")
    aa = results["false_promotion"]
    table.add_row("A/A false promotion (30 looks)", aa["sequential"].text(), aa["fixed"].text())
    for name, entry in coverage.items():
        table.add_row(
            f"missed truth at some look: {name}",
            entry["sequential"].text(),
            entry["fixed"].text(),
        )
    power = results["power_by_day_30"]
    table.add_row("promoted by day 30 (4.5 se)", power["sequential"].text(), power["fixed"].text())
    table.add_row(f"rows_needed {rows:,}: detected", detected.text(), "")
    table.add_row(f"auc_rows_needed {auc_rows:,}: detected", auc_detected.text(), "")
    by = {(e["positives"], e["mode"]): e["rows"] for e in results["auc_plus_001"]}
    for prevalence in (0.5, 0.1):
        table.add_row(
            f"rows for +0.01 AUC, {100 * prevalence:.0f} % positives",
            f"{by[prevalence, 'sequential']:,}",
            f"{by[prevalence, 'fixed']:,}",
        )
    console.print(table)
    console.print(f"wrote results/stats.json and .md in {seconds:.0f} s")


if __name__ == "__main__":
    main()
