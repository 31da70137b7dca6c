"""Paired rounds: two servers measured in alternation, so the machine's drift hits both.

This machine is shared: the same server, same case, measured twice a minute apart, has
given 640 and 340 requests/s. A ratio of two runs made one after the other is then
mostly that drift. The isolation case therefore keeps both servers of a pair running
and measures them in short alternating rounds, in ABBA order (A B, B A, A B, ...), so
that a steady drift favours neither. Each round gives one ratio; the bench reports the
median round's ratio, and a server's figures as the medians of its rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import fields

from harness.load import WrkResult

ROUNDS = 5


def order(round_index: int, first: str, second: str) -> tuple[str, str]:
    """ABBA: who runs first in round `round_index`."""
    return (first, second) if round_index % 2 == 0 else (second, first)


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """Each rate and latency the median of the rounds'; counts and time summed."""
    summed = {"requests", "duration_s", "status_errors", "socket_errors"}
    values = {
        f.name: (
            sum(getattr(r, f.name) for r in results)
            if f.name in summed
            else statistics.median(getattr(r, f.name) for r in results)
        )
        for f in fields(WrkResult)
    }
    return WrkResult(**values)


def paired_ratios(
    ours: Sequence[WrkResult], theirs: Sequence[WrkResult], name: str
) -> list[float] | None:
    """Round by round, ours ÷ theirs on the field `name`; None unless paired."""
    if not ours or len(ours) != len(theirs):
        return None
    pairs = [(getattr(a, name), getattr(b, name)) for a, b in zip(ours, theirs, strict=True)]
    return [a / b for a, b in pairs if b]
