"""Coverage: the share of requests both arms scored, and why the others were not.

Coverage describes the same records as the rest of the report (the chosen champion and
challenger version pair, see `load`), one count per request:

- *both scored*: champion and challenger both ran and logged predictions without an error;
- otherwise one reason, the first that applies: a skip of the challenger, then of the
  champion (`"overload"`: shadow work found no free capacity in time; `"breaker_open"`:
  the challenger's circuit breaker), then `"error"` (an arm ran and failed), else
  `"not_invoked"` (the challenger was never asked: testing off or none loaded).

Skips never depend on the input or the models' outputs (SPEC section 1), so the rows both
scored stay a fair sample; low coverage means less evidence, not biased evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contender.analysis.data import BoolArray, LoggedRows

SKIP_REASONS = ("overload", "breaker_open")
_NOT_SKIPPED = ("error", "not_invoked")


@dataclass(frozen=True)
class Coverage:
    """Requests of the report by what became of them; every request counts once."""

    n_requests: int
    both_scored: int
    not_scored: Mapping[str, int]
    """Requests per first reason, in order: `overload`, `breaker_open` (any skip reason a
    newer service logs after them), `error`, `not_invoked`; zeros included."""
    skipped_by_arm: Mapping[str, Mapping[str, int]]
    """`champion` / `challenger` -> skip reason -> requests that arm skipped."""

    @property
    def share(self) -> float:
        """Both scored over all requests; NaN without requests."""
        return self.both_scored / self.n_requests if self.n_requests else float("nan")

    @property
    def n_skipped(self) -> int:
        """Requests not scored because an arm was skipped."""
        return sum(n for reason, n in self.not_scored.items() if reason not in _NOT_SKIPPED)

    def skips_per_arm(self) -> list[tuple[str, int, int]]:
        """(reason, champion's count, challenger's count) for each reason either skipped for."""
        champion, challenger = self.skipped_by_arm["champion"], self.skipped_by_arm["challenger"]
        reasons = dict.fromkeys([*champion, *challenger])
        counts = [
            (reason, champion.get(reason, 0), challenger.get(reason, 0)) for reason in reasons
        ]
        return [row for row in counts if row[1] or row[2]]


def _reason_counts(reasons: NDArray[np.object_], keys: tuple[str, ...]) -> dict[str, int]:
    """Counts of `keys` (zeros included), then any other reason a newer service logged."""
    counted = Counter(reasons.tolist())
    return {**{key: counted.pop(key, 0) for key in keys}, **dict(sorted(counted.items()))}


def _not_scored(rows: LoggedRows, scored: BoolArray) -> dict[str, int]:
    champion, challenger = rows.champion, rows.challenger
    # Each mask takes only what the reasons before it left, so every request counts once.
    by_challenger = ~scored & challenger.was_skipped
    by_champion = ~scored & ~by_challenger & champion.was_skipped
    rest = ~scored & ~by_challenger & ~by_champion
    errors = rest & (champion.failed | challenger.failed)
    skips = np.concatenate([challenger.skipped[by_challenger], champion.skipped[by_champion]])
    return {
        **_reason_counts(skips, SKIP_REASONS),
        "error": int(errors.sum()),
        "not_invoked": int((rest & ~errors).sum()),
    }


def coverage(rows: LoggedRows) -> Coverage:
    scored = rows.champion.predicted & rows.challenger.predicted
    return Coverage(
        n_requests=rows.n_requests,
        both_scored=int(scored.sum()),
        not_scored=_not_scored(rows, scored),
        skipped_by_arm={
            name: _reason_counts(arm.skipped[arm.was_skipped], SKIP_REASONS)
            for name, arm in (("champion", rows.champion), ("challenger", rows.challenger))
        },
    )
