"""`contender.compare`: the numbers `report --json` prints, from records in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contender import compare
from contender.errors import ConfigError


def simulated(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    champion = np.clip(0.5 + (labels - 0.5) * 0.3 + rng.normal(0, 0.25, n), 0, 1)
    challenger = np.clip(0.5 + (labels - 0.5) * 0.6 + rng.normal(0, 0.25, n), 0, 1)
    return [
        {
            "request_id": f"r{i}",
            "model_name": "churn",
            "served_by": "challenger" if i % 2 else "champion",
            "challenger_weight": 0.5,
            "champion_version": "1",
            "champion_predictions": [float(champion[i])],
            "champion_latency_ms": float(rng.lognormal(1.0, 0.2)),
            "challenger_version": "2",
            "challenger_predictions": [float(challenger[i])],
            "challenger_latency_ms": float(rng.lognormal(1.1, 0.2)),
            "label": int(labels[i]),
        }
        for i in range(n)
    ]


def test_compare_gives_the_report_object_of_the_records() -> None:
    # Enough requests per arm for a p99 that can pass the latency guardrail.
    result = compare(simulated(4400, 1), seed=3)
    assert result["model"] == "churn"
    assert result["n_requests"] == 4400
    assert result["n_labeled"] == 4400
    assert result["challenger"]["version"] == "2"
    assert result["difference"]["auc"]["estimate"] > 0.05
    assert result["verdict"] == "promote"
    assert result["latency_ratio"]["status"] == "pass"
    assert compare(simulated(4400, 1), seed=3) == result  # seeded: the same numbers


def test_labels_given_apart_override_and_bad_input_is_named() -> None:
    records = simulated(300, 2)
    for record in records:
        del record["label"]
    without = compare(records)
    assert without["n_labeled"] == 0
    assert without["verdict"] == "inconclusive"
    labeled = compare(records, {f"r{i}": i % 2 for i in range(300)})
    assert labeled["n_labeled"] == 300
    with pytest.raises(TypeError, match="unknown options"):
        compare(records, threshhold=0.4)
    with pytest.raises(ConfigError, match="no records"):
        compare([])
    two = [*records[:10], {**records[10], "request_id": "x", "model_name": "other"}]
    with pytest.raises(ConfigError, match="pass model="):
        compare(two)
    assert compare(two, model="other")["n_requests"] == 1


def test_a_policy_judges_the_same_object(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "policy: v1\n"
        'primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}\n'
        "evaluation: {on_fail: rollback}\n"
    )
    result = compare(simulated(4400, 1), policy=policy, seed=3)
    assert result["policy"]["outcome"] == "promote"
    assert "ci.lower > 0" in result["policy"]["reason"]
