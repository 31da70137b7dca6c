"""Confidence intervals by bootstrapping whole requests, fast enough for a million rows.

Rows of one request share an input batch and may be correlated, so the resampling unit is
the request (a cluster bootstrap); for one-row requests this is the ordinary bootstrap.

Speed: every bootstrapped metric is a ratio of row sums (`metrics.RatioParts`), so a
replicate needs only per-request sums, weighted by how often each request was drawn.
Past `MAX_BUCKETS` requests, requests are dealt at random into `MAX_BUCKETS` equal
buckets and buckets are resampled instead: a bucket's total is a sum of independent
requests, so resampling buckets estimates the same variance (with `MAX_BUCKETS - 1`
degrees of freedom, plenty for a 95 % interval). Cost: one `bincount` per sum over the
rows, then `n_replicates x MAX_BUCKETS` work, whatever the number of rows.

The same draws serve both models, so differences are paired. Intervals are percentile
intervals; a replicate whose denominator is zero (say, no predicted positive) is NaN
and left out. The random generator is passed in; nothing here seeds itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from contender.analysis.data import FloatArray, IntArray
from contender.analysis.metrics import RatioParts

CONFIDENCE = 0.95
MAX_BUCKETS = 4096
N_REPLICATES = 2000
_CHUNK = 250  # replicates drawn at once: bounds memory to _CHUNK x MAX_BUCKETS counts


@dataclass(frozen=True)
class PairedReplicates:
    """Bootstrap replicates of one metric for both models, on the same draws."""

    champion: FloatArray
    challenger: FloatArray

    @property
    def difference(self) -> FloatArray:
        return self.challenger - self.champion


def dense_clusters(row_request: IntArray) -> tuple[IntArray, int]:
    """Request index per row -> cluster ids 0..K-1 and K."""
    uniques, inverse = np.unique(row_request, return_inverse=True)
    return inverse.astype(np.int64), len(uniques)


def assign_buckets(
    n_clusters: int, rng: np.random.Generator, max_buckets: int = MAX_BUCKETS
) -> tuple[IntArray, int]:
    """Bucket of each cluster: itself when few, else a random equal-size bucket."""
    if n_clusters <= max_buckets:
        return np.arange(n_clusters, dtype=np.int64), n_clusters
    return rng.permutation(n_clusters).astype(np.int64) % max_buckets, max_buckets


def resampled_sums(sums: FloatArray, n_replicates: int, rng: np.random.Generator) -> FloatArray:
    """(B, m) column sums of `sums` (G, m) under B multinomial resamples of its G rows."""
    n_buckets = sums.shape[0]
    out = np.empty((n_replicates, sums.shape[1]), dtype=np.float64)
    # These products are small; BLAS threads only contend for the cores (2x slower here).
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(0, n_replicates, _CHUNK):
            size = min(_CHUNK, n_replicates - start)
            draws = rng.integers(0, n_buckets, size=(size, n_buckets))
            # One bincount for the whole chunk: offset each replicate's draws by its row.
            flat = (draws + n_buckets * np.arange(size)[:, None]).ravel()
            counts = np.bincount(flat, minlength=size * n_buckets).reshape(size, n_buckets)
            out[start : start + size] = counts.astype(np.float64) @ sums
    return out


def _ratio(numerator: FloatArray, denominator: FloatArray, root: bool) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(denominator > 0, numerator / denominator, np.nan)
    return np.sqrt(value) if root else value


def bootstrap_ratio_metrics(
    parts: Mapping[str, tuple[RatioParts, RatioParts]],
    cluster: IntArray,
    n_clusters: int,
    rng: np.random.Generator,
    n_replicates: int = N_REPLICATES,
    max_buckets: int = MAX_BUCKETS,
) -> dict[str, PairedReplicates]:
    """Paired replicates for each metric's (champion, challenger) parts over the same rows."""
    bucket_of_cluster, n_buckets = assign_buckets(n_clusters, rng, max_buckets)
    row_bucket = bucket_of_cluster[cluster]
    columns = [
        array
        for pair in parts.values()
        for side in pair
        for array in (side.numerator, side.denominator)
    ]
    sums = np.column_stack(
        [np.bincount(row_bucket, weights=column, minlength=n_buckets) for column in columns]
    ).astype(np.float64)
    replicated = resampled_sums(sums, n_replicates, rng)
    result: dict[str, PairedReplicates] = {}
    for index, (name, (champion, challenger)) in enumerate(parts.items()):
        base = 4 * index
        result[name] = PairedReplicates(
            _ratio(replicated[:, base], replicated[:, base + 1], champion.root),
            _ratio(replicated[:, base + 2], replicated[:, base + 3], challenger.root),
        )
    return result


def percentile_interval(replicates: FloatArray) -> tuple[float, float]:
    finite = replicates[~np.isnan(replicates)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_p_value(difference: FloatArray) -> float:
    """Two-sided p-value of "no difference": twice the smaller tail beyond zero.

    Matches the percentile interval (p < 0.05 about when the interval excludes 0); the +1
    terms keep it above zero with finitely many replicates.
    """
    finite = difference[~np.isnan(difference)]
    if len(finite) == 0:
        return float("nan")
    smaller_tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2 * (smaller_tail + 1) / (len(finite) + 1))
