"""The prediction log as columns: what `load` reads and every computation consumes.

Two granularities live side by side. A *request* is one logged record (latency, errors,
routing are per request); a *row* is one input row of a request (predictions and labels
are per row). `row_request[i]` names the request of row `i`, which is what lets the
intervals resample whole requests rather than rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class ArmLog:
    """What one arm (champion or challenger) did, as arrays over requests and rows.

    `scores` holds one float per row: the last column of a list-valued row (a classifier's
    positive-class probability) or the scalar itself. It is NaN where the arm did not
    score the row: not invoked, skipped, failed, or returned a prediction list whose length
    does not match the request's rows (such output cannot be paired row by row).

    A skipped request (shadow work under overload, the challenger's breaker open) is not
    `invoked`: the model never ran, so it counts neither as an error nor in the
    denominator of the error rate.
    """

    version: str | None
    invoked: BoolArray
    """Per request: the arm ran (it was asked to predict and not skipped)."""
    failed: BoolArray
    """Per request: the arm ran and logged an error."""
    predicted: BoolArray
    """Per request: the arm ran and logged predictions, without an error."""
    skipped: NDArray[np.object_]
    """Per request: why the arm did not run (`"overload"`, `"breaker_open"`), else None."""
    latency_ms: FloatArray
    """Per request; NaN when not logged."""
    scores: FloatArray
    """Per row; NaN when not scored."""
    list_valued: bool
    """Some scored row was a list (class probabilities), so the model is a classifier."""

    @property
    def was_skipped(self) -> BoolArray:
        """Per request: the arm was skipped (`skipped` holds a reason)."""
        return is_not_none(self.skipped)


@dataclass(frozen=True)
class LoggedRows:
    """Every record of one model and version pair, exploded into rows, with labels."""

    model: str
    request_ids: NDArray[np.object_]
    """Per request (Python strings), in a stable store order."""
    challenger_served: BoolArray
    """Per request: `served_by == "challenger"`."""
    fallback: BoolArray
    """Per request: the challenger failed and the champion's answer was served instead."""
    row_offsets: IntArray
    """Per request: index of its first row; the last entry is the number of rows."""
    labels: FloatArray
    """Per row; NaN when no label is known."""
    champion: ArmLog
    challenger: ArmLog
    n_requests_other_versions: int = 0
    """Records left out because they belong to an older champion/challenger pair."""
    request_time: NDArray[np.datetime64] | None = None
    """Per request: when it was logged (UTC): the latency bootstrap's time blocks."""
    challenger_weight: FloatArray | None = None
    """Per request: the challenger weight its draw used (NaN where not logged)."""
    label_delay_s: FloatArray | None = None
    """Per row: seconds from the request to its label's arrival (NaN: unknown or none)."""
    orphan_labels: int = 0
    """Stored labels whose request id is in no record of the store."""

    @property
    def n_requests(self) -> int:
        return len(self.request_ids)

    @property
    def n_rows(self) -> int:
        return int(self.row_offsets[-1])

    @property
    def row_request(self) -> IntArray:
        """Per row: the index of its request."""
        counts = np.diff(self.row_offsets)
        return np.repeat(np.arange(self.n_requests, dtype=np.int64), counts)

    def with_labels(self, labels: FloatArray, delay_s: FloatArray | None = None) -> LoggedRows:
        return replace(self, labels=labels, label_delay_s=delay_s)


def is_not_none(values: NDArray[np.object_]) -> BoolArray:
    """Per entry: the value is not None (one vectorised comparison, no Python loop)."""
    return np.asarray(np.not_equal(values, np.array(None, dtype=object)), dtype=np.bool_)


def row_offsets_from_counts(counts: IntArray) -> IntArray:
    """Per-request row counts -> offsets with a trailing total (the CSR layout)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets
