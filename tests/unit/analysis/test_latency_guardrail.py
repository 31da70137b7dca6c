"""The latency guardrail compares the arms where both answered, not shadow with answer."""

from __future__ import annotations

import numpy as np

from contender.analysis.data import FloatArray
from contender.analysis.operations import MIN_SERVED_FOR_LATENCY, guardrails
from tests.unit.analysis.factories import arm_log, logged_rows

N = 1000


def latencies(served_ms: float, shadow_ms: float, challenger_served: np.ndarray) -> FloatArray:
    """An arm's logged latency: `served_ms` where it answered, `shadow_ms` elsewhere."""
    return np.where(challenger_served, served_ms, shadow_ms).astype(np.float64)


def rows_with(
    challenger_served: np.ndarray, champion: tuple[float, float], challenger: tuple[float, float]
) -> float:
    """The guardrail's p99 ratio; each pair is (ms when answering, ms as shadow work)."""
    scores = np.full(N, 0.5)
    champion_ms = latencies(champion[1], champion[0], challenger_served)
    challenger_ms = latencies(challenger[0], challenger[1], challenger_served)
    rows = logged_rows(
        arm_log(scores, latency_ms=champion_ms),
        arm_log(scores, latency_ms=challenger_ms, version="2"),
        np.full(N, np.nan),
        challenger_served=challenger_served.tolist(),
    )
    return guardrails(rows, max_latency_ratio=1.5).latency_p99_ratio


def test_shadow_work_waiting_for_a_core_does_not_count_against_the_challenger() -> None:
    served = np.random.default_rng(3).random(N) < 0.1
    # Both models take 10 ms when they answer; as shadow work on a busy machine, 300 ms.
    ratio = rows_with(served, champion=(10.0, 300.0), challenger=(10.0, 300.0))
    assert ratio == 1.0


def test_a_challenger_slow_when_answering_still_fails_the_guardrail() -> None:
    served = np.random.default_rng(4).random(N) < 0.1
    assert rows_with(served, champion=(10.0, 10.0), challenger=(40.0, 40.0)) == 4.0


def test_without_enough_answers_from_the_challenger_all_paired_requests_count() -> None:
    served = np.zeros(N, bool)
    served[: MIN_SERVED_FOR_LATENCY - 1] = True  # shadow mode, nearly
    # Its shadow latency is all there is to judge the challenger by.
    assert rows_with(served, champion=(10.0, 10.0), challenger=(10.0, 50.0)) == 5.0
