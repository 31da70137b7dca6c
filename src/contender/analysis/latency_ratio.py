"""The latency guardrail on an interval: challenger p99 / champion p99, time-block bootstrap.

`operations.guardrails` compares two point p99s, so a noisy tail can fail or pass it by
chance. `latency_ratio` puts a `1 - alpha` percentile interval around the ratio and
decides on the interval:

- "fail" when `ci.lower > max_ratio`: the challenger is clearly slower than allowed;
- "pass" when `ci.upper <= max_ratio`: the data show it is not slower than allowed;
- "inconclusive" otherwise, and always below `min_rows` latencies on either arm (a p99
  of a few hundred requests rests on a handful of them), never "pass" on too little data.

Inputs are the latencies of the *paired* requests, one entry per request, in time order.
A NaN (not logged, or masked by the caller, e.g. to keep each arm's p99 on the requests it
answered as `operations` does) is dropped **per arm**, not pairwise: each arm's p99 uses
every latency it logged, and both arms still share the time axis, so a resampled block
carries both arms' latencies of the same stretch of time. Dropping pairwise would empty
the comparison when the arms answer disjoint requests.

Why a paired time-block bootstrap: the two arms run on the same machines at the same
moments, so their latencies share load (positively correlated), and load drifts slowly
(autocorrelated in time). Resampling blocks of consecutive requests (Kuensch 1989, "The
jackknife and the bootstrap for general stationary observations") keeps the dependence
within a block, and using the *same* block indices for both arms keeps the cross-arm
correlation, which narrows the ratio's interval. Blocks wrap around the end (the circular
block bootstrap, Politis & Romano 1992, "A circular block-resampling procedure for
stationary data"), so every request is equally likely to be drawn. The default block
length is `round(n ** (1/3))`, the rate Hall, Horowitz & Jing (1995, "On blocking rules
for the bootstrap with dependent data") show is optimal for variance and distribution
estimation. The bootstrap of a sample quantile is consistent (Bickel & Freedman 1981), and
percentile intervals are transformation-respecting, so log or not does not matter.

Speed: a replicate is represented by how many times it draws each request (a block adds 1
to a run of consecutive requests: one difference array and a cumulative sum), and a
replicate's quantile is read off the cumulative counts of the arm's sorted latencies with
one `searchsorted`, without sorting any replicate. Replicates are processed in chunks so
the `chunk x n` count matrix stays under `_MAX_CELLS` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contender.analysis.data import FloatArray, IntArray

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
_MAX_CELLS = 1 << 22  # entries of one chunk's (replicates x requests) count matrix


@dataclass(frozen=True)
class LatencyRatio:
    """Challenger p99 / champion p99 with its interval and the guardrail's verdict."""

    ratio: float
    ci: tuple[float, float]
    n_champion: int
    """Latencies logged by the champion (non-NaN entries)."""
    n_challenger: int
    status: str
    """`"pass"`, `"fail"` or `"inconclusive"`."""


def default_block_size(n: int) -> int:
    """`round(n ** (1/3))`, at least 1 (Hall, Horowitz & Jing 1995)."""
    return max(1, int(np.rint(np.cbrt(n))))


def block_counts(n: int, block_size: int, n_replicates: int, rng: np.random.Generator) -> IntArray:
    """(replicates, n) times each request is drawn by a circular block bootstrap.

    Each replicate draws `ceil(n / block_size)` block starts uniformly from `0..n-1`; a
    block covers `block_size` consecutive requests, wrapping past the end, and the last
    block is cut so that every replicate has exactly `n` requests. Built as a difference
    array (+1 where a block starts, -1 past its end, a wrapping block split in two) and one
    cumulative sum per replicate.
    """
    n_blocks = -(-n // block_size)
    lengths = np.full(n_blocks, block_size, dtype=np.int64)
    lengths[-1] = n - block_size * (n_blocks - 1)
    starts = rng.integers(0, n, size=(n_replicates, n_blocks))
    ends = starts + lengths
    wraps = ends > n
    width = n + 1
    row = width * np.arange(n_replicates, dtype=np.int64)[:, None]
    row_of_wrap = np.broadcast_to(row, wraps.shape)[wraps]
    plus = np.concatenate([(starts + row).ravel(), row_of_wrap])
    minus = np.concatenate([(np.minimum(ends, n) + row).ravel(), ends[wraps] - n + row_of_wrap])
    size = n_replicates * width
    delta = np.bincount(plus, minlength=size) - np.bincount(minus, minlength=size)
    counts = np.cumsum(delta.reshape(n_replicates, width)[:, :n], axis=1)
    return counts.astype(np.int64, copy=False)


def _order_statistics(cumulative: IntArray, ranks: IntArray) -> IntArray:
    """Per row: the first column whose cumulative count exceeds the row's rank.

    Rows are nondecreasing, so offsetting row r by r * (row maximum + 1) turns the matrix
    into one sorted array and a single `searchsorted` answers every row.
    """
    n_rows, n_columns = cumulative.shape
    stride = int(cumulative[:, -1].max(initial=0)) + 1
    offsets = stride * np.arange(n_rows, dtype=np.int64)
    flat = (cumulative + offsets[:, None]).ravel()
    where = np.searchsorted(flat, ranks + offsets, side="right") - n_columns * np.arange(n_rows)
    return np.asarray(np.clip(where, 0, n_columns - 1), dtype=np.int64)


def weighted_quantiles(sorted_values: FloatArray, counts: IntArray, quantile: float) -> FloatArray:
    """Per row of `counts`: the `quantile` of `sorted_values` repeated `counts` times.

    Matches `np.quantile(..., method="linear")` on the expanded sample: position
    `h = quantile * (K - 1)` with `K` the row's total count, interpolated between the
    order statistics `floor(h)` and `floor(h) + 1`. A row with `K = 0` gives NaN.
    """
    n_rows, n_values = counts.shape
    if n_values == 0:
        return np.full(n_rows, np.nan)
    cumulative = np.cumsum(counts, axis=1)
    totals = cumulative[:, -1]
    last = np.maximum(totals - 1, 0)
    position = quantile * last
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, last)
    lo = sorted_values[_order_statistics(cumulative, low)]
    hi = sorted_values[_order_statistics(cumulative, high)]
    return np.where(totals > 0, lo + (position - low) * (hi - lo), np.nan)


def _arm_quantiles(
    counts: IntArray, ascending: IntArray, values: FloatArray, missing: IntArray, quantile: float
) -> FloatArray:
    """Replicate quantiles of one arm: `values` (sorted) logged at requests `ascending`.

    Only the top of the sorted latencies decides a high quantile, so the order statistics
    are first sought among the `m` largest values (a `replicates x m` problem instead of
    `replicates x n`); replicates that draw too few of them fall back to the full count.
    """
    n_rows, n = counts.shape
    k = len(values)
    if k == 0:
        return np.full(n_rows, np.nan)
    totals = (
        np.full(n_rows, n, dtype=np.int64) - counts[:, missing].sum(axis=1)
        if len(missing)
        else np.full(n_rows, n, dtype=np.int64)
    )
    last = np.maximum(totals - 1, 0)
    position = quantile * last
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, last)
    m = min(k, int(np.ceil(3 * (1 - quantile) * k)) + 64)
    top = ascending[::-1][:m]
    top_values = values[::-1][:m]
    cumulative = np.cumsum(counts[:, top], axis=1)
    # Ranks from the top: ascending rank j is descending rank K - 1 - j.
    from_top_low, from_top_high = last - low, last - high
    resolved = cumulative[:, -1] > from_top_low
    lo = top_values[_order_statistics(cumulative, from_top_low)]
    hi = top_values[_order_statistics(cumulative, from_top_high)]
    out = np.where(totals > 0, lo + (position - low) * (hi - lo), np.nan)
    if not resolved.all():
        rows = np.flatnonzero(~resolved)
        out[rows] = weighted_quantiles(values, counts[np.ix_(rows, ascending)], quantile)
    return out


def bootstrap_ratios(
    champion_ms: FloatArray,
    challenger_ms: FloatArray,
    *,
    rng: np.random.Generator,
    n_replicates: int,
    block_size: int,
    quantile: float,
) -> FloatArray:
    """Replicates of challenger / champion `quantile`, same time blocks for both arms."""
    n = len(champion_ms)
    arms = []
    for latencies in (champion_ms, challenger_ms):
        missing = np.isnan(latencies)
        present = np.flatnonzero(~missing)
        ascending = present[np.argsort(latencies[present], kind="stable")]
        arms.append((ascending, latencies[ascending], np.flatnonzero(missing)))
    out = np.empty(n_replicates, dtype=np.float64)
    chunk = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, n_replicates, chunk):
        size = min(chunk, n_replicates - start)
        counts = block_counts(n, block_size, size, rng)
        champion, challenger = (
            _arm_quantiles(counts, ascending, values, missing, quantile)
            for ascending, values, missing in arms
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start : start + size] = np.where(champion > 0, challenger / champion, np.nan)
    return out


def latency_ratio(
    champion_ms: FloatArray,
    challenger_ms: FloatArray,
    *,
    rng: np.random.Generator,
    n_replicates: int = 1000,
    block_size: int | None = None,
    quantile: float = 0.99,
    min_rows: int = 2000,
    max_ratio: float = 1.5,
    alpha: float = 0.05,
) -> LatencyRatio:
    """Challenger / champion latency `quantile` on paired requests in time order.

    `champion_ms[i]` and `challenger_ms[i]` are the two arms' latencies of the i-th paired
    request (NaN: not logged, dropped per arm). The interval is the `1 - alpha` percentile
    interval of a paired circular block bootstrap (see the module docstring); replicates
    whose champion quantile is not positive are left out. Status as in the module docstring.
    """
    champion_ms = np.asarray(champion_ms, dtype=np.float64)
    challenger_ms = np.asarray(challenger_ms, dtype=np.float64)
    if champion_ms.shape != challenger_ms.shape or champion_ms.ndim != 1:
        raise ValueError("champion_ms and challenger_ms must be 1-D arrays of equal length")
    n_champion = int((~np.isnan(champion_ms)).sum())
    n_challenger = int((~np.isnan(challenger_ms)).sum())
    nan_pair = (float("nan"), float("nan"))
    if n_champion == 0 or n_challenger == 0:
        return LatencyRatio(float("nan"), nan_pair, n_champion, n_challenger, INCONCLUSIVE)
    champion_q = float(np.nanquantile(champion_ms, quantile))
    challenger_q = float(np.nanquantile(challenger_ms, quantile))
    ratio = challenger_q / champion_q if champion_q > 0 else float("nan")
    replicates = bootstrap_ratios(
        champion_ms,
        challenger_ms,
        rng=rng,
        n_replicates=n_replicates,
        block_size=block_size or default_block_size(len(champion_ms)),
        quantile=quantile,
    )
    finite = replicates[np.isfinite(replicates)]
    ci = (
        (float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2)))
        if len(finite)
        else nan_pair
    )
    return LatencyRatio(
        ratio,
        ci,
        n_champion,
        n_challenger,
        _status(ci, n_champion, n_challenger, min_rows, max_ratio),
    )


def _status(
    ci: tuple[float, float], n_champion: int, n_challenger: int, min_rows: int, max_ratio: float
) -> str:
    if min(n_champion, n_challenger) < min_rows or not np.isfinite(ci).all():
        return INCONCLUSIVE
    if ci[0] > max_ratio:
        return FAIL
    if ci[1] <= max_ratio:
        return PASS
    return INCONCLUSIVE
