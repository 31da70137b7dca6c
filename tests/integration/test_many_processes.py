"""Many workers and replicas act as one service: metrics, routing and one PostgreSQL log.

Real processes throughout: `contender serve --workers 2` (twice, for two replicas), one
`mlflow server`, a fresh PostgreSQL database, and Debian's nginx in front.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contender.pids import pid_alive
from tests.integration import models
from tests.integration.conftest import (
    STAGES_MODEL,
    MlflowServer,
    Registered,
    ServiceFactory,
)
from tests.integration.test_serving import split_body
from tests.integration.traffic import Load, post_on_a_new_connection
from tests.support import (
    BIN,
    Process,
    free_port,
    fresh_postgres_database,
    poll_until,
    run_cli,
    wait_http_ok,
)

pytestmark = pytest.mark.integration

REPLICA_MODEL = "churn-replicas"
POLL_S = 2.0
TOKEN = "replica-token"


def served_total(url: str) -> float:
    """`contender_requests_total` summed over every arm and version, from one scrape."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "contender_requests_total"
    )


def one_request_per_connection(url: str, body: dict[str, Any], n: int) -> list[int]:
    """`n` requests, each on a new connection, so the kernel spreads them over the workers."""
    return [post_on_a_new_connection(url, body).status for _ in range(n)]


def worker_pids(metrics_dir: Path) -> set[int]:
    """Workers that have counted something: prometheus-client names its files by pid."""
    return {int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("counter_*.db")}


def test_one_scrape_counts_every_worker_and_never_goes_down(
    start_service: ServiceFactory, registered: Registered, mlflow_url: str, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    service = start_service(
        "--model", STAGES_MODEL, "--tracking-uri", mlflow_url, "--workers", "2",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )  # fmt: skip
    body = split_body(registered.trained.rows.iloc[[0]])
    with ThreadPoolExecutor(4) as pool:
        batches = list(
            pool.map(lambda _: one_request_per_connection(service.url, body, 500), range(4))
        )
    assert [status for batch in batches for status in batch] == [200] * 2000
    # uvicorn replaces a worker that misses its health checks (a loaded machine): the
    # replaced one's files stay, and count on. Both live workers must have served.
    live = {pid for pid in worker_pids(metrics_dir) if pid_alive(pid)}
    assert len(live) == 2, "both workers should have served"
    assert [served_total(service.url) for _ in range(5)] == [2000.0] * 5

    victim = min(live)
    os.kill(victim, signal.SIGKILL)
    answered = 2000
    scrapes = [served_total(service.url)]

    def replaced() -> bool | None:
        nonlocal answered
        answered += one_request_per_connection(service.url, body, 20).count(200)
        scrapes.append(served_total(service.url))
        alive = {pid for pid in worker_pids(metrics_dir) if pid_alive(pid)}
        return True if len(alive) == 2 and victim not in alive else None

    poll_until(replaced, timeout_s=120, interval_s=0.2, what="uvicorn to replace the worker")
    assert scrapes == sorted(scrapes), f"a counter went down: {scrapes}"
    assert scrapes[-1] == answered
    assert served_total(service.url) == answered
    service.stop()
    assert not list(metrics_dir.glob("*.db")), "serve leaves its metrics directory clean"


# ---- two replicas x two workers, one registry, one PostgreSQL log, nginx in front ------


@pytest.fixture(scope="module")
def replica_model(mlflow_server: MlflowServer, registered: Registered) -> str:
    """A model of its own: this module writes its routing tag."""
    trained = registered.trained
    models.register_pair(
        mlflow_server.client, REPLICA_MODEL, trained.champion_uri, trained.challenger_uri,
        by_alias=False,
    )  # fmt: skip
    return REPLICA_MODEL


@pytest.fixture
def fresh_database() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0:
        installed = subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx",
            shell=True, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if installed.returncode == 0 and Path("/usr/sbin/nginx").exists():
            return "/usr/sbin/nginx"
        pytest.skip(f"nginx could not be installed: {installed.stderr[-500:]}")
    pytest.skip("nginx is not installed: run `apt-get install -y nginx` as root")


def start_nginx(root: Path, upstreams: list[str]) -> tuple[str, Process]:
    port = free_port()
    servers = "\n".join(
        f"        server {upstream.removeprefix('http://')};" for upstream in upstreams
    )
    config = root / "nginx.conf"
    config.write_text(
        f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream contender {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://contender;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
    )
    process = Process([nginx_binary(), "-c", str(config), "-p", str(root)], root / "nginx.log")
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/ready", process, timeout_s=30)
    return url, process


def stored(database: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as connection:
        return connection.execute(query).fetchall()


def route(mlflow_url: str, *flags: str) -> dict[str, Any]:
    result = run_cli(
        [
            str(BIN / "contender"),
            "route",
            "--model",
            REPLICA_MODEL,
            "--tracking-uri",
            mlflow_url,
            *flags,
        ]
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = orjson.loads(result.stdout)
    return document


def test_replicas_serve_one_routing_and_log_every_answer_once(
    start_service: ServiceFactory,
    registered: Registered,
    replica_model: str,
    mlflow_url: str,
    fresh_database: str,
    tmp_path: Path,
) -> None:
    where = (
        "--model", replica_model, "--tracking-uri", mlflow_url, "--workers", "2",
        "--poll-interval", str(POLL_S), "--challenger-weight", "0.5",
        "--log-store", fresh_database,
    )  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        replicas = list(pool.map(lambda _: start_service(*where), range(2)))
    direct = [replica.url for replica in replicas]
    proxy, nginx = start_nginx(tmp_path, direct)
    try:
        rows = registered.trained.rows
        body = split_body(rows.iloc[[3]])

        # Sticky routing: a key gets one arm from every process, directly or through nginx.
        keyed_ids: list[str] = []

        def arms_of(key: str) -> set[str]:
            arms = set()
            # Both replicas and nginx per key: over 1,000 keys every worker answers hundreds.
            for url in [*direct, proxy]:
                reply = post_on_a_new_connection(url, body, {"X-Routing-Key": key})
                assert reply.status == 200, reply.document
                arms.add(reply.document["served_by"])
                keyed_ids.append(reply.headers["x-request-id"])
            return arms

        with ThreadPoolExecutor(4) as pool:
            keyed = list(pool.map(arms_of, [f"user-{i}" for i in range(1000)]))
        assert all(len(arms) == 1 for arms in keyed), "a key got two arms"
        challenger_keys = sum(arms == {"challenger"} for arms in keyed)
        assert 400 < challenger_keys < 600, challenger_keys  # weight 0.5

        load = Load([*direct, proxy], body)
        finish = load.run()
        try:
            poll_until(
                lambda: True if len(load.acknowledged) > 200 else None, timeout_s=60, what="load"
            )
            shadow = route(mlflow_url, "--challenger-weight", "0")
            assert shadow["challenger_weight"] == 0.0
            assert shadow["testing"] is True
            shadow_from = time.time() + POLL_S + 2
            load.wait_for_answers_after(shadow_from)
            testing_off_written = time.time()  # the tag changes before `route` returns
            champion_only = route(mlflow_url, "--no-testing")
            assert champion_only["revision"] == shadow["revision"] + 1
            off_from = time.time() + POLL_S + 2
            load.wait_for_answers_after(off_from)
        finally:
            finish()
        assert load.failures == [], load.failures[:5]
    finally:
        nginx.stop()
        for replica in replicas:
            assert replica.stop() == 0  # SIGTERM: each worker flushes its log

    def records_between(start: float, end: float) -> list[tuple[Any, ...]]:
        return stored(
            fresh_database,
            "SELECT served_by, challenger_version, challenger_weight, routing_revision, "
            "challenger_predictions IS NOT NULL FROM predictions WHERE routing_key IS NULL "
            f"AND timestamp >= '{iso(start)}' AND timestamp < '{iso(end)}'",
        )

    in_shadow_mode = records_between(shadow_from, testing_off_written)
    assert len(in_shadow_mode) > 50
    assert {row[0] for row in in_shadow_mode} == {"champion"}
    assert {(row[2], row[3]) for row in in_shadow_mode} == {(0.0, shadow["revision"])}
    assert all(row[4] for row in in_shadow_mode), "shadow mode still scores the challenger"
    testing_off = records_between(off_from, time.time())
    assert len(testing_off) > 50
    assert {(row[0], row[1]) for row in testing_off} == {("champion", None)}
    assert {row[3] for row in testing_off} == {champion_only["revision"]}

    acknowledged = [*keyed_ids, *load.acknowledged]
    counts = dict(stored(fresh_database, "SELECT request_id, count(*) FROM predictions GROUP BY 1"))
    assert len(acknowledged) == len(set(acknowledged))
    assert set(counts) == set(acknowledged), "every acknowledged request is logged, no other"
    assert set(counts.values()) == {1}


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def test_route_refuses_what_it_cannot_write_and_prints_what_it_wrote(
    replica_model: str, mlflow_url: str
) -> None:
    contender = str(BIN / "contender")
    missing = run_cli([contender, "route", "--model", "no-such-model", "--tracking-uri",
                       mlflow_url, "--challenger-weight", "0"])  # fmt: skip
    assert missing.returncode == 1
    assert "error: the registry refused" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_cli([contender, "route", "--model", replica_model, "--tracking-uri", mlflow_url,
                   "--challenger-weight", "1.5"])  # fmt: skip
    assert bad.returncode == 2
    assert "between 0 and 1" in bad.stderr
    before = route(mlflow_url)  # no change asked: prints the routing in force
    after = route(mlflow_url, "--challenger-weight", "0.25")
    assert after == {**before, "challenger_weight": 0.25, "revision": (before["revision"] or 0) + 1}
    assert route(mlflow_url) == after
