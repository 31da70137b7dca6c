"""What one measured run records, and contender's ratios against its peers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.load import Case, WrkResult

PEERS = ("mlserver", "mlserver-v2", "mlflow")
# Each contender variant, and what it is compared with besides the peers.
OURS = {"contender": PEERS, "contender-w2": ("contender", *PEERS)}


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

    @property
    def errors(self) -> int:
        return (self.wrk.errors if self.wrk else 0) + self.answer_mismatches

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["case"] = {"name": self.case.name, **asdict(self.case)}
        data["errors"] = self.errors
        return data


def from_json(data: dict[str, Any]) -> Measurement:
    """The inverse of `Measurement.to_json`, for re-rendering a saved run."""
    fields = {k: v for k, v in data.items() if k not in ("case", "wrk", "errors")}
    case = Case(rows=data["case"]["rows"], connections=data["case"]["connections"])
    wrk = WrkResult(**data["wrk"]) if data["wrk"] else None
    return Measurement(case=case, wrk=wrk, **fields)


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


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs
