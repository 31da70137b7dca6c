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
    score the row: not invoked, failed, or returned a prediction list whose length does
    not match the request's rows (such output cannot be paired row by row).
    """

    version: str | None
    invoked: BoolArray
    """Per request: the arm was asked to predict."""
    failed: BoolArray
    """Per request: the arm was invoked and logged an error."""
    latency_ms: FloatArray
    """Per request; NaN when not logged."""
    scores: FloatArray
    """Per row; NaN when not scored."""
    list_valued: bool
    """Some scored row was a list (class probabilities), so the model is a classifier."""


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

    def with_labels(self, labels: FloatArray) -> LoggedRows:
        return replace(self, labels=labels)


def row_offsets_from_counts(counts: IntArray) -> IntArray:
    """Per-request row counts -> offsets with a trailing total (the CSR layout)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets
