"""One replay: refuse redacted inputs, then score what is pending in batches and store it.

Memory is bounded by one fetched chunk of records and one batch of rows. Each batch's
results are committed before the next is scored, so an interrupted run loses at most one
batch of work and the next run resumes after the last committed one.

Python's cyclic garbage collector is run once per chunk instead of whenever allocations
pile up: a chunk makes millions of small objects, and each automatic collection walked
the heap MLflow, scikit-learn and pandas leave behind, about 40 % of a replay's time
(`bench/replay.py`). That heap is frozen first, so the per-chunk collection skips it.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from contender.clock import Clock, SystemClock
from contender.errors import ConfigError
from contender.models import LoadedModel
from contender.replay.scoring import score_batch
from contender.replay.source import LoggedInput, ReplaySource

FETCH_RECORDS = 10_000
"""Records read from the store at a time."""


@dataclass
class ReplaySummary:
    in_scope: int
    """Records the selection covers (model, `--since`, `--limit`)."""
    already: int
    """Of them, replayed by an earlier run: left as they were."""
    scored: int = 0
    rows: int = 0
    """Input rows of the scored records."""
    unfit: Counter[str] = field(default_factory=Counter)
    """Why records could not be scored, with how many each (signature misfits, errors)."""
    seconds: float = 0.0

    @property
    def n_unfit(self) -> int:
        return sum(self.unfit.values())


class RedactedInputs(ConfigError):
    pass


def replay(
    source: ReplaySource,
    model: LoadedModel,
    *,
    batch_rows: int = 10_000,
    on_start: Callable[[int], None] = lambda pending: None,
    on_batch: Callable[[int], None] = lambda records: None,
    clock: Clock | None = None,
) -> ReplaySummary:
    """Score every pending record of `source` with `model`; see the module docstring."""
    clock = clock or SystemClock()
    redacted = source.redacted_columns()
    if redacted:
        names = ", ".join(redacted)
        raise RedactedInputs(
            f"the logged inputs hold redacted columns ({names}): the log keeps only their "
            f"keyed hashes (--redact), so version {source.selection.version} cannot be "
            "scored on them; nothing was replayed"
        )
    in_scope, pending = source.counts()
    summary = ReplaySummary(in_scope=in_scope, already=in_scope - pending)
    on_start(pending)
    started = time.perf_counter()
    with _collected_per_chunk() as collect:
        for chunk in source.pending(FETCH_RECORDS):
            for batch in _batches(chunk, batch_rows):
                results = score_batch(model, batch)
                source.store(results, clock.now().isoformat(timespec="microseconds"))
                for item, row in zip(batch, results, strict=True):
                    if row.error is None:
                        summary.scored += 1
                        summary.rows += _rows(item)
                    else:
                        summary.unfit[row.error[:300]] += 1
                summary.seconds = time.perf_counter() - started
                on_batch(len(batch))
            collect()
    return summary


@contextmanager
def _collected_per_chunk() -> Iterator[Callable[[], object]]:
    enabled = gc.isenabled()
    gc.freeze()  # the loaded model and libraries: never garbage, never walked again
    gc.disable()
    try:
        yield gc.collect
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _rows(item: LoggedInput) -> int:
    data = item.inputs.get("data") if item.inputs is not None else None
    return len(data) if isinstance(data, list) else 0


def _batches(chunk: Sequence[LoggedInput], batch_rows: int) -> Iterator[list[LoggedInput]]:
    """Consecutive records of at most `batch_rows` rows (a larger record goes alone)."""
    batch: list[LoggedInput] = []
    rows = 0
    for item in chunk:
        count = _rows(item)
        if batch and rows + count > batch_rows:
            yield batch
            batch, rows = [], 0
        batch.append(item)
        rows += count
    if batch:
        yield batch
