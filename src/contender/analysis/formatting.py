"""Numbers as people read them, the same in the verdict reason, terminal and HTML.

JSON keeps full precision; only text goes through here. NaN (undefined) prints as "-".
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def _decimals(value: float) -> int:
    # Four decimals resolve metric differences in [0, 1]; big regression errors need fewer.
    magnitude = abs(value)
    return 4 if magnitude < 1 else 3 if magnitude < 100 else 1


def number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.{_decimals(value)}f}"


def signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.{_decimals(value)}f}"


def interval(ci: tuple[float, float], sign: bool = False) -> str:
    show = signed if sign else number
    return f"[{show(ci[0])}, {show(ci[1])}]"


def p_value(value: float) -> str:
    if math.isnan(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_equals(value: float) -> str:
    """`p=0.042` or `p<0.001`, for sentences."""
    text = p_value(value)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def milliseconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def rate(value: float) -> str:
    """An error rate: two decimals of a percent."""
    return "-" if math.isnan(value) else f"{value:.2%}"


def signed_rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2%}"


def arm(role: str, version: str | None) -> str:
    """`champion v3`, or `challenger (none)` when the arm never ran."""
    return f"{role} v{version}" if version is not None else f"{role} (none)"


def counts(items: Mapping[str, int]) -> str:
    """`overload 300, breaker open 24`: the non-zero counts, their names in words."""
    return ", ".join(f"{name.replace('_', ' ')} {n:,}" for name, n in items.items() if n)


def replay_note(replay: str, champion: str | None) -> str:
    """What a `--replay` report compares, in one sentence."""
    return (
        f"version {replay} scored offline on the logged inputs, against champion "
        f"version {champion} as logged; its latency is offline batch time, not serving "
        "latency (the latency guardrail is not judged)"
    )


def challenger_role(replay: str | None) -> str:
    return "challenger" if replay is None else "replay"


def duration(seconds: float) -> str:
    """`0.4 s`, `12 min`, `3.2 h`, `2.5 d`."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
