"""`contender demo` end to end, as `make demo` runs it, in a temporary folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from contender.demo.workspace import Workspace
from contender.predictions.store import SqlPredictionStore
from tests.support import run_cli

# The default, as `make demo` runs it: the report's p99 latency guardrail is steadier on
# 600 requests than on 300, where one scheduling hiccup can be the p99.
REQUESTS = 600


@pytest.mark.integration
def test_demo_promotes_the_challenger_and_the_service_follows(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    command = [sys.executable, "-m", "contender", "demo", "--dir", str(root)]
    result = run_cli([*command, "--requests", str(REQUESTS)], timeout_s=300)

    output = " ".join(result.stdout.split())  # Rich wraps lines at the terminal width
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert "PROMOTE" in output
    assert "The service picked up the new champion (version 2) by itself" in output
    assert " 0 failed " in output
    assert (root / "report.html").stat().st_size > 0

    store = SqlPredictionStore(f"sqlite:///{root / 'contender.db'}")
    try:
        records = list(store.iter_records())
        labels = store.labels()
    finally:
        store.close()
    labeled = [record for record in records if (record["request_id"], 0) in labels]
    assert len(labeled) == REQUESTS
    assert {(r["champion_version"], r["challenger_version"]) for r in labeled} == {("1", "2")}
    after = [record for record in records if record["champion_version"] == "2"]
    assert after, "no request reached the promoted champion"
    assert all(record["challenger_version"] is None for record in after)
    assert all(record["champion_error"] is None for record in records)


def test_reset_removes_only_what_the_demo_created(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    (tmp_path / "artifacts" / "1").mkdir(parents=True)
    for name in ("mlflow.db", "contender.db", "contender.db-wal", "report.html", "notes.txt"):
        (tmp_path / name).write_text("x")

    removed = workspace.reset()

    assert sorted(removed) == [
        "artifacts",
        "contender.db",
        "contender.db-wal",
        "mlflow.db",
        "report.html",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
