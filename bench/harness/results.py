"""What one measured run records, contender's ratios against its peers, and the
isolation case's ratios: a shadow server with a costly challenger against the same
registered model served with testing off."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from harness.coverage import Coverage, coverage_from_json
from harness.load import Case, WrkResult
from harness.rounds import paired_ratios

PEERS = ("mlserver", "mlserver-v2", "mlflow")
# Each contender variant, and what it is compared with besides the peers.
OURS = {"contender": PEERS, "contender-w2": ("contender", *PEERS)}
# The isolation case, by costly challenger: (testing off, shadow mode) on one registered model.
ISOLATION = {
    "gil": ("contender-gil-only", "contender-gil-shadow"),
    "hgb": ("contender-hgb-only", "contender-hgb-shadow"),
}
ISOLATION_TARGETS = frozenset(name for pair in ISOLATION.values() for name in pair)
# Shadow ÷ only, per case, and the share both scored at one connection after overload.
GOALS = {"requests_per_s_ratio_min": 0.8, "p99_ratio_max": 1.5, "recovery_share_min": 0.99}
RECOVERY = ("1row-c1", "1row-c64")  # (the case, the case measured just before it)


@dataclass(frozen=True)
class Measurement:
    target: str
    case: Case
    wrk: WrkResult | None
    cpu_ms_per_request: float | None
    rss_mb: float | None
    server_processes: int | None
    answer_checks: int
    answer_mismatches: int
    failure: str | None = None
    profile_svg: str | None = None
    # The machine is shared: a high load average before a run explains odd figures.
    load_average_1m: float | None = None
    # Servers that score both arms: who scored what during the run (from the log store).
    coverage: Coverage | None = None
    # The case measured just before this one on the same server process, if any.
    after: str | None = None
    # Measured in paired rounds (`rounds.py`): each round's figures; `wrk` holds medians.
    rounds: tuple[WrkResult, ...] = ()

    @property
    def errors(self) -> int:
        return (self.wrk.errors if self.wrk else 0) + self.answer_mismatches

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["case"] = {"name": self.case.name, **asdict(self.case)}
        data["errors"] = self.errors
        data["coverage"] = self.coverage.to_json() if self.coverage else None
        return data


def from_json(data: dict[str, Any]) -> Measurement:
    """The inverse of `Measurement.to_json`, for re-rendering a saved run."""
    skip = ("case", "wrk", "errors", "coverage", "rounds")
    fields = {k: v for k, v in data.items() if k not in skip}
    case = Case(rows=data["case"]["rows"], connections=data["case"]["connections"])
    wrk = WrkResult(**data["wrk"]) if data["wrk"] else None
    coverage = coverage_from_json(data.get("coverage"))
    rounds = tuple(WrkResult(**r) for r in data.get("rounds") or ())
    return Measurement(case=case, wrk=wrk, coverage=coverage, rounds=rounds, **fields)


def failed(target: str, case: Case, reason: str) -> Measurement:
    return Measurement(target, case, None, None, None, None, 0, 0, failure=reason)


def ratios(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """contender ÷ each peer, per case, from the same run (ratios > 1: contender higher);
    `contender-w2` (two workers) is also compared with one-worker contender."""
    by_key = {(m.target, m.case): m for m in measurements if m.wrk is not None}
    rows: list[dict[str, Any]] = []
    for (target, case), ours in by_key.items():
        if target not in OURS or ours.wrk is None:
            continue
        for peer in OURS[target]:
            theirs = by_key.get((peer, case))
            if theirs is None or theirs.wrk is None:
                continue
            rows.append(
                {
                    "case": case.name,
                    "ours": target,
                    "peer": peer,
                    "requests_per_s": _ratio(ours.wrk.requests_per_s, theirs.wrk.requests_per_s),
                    "p50": _ratio(ours.wrk.p50_ms, theirs.wrk.p50_ms),
                    "p99": _ratio(ours.wrk.p99_ms, theirs.wrk.p99_ms),
                    "cpu_per_request": _ratio(ours.cpu_ms_per_request, theirs.cpu_ms_per_request),
                }
            )
    return rows


def isolation(measurements: list[Measurement]) -> dict[str, list[dict[str, Any]]]:
    """Per costly challenger: shadow ÷ only on each case both measured, with marks
    against `GOALS`, and the share both scored in a one-connection phase measured
    right after the 64-connection one on the same shadow server (`RECOVERY`)."""
    by_key = {(m.target, m.case.name): m for m in measurements if m.wrk is not None}
    rows: list[dict[str, Any]] = []
    recovery: list[dict[str, Any]] = []
    for kind, (only_name, shadow_name) in ISOLATION.items():
        for (target, case), shadow in by_key.items():
            if target != shadow_name or shadow.wrk is None:
                continue
            if (case, shadow.after) == RECOVERY:
                recovery.append(_recovery_row(kind, shadow))
            only = by_key.get((only_name, case))
            if only is None or only.wrk is None or case == RECOVERY[0]:
                continue
            rows.append(_isolation_row(kind, case, only, shadow))
    return {"ratios": rows, "recovery": recovery}


def _isolation_row(kind: str, case: str, only: Measurement, shadow: Measurement) -> dict[str, Any]:
    """Paired rounds give the median round's ratio; single runs the ratio of the two."""
    throughput_rounds = paired_ratios(shadow.rounds, only.rounds, "requests_per_s")
    p99_rounds = paired_ratios(shadow.rounds, only.rounds, "p99_ms")
    throughput = (
        statistics.median(throughput_rounds)
        if throughput_rounds
        else _ratio(_wrk(shadow, "requests_per_s"), _wrk(only, "requests_per_s"))
    )
    p99 = (
        statistics.median(p99_rounds)
        if p99_rounds
        else _ratio(_wrk(shadow, "p99_ms"), _wrk(only, "p99_ms"))
    )
    return {
        "challenger": kind,
        "case": case,
        "only": only.target,
        "shadow": shadow.target,
        "requests_per_s_ratio": throughput,
        "requests_per_s_ok": throughput is not None
        and throughput >= GOALS["requests_per_s_ratio_min"],
        "p99_ratio": p99,
        "p99_ok": p99 is not None and p99 <= GOALS["p99_ratio_max"],
        "rounds": {"requests_per_s_ratio": throughput_rounds, "p99_ratio": p99_rounds},
        "shadow_both_scored_share": shadow.coverage.share if shadow.coverage else None,
        # Skipped because the breaker was open: the challenger's cost was not paid, so
        # the ratios say nothing about isolation for those requests.
        "shadow_breaker_open": (
            shadow.coverage.challenger_skipped.get("breaker_open", 0) if shadow.coverage else None
        ),
    }


def _wrk(m: Measurement, name: str) -> float | None:
    return None if m.wrk is None else float(getattr(m.wrk, name))


def _recovery_row(kind: str, shadow: Measurement) -> dict[str, Any]:
    share = shadow.coverage.share if shadow.coverage else None
    return {
        "challenger": kind,
        "shadow": shadow.target,
        "case": shadow.case.name,
        "after": shadow.after,
        "both_scored_share": share,
        "ok": share is not None and share >= GOALS["recovery_share_min"],
        "challenger_skipped": shadow.coverage.challenger_skipped if shadow.coverage else None,
        "challenger_errors": shadow.coverage.challenger_errors if shadow.coverage else None,
    }


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs
