"""`contender autopilot --once` against a real `mlflow server` (SPEC 5, 7).

Three models of this module's own, each with a synthetic labeled prediction log written
straight into a fresh SQLite store (no traffic): a clearly better challenger is promoted,
a clearly worse one is rolled back (routing tag: weight 0, testing false), an undecided
one is held. The policy uses only what the report gives today (the primary auc).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import typer
from typer.testing import CliRunner

from contender.cli.autopilot import autopilot
from contender.policy.autopilot import AUTOPILOT_TAG
from contender.predictions.record import Feedback
from contender.registry.client import stages_quietly
from contender.registry.routing_tag import ROUTING_TAG, parse_tag
from tests.integration import models
from tests.integration.conftest import MlflowServer, Registered
from tests.unit.analysis.factories import classifier_data, record, sqlite_store

pytestmark = pytest.mark.integration

BETTER, WORSE, UNDECIDED = "autopilot-better", "autopilot-worse", "autopilot-undecided"
N = 600
POLICY = """\
policy: v1
inference: {mode: sequential, tuning_rows: 5000, burn_in_rows: 200}
primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}
evaluation: {interval: 1m, consecutive_successes: 1, on_fail: rollback}
"""


def synthetic_log(path: Path, model: str, kind: str) -> str:
    """A labeled log of N one-row requests, both arms scored, versions 1 and 2."""
    rng = np.random.default_rng(7)
    if kind == "better":
        data = classifier_data(N, rng, champion_signal=0.5, challenger_signal=1.6)
        champion, challenger = data.champion, data.challenger
    elif kind == "worse":
        data = classifier_data(N, rng, champion_signal=1.6, challenger_signal=0.5)
        champion, challenger = data.champion, data.challenger
    else:  # the same scores: the difference is exactly 0, neither bound excludes it
        data = classifier_data(N, rng, champion_signal=1.0, challenger_signal=1.0)
        champion, challenger = data.champion, data.champion
    records, feedback = [], []
    for i in range(N):
        a, b = float(champion[i]), float(challenger[i])
        timestamp = f"2025-03-01T12:{i // 60:02d}:{i % 60:02d}.000000+00:00"
        latency = (10.0 + (i % 7), 11.0 + (i % 5))
        records.append(record(f"{kind}{i}", [[1 - a, a]], [[1 - b, b]], model=model,
                              timestamp=timestamp, latency_ms=latency))  # fmt: skip
        feedback.append(Feedback(f"{kind}{i}", 0, int(data.labels[i])))
    return sqlite_store(path, records, feedback)


@pytest.fixture(scope="module")
def pilots(mlflow_server: MlflowServer, registered: Registered) -> dict[str, tuple[str, str]]:
    """The three models of this module: name -> (champion, challenger) versions."""
    trained = registered.trained
    return {
        name: models.register_pair(
            mlflow_server.client,
            name,
            trained.champion_uri,
            trained.challenger_uri,
            by_alias=False,
        )
        for name in (BETTER, WORSE, UNDECIDED)
    }


def run_autopilot(*args: str) -> tuple[int, str, str]:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("autopilot")(autopilot)
    app.command("noop")(lambda: None)  # two commands: `autopilot` stays a subcommand
    result = CliRunner().invoke(app, ["autopilot", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def stages(server: MlflowServer, name: str) -> dict[str, str]:
    with stages_quietly():
        found = server.client.search_model_versions(f"name = '{name}'")
    return {str(v.version): str(v.current_stage) for v in found}


def tags(server: MlflowServer, name: str) -> dict[str, str]:
    found: dict[str, str] = server.client.get_registered_model(name).tags or {}
    return found


def autopilot_tag(server: MlflowServer, name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(tags(server, name)[AUTOPILOT_TAG])
    return document


def test_autopilot_once_promotes_rolls_back_and_holds(
    mlflow_server: MlflowServer, pilots: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    kinds = {BETTER: "better", WORSE: "worse", UNDECIDED: "undecided"}
    stores = {name: synthetic_log(tmp_path / f"{kind}.db", name, kind)
              for name, kind in kinds.items()}  # fmt: skip

    def once(name: str, *extra: str) -> tuple[int, str, str]:
        return run_autopilot(
            "--model", name, "--policy", str(policy), "--once", "--tracking-uri",
            mlflow_server.url, "--log-store", stores[name], *extra,
        )  # fmt: skip

    # --dry-run first: it says what it would do and changes nothing, not even the tag.
    before = {name: (stages(mlflow_server, name), tags(mlflow_server, name)) for name in kinds}
    for name, expected in ((BETTER, "promote"), (WORSE, "rollback"), (UNDECIDED, "hold")):
        code, out, err = once(name, "--dry-run")
        assert code == 0, err
        assert out.startswith(f"{expected} {name} challenger 2"), out
        assert "dry run: nothing changed" in out
    after = {name: (stages(mlflow_server, name), tags(mlflow_server, name)) for name in kinds}
    assert after == before

    code, out, err = once(BETTER)
    assert code == 0, err
    assert out.startswith(f"promote {BETTER} challenger 2"), out
    assert "version 2: Staging -> Production" in out
    promoted_champion, promoted_challenger = pilots[BETTER]
    assert stages(mlflow_server, BETTER) == {
        promoted_champion: "Archived",
        promoted_challenger: "Production",
    }
    state = autopilot_tag(mlflow_server, BETTER)
    assert state["decision"] == "promote"
    assert state["challenger"] == promoted_challenger
    assert "primary auc promote_when ci.lower > 0" in state["reason"]
    assert state["reason"].startswith("promote: ")

    code, out, err = once(WORSE)
    assert code == 0, err
    assert out.startswith(f"rollback {WORSE} challenger 2"), out
    routing = parse_tag(tags(mlflow_server, WORSE)[ROUTING_TAG])
    assert routing.challenger_weight == 0
    assert routing.testing is False
    assert stages(mlflow_server, WORSE) == {"1": "Production", "2": "Staging"}
    state = autopilot_tag(mlflow_server, WORSE)
    assert state["decision"] == "rollback"
    assert "rollback_when ci.upper < 0 holds" in state["reason"]

    code, out, err = once(UNDECIDED)
    assert code == 0, err
    assert out.startswith(f"hold {UNDECIDED} challenger 2"), out
    assert stages(mlflow_server, UNDECIDED) == {"1": "Production", "2": "Staging"}
    assert ROUTING_TAG not in tags(mlflow_server, UNDECIDED)
    state = autopilot_tag(mlflow_server, UNDECIDED)
    assert state["decision"] == "hold"
    assert "does not hold" in state["reason"] or "unknown" in state["reason"]

    # The promoted model has no challenger now: the next evaluation holds.
    code, out, err = once(BETTER)
    assert code == 0, err
    assert out.startswith(f"hold {BETTER} challenger none"), out
    assert [h["decision"] for h in autopilot_tag(mlflow_server, BETTER)["history"]] == [
        "promote",
        "hold",
    ]


def test_autopilot_refuses_an_unknown_model(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code, _, err = run_autopilot(
        "--model", "autopilot-no-such-model", "--policy", str(policy), "--once",
        "--tracking-uri", mlflow_server.url, "--log-store", f"sqlite:///{tmp_path}/none.db",
    )  # fmt: skip
    assert code == 1
    assert err.startswith("error: no registered model 'autopilot-no-such-model'"), err
    assert err.count("\n") == 1
