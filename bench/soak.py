"""A bounded soak: mixed good and bad traffic, promotions and a store outage, for minutes.

    .venv/bin/python bench/soak.py [--minutes 10] [--quick] [--clients 4] [--keep-workdir]

One real `contender serve` (SQLite log store, `--log-buffer-records 1000`, a spill
directory, `--poll-interval 5`, a small `--max-rows`) against a private `mlflow server`
with the bench's champion (Production) and challenger (Staging), while:

- `--clients` threads send requests without pause: about 80 % good `/invocations`
  (`dataframe_split`, `dataframe_records`, `instances`, `inputs`, CSV) and 20 % bad
  (unparseable JSON, a wrong column, an unsupported content type, too many rows, zero
  rows, a null in a double column), and now and then `/feedback` for an answered request;
- every minute the registry swaps the two versions (the challenger to Production, the
  champion to Staging, `archive_existing_versions=False`), and the soak waits for
  `/status` to show the service picked the new champion up;
- at half time the SQLite log file is held under `BEGIN EXCLUSIVE` from another
  connection for 20 s, so the service buffers, then spills, then loads the spill back;
- every 5 s the RSS (VmRSS) of every process in the service's session is summed.

At the end (traffic stopped, spill loaded back, SIGTERM) the goals: RSS growth from
minute 2 to the end under 10 %, no 5xx answer, every acknowledged (200) request id in
the store exactly once and nothing else, the spill directory empty. It prints a table,
writes `bench/results/soak.json` and `soak.md` (and `soak_rss.png` when matplotlib is
there) and exits 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

# `python bench/soak.py` puts bench/ on sys.path; the harness package lives there.
from harness.models import COLUMNS, Registered, start_tracking_server, train_and_register
from harness.procs import Server, free_port, wait_http_ok

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MAX_ROWS = 50
BUFFER_RECORDS = 1000
POLL_INTERVAL_S = 5.0
OUTAGE_S = 20.0
RSS_EVERY_S = 5.0
PROMOTE_EVERY_S = 60.0
RSS_BASELINE_S = 120.0
RSS_GROWTH_MAX = 0.10
FEEDBACK_EVERY_S = 0.1
BAD_SHARE = 0.20
console = Console() if sys.stdout.isatty() else Console(width=120)

GOOD_KINDS = ("split", "records", "instances", "inputs", "csv")
BAD_KINDS = ("bad_json", "wrong_column", "bad_content_type", "too_many_rows", "zero_rows", "null")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument("--quick", action="store_true", help="3 minutes, for trying it")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and stores")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = 3.0
    if args.minutes < 2.5:
        parser.error("--minutes: at least 2.5 (RSS growth is measured from minute 2)")
    return args


# --- requests ------------------------------------------------------------------------


def build_request(kind: str, rows: list[list[float]]) -> tuple[str, bytes]:
    """(content type, body) for one request kind on the given rows."""
    if kind == "split":
        return "application/json", _dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}})
    if kind == "records":
        records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        return "application/json", _dumps({"dataframe_records": records})
    if kind == "instances":
        records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        return "application/json", _dumps({"instances": records})
    if kind == "inputs":
        return "application/json", _dumps(
            {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}}
        )
    if kind == "csv":
        lines = [",".join(COLUMNS), *(",".join(repr(v) for v in row) for row in rows)]
        return "text/csv", ("\n".join(lines) + "\n").encode()
    if kind == "bad_json":
        return "application/json", b'{"dataframe_split": {"columns": ["f00", '
    if kind == "wrong_column":
        columns = [*COLUMNS[:-1], "nope"]
        return "application/json", _dumps({"dataframe_split": {"columns": columns, "data": rows}})
    if kind == "bad_content_type":
        return "text/plain", b"f00,f01\n1,2\n"
    if kind == "too_many_rows":
        many = (rows * (MAX_ROWS // len(rows) + 2))[: MAX_ROWS + 1]
        return "application/json", _dumps({"dataframe_split": {"columns": COLUMNS, "data": many}})
    if kind == "zero_rows":
        return "application/json", _dumps({"dataframe_split": {"columns": COLUMNS, "data": []}})
    if kind == "null":
        data = [[None, *rows[0][1:]]]
        return "application/json", _dumps({"dataframe_split": {"columns": COLUMNS, "data": data}})
    raise ValueError(kind)


def _dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


@dataclass
class Tally:
    """What the clients saw, shared by the threads (appends and Counter updates under a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_status: Counter[str] = field(default_factory=Counter)  # "200", "400", ...
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, status)
    acknowledged: list[str] = field(default_factory=list)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    # Labels the service accepted (200 stored, 202 buffered during the outage); last wins.
    labels: dict[str, int] = field(default_factory=dict)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    bad_accepted: Counter[str] = field(default_factory=Counter)
    client_errors: list[str] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, latency s)

    def note(self, kind: str, status: int, at: float, latency: float, body: bytes) -> None:
        with self.lock:
            self.by_status[str(status)] += 1
            self.by_kind[(kind, str(status))] += 1
            self.latencies.append((at, latency))
            if status >= 500:
                self.server_errors.append(
                    {
                        "kind": kind,
                        "status": status,
                        "at_s": round(at, 1),
                        "body": body[:300].decode(errors="replace"),
                    }
                )
            if kind in BAD_KINDS and status == 200:
                self.bad_accepted[kind] += 1


class Client(threading.Thread):
    """Requests without pause, each on a connection of its own (as the integration
    tests' traffic does: no keep-alive race can pass for a failure of the service).
    `feedback=True`: one label every `FEEDBACK_EVERY_S` for a recently answered request,
    from a thread of its own, so that a slow /feedback never holds the scoring clients."""

    def __init__(
        self,
        index: int,
        port: int,
        sample: list[list[float]],
        tally: Tally,
        t0: float,
        *,
        feedback: bool = False,
    ) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)
        self.port = port
        self.sample = sample
        self.tally = tally
        self.t0 = t0
        self.feedback = feedback
        self.rng = random.Random(20260101 + index)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.feedback:
                self._feedback()
                self.stop.wait(FEEDBACK_EVERY_S)
            elif self.rng.random() < BAD_SHARE:
                self._invoke(self.rng.choice(BAD_KINDS))
            else:
                self._invoke(self.rng.choice(GOOD_KINDS))

    def _rows(self) -> list[list[float]]:
        n = self.rng.choice((1, 1, 1, 2, 5, 10))
        start = self.rng.randrange(len(self.sample) - n)
        return self.sample[start : start + n]

    def _post(self, kind: str, path: str, content_type: str, body: bytes) -> bytes | None:
        sent = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", path, body, {"Content-Type": content_type})
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            with self.tally.lock:
                self.tally.client_errors.append(f"{sent - self.t0:.1f} s {kind}: {error!r}")
            return None
        finally:
            connection.close()
        self.tally.note(kind, response.status, sent - self.t0, time.monotonic() - sent, payload)
        return payload if response.status in (200, 202) else None

    def _invoke(self, kind: str) -> None:
        content_type, body = build_request(kind, self._rows())
        payload = self._post(kind, "/invocations", content_type, body)
        if payload is not None:
            request_id = json.loads(payload)["request_id"]
            with self.tally.lock:
                self.tally.acknowledged.append(request_id)
                self.tally.recent.append(request_id)

    def _feedback(self) -> None:
        with self.tally.lock:
            ids = list(self.tally.recent)[-50:]
        if ids:
            request_id, value = self.rng.choice(ids), self.rng.randint(0, 1)
            label = {"request_id": request_id, "label": value}
            if self._post("feedback", "/feedback", "application/json", _dumps(label)) is not None:
                with self.tally.lock:
                    self.tally.labels[request_id] = value


# --- the service, its memory, its store ----------------------------------------------


def session_vmrss_bytes(session_id: int) -> tuple[int, int]:
    """Sum of VmRSS over the live processes of one session; (bytes, processes)."""
    total = count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[3]) != session_id:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    count += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total, count


def start_service(workdir: Path, registered: Registered) -> tuple[Server, int]:
    port = free_port()
    argv = [
        sys.executable, "-m", "contender", "serve",
        "--model", registered.model_name, "--tracking-uri", registered.tracking_uri,
        "--host", "127.0.0.1", "--port", str(port),
        "--poll-interval", str(POLL_INTERVAL_S), "--max-rows", str(MAX_ROWS),
        "--log-store", f"sqlite:///{workdir / 'soak-log.db'}",
        "--log-buffer-records", str(BUFFER_RECORDS), "--spill-dir", str(workdir / "spill"),
    ]  # fmt: skip
    server = Server("contender", argv, log_path=workdir / "contender.log", cwd=workdir)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ready", server, deadline_s=240)
    except BaseException:
        server.stop()
        raise
    return server, port


def get_status(port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/status")
        document: dict[str, Any] = json.loads(connection.getresponse().read())
        return document
    finally:
        connection.close()


def stored_ids(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [row[0] for row in connection.execute("SELECT request_id FROM predictions")]


def stored_labels(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT request_id, label FROM feedback WHERE row = 0")
        return {request_id: int(label) for request_id, label in rows}


# --- the soak ------------------------------------------------------------------------


@dataclass
class Observed:
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (elapsed s, bytes, procs)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    outage: dict[str, Any] = field(default_factory=dict)
    spilled_max: int = 0
    spill_files_max: int = 0
    status_errors: list[str] = field(default_factory=list)


def sample_loop(
    server: Server, port: int, spill_dir: Path, t0: float, obs: Observed, stop: threading.Event
) -> None:
    """RSS every 5 s; the log store's spill figures every second."""
    next_rss = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_rss:
            rss, procs = session_vmrss_bytes(server.pid)
            obs.rss.append((now - t0, rss, procs))
            next_rss += RSS_EVERY_S
        files = len(list(spill_dir.glob("spill-*"))) if spill_dir.exists() else 0
        obs.spill_files_max = max(obs.spill_files_max, files)
        try:
            obs.spilled_max = max(obs.spilled_max, int(get_status(port)["log_store"]["spilled"]))
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            obs.status_errors.append(repr(error))
        stop.wait(1.0)


def promote(registered: Registered, champion: str, challenger: str) -> None:
    """The challenger to Production, the champion to Staging; nothing archived."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(registered.tracking_uri)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]tage.*deprecated")
        client.transition_model_version_stage(
            registered.model_name, challenger, "Production", archive_existing_versions=False
        )
        client.transition_model_version_stage(
            registered.model_name, champion, "Staging", archive_existing_versions=False
        )


def wait_for_champion(port: int, version: str, deadline_s: float) -> float | None:
    """Seconds until /status shows `version` as champion (None: not within the deadline)."""
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
            status = get_status(port)
            if (status.get("champion") or {}).get("version") == version:
                return time.monotonic() - began
        time.sleep(0.5)
    return None


def hold_outage(db: Path, port: int, t0: float, obs: Observed) -> None:
    holder = sqlite3.connect(db, isolation_level=None, timeout=30)
    began = time.monotonic()
    holder.execute("BEGIN EXCLUSIVE")
    locked = time.monotonic()
    unhealthy = False
    try:
        while time.monotonic() - locked < OUTAGE_S:
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
                unhealthy |= get_status(port)["log_store"]["healthy"] is False
            time.sleep(1.0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    released = time.monotonic()
    obs.outage = {
        "started_at_s": round(locked - t0, 1),
        "lock_wait_s": round(locked - began, 2),
        "duration_s": round(released - locked, 2),
        "service_saw_unhealthy": unhealthy,
    }


def run_soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    console.print(f"work directory: {workdir}")
    tracking, tracking_uri = start_tracking_server(workdir)
    try:
        registered = train_and_register(tracking_uri)
        server, port = start_service(workdir, registered)
        try:
            return _drive(args, workdir, registered, server, port)
        finally:
            server.stop()
    finally:
        tracking.stop()


def _drive(
    args: argparse.Namespace, workdir: Path, registered: Registered, server: Server, port: int
) -> dict[str, Any]:
    duration_s = args.minutes * 60
    db = workdir / "soak-log.db"
    spill_dir = workdir / "spill"
    sample = registered.sample[COLUMNS].to_numpy().tolist()
    tally, obs = Tally(), Observed()
    t0 = time.monotonic()
    stop_sampling = threading.Event()
    sampler = threading.Thread(
        target=sample_loop, args=(server, port, spill_dir, t0, obs, stop_sampling), daemon=True
    )
    sampler.start()
    clients = [Client(i, port, sample, tally, t0) for i in range(args.clients)]
    clients.append(Client(args.clients, port, sample, tally, t0, feedback=True))
    for client in clients:
        client.start()
    champion, challenger = registered.champion_version, registered.challenger_version
    outage_at = duration_s / 2
    outage_done = False
    next_promotion = PROMOTE_EVERY_S
    next_progress = PROMOTE_EVERY_S / 2
    console.print(
        f"soak: {args.minutes:g} min, {args.clients} clients, promotion every "
        f"{PROMOTE_EVERY_S:.0f} s, {OUTAGE_S:.0f} s outage at {outage_at:.0f} s"
    )
    try:
        while (elapsed := time.monotonic() - t0) < duration_s:
            if not outage_done and elapsed >= outage_at:
                console.print(f"{elapsed:6.0f} s  store outage: BEGIN EXCLUSIVE")
                hold_outage(db, port, t0, obs)
                outage_done = True
                console.print(f"{time.monotonic() - t0:6.0f} s  outage over: {obs.outage}")
                continue
            if elapsed >= next_promotion and duration_s - elapsed > 20:
                next_promotion += PROMOTE_EVERY_S
                began = time.monotonic()
                promote(registered, champion, challenger)
                champion, challenger = challenger, champion
                pickup = wait_for_champion(port, champion, deadline_s=4 * POLL_INTERVAL_S)
                obs.promotions.append(
                    {
                        "at_s": round(began - t0, 1),
                        "champion": champion,
                        "picked_up": pickup is not None,
                        "pickup_s": None if pickup is None else round(pickup, 2),
                    }
                )
                console.print(
                    f"{began - t0:6.0f} s  promoted version {champion}: "
                    + (f"picked up in {pickup:.1f} s" if pickup is not None else "NOT picked up")
                )
                continue
            if elapsed >= next_progress:
                next_progress += PROMOTE_EVERY_S
                rss = obs.rss[-1][1] / 2**20 if obs.rss else 0.0
                console.print(
                    f"{elapsed:6.0f} s  {sum(tally.by_status.values())} requests, "
                    f"RSS {rss:.0f} MiB, by status {dict(tally.by_status)}"
                )
            time.sleep(1.0)
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join(60)
    traffic_s = time.monotonic() - t0
    console.print(f"{traffic_s:6.0f} s  traffic stopped; waiting for the spill to load back")
    drained = _wait_drained(port, spill_dir, deadline_s=120)
    time.sleep(2 * RSS_EVERY_S)
    stop_sampling.set()
    sampler.join(10)
    final_status = get_status(port)
    stop_began = time.monotonic()
    server.stop(timeout_s=60)
    stop_s = time.monotonic() - stop_began
    return _results(
        args, tally, obs, db, spill_dir, traffic_s, drained, final_status, stop_s, server
    )


def _wait_drained(port: int, spill_dir: Path, deadline_s: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError, KeyError):
            store = get_status(port)["log_store"]
            if (
                store["healthy"]
                and store["spilled"] == 0
                and store["buffered"] == 0
                and not list(spill_dir.glob("spill-*"))
            ):
                return time.monotonic() - began
        time.sleep(0.5)
    return None


def _results(
    args: argparse.Namespace,
    tally: Tally,
    obs: Observed,
    db: Path,
    spill_dir: Path,
    traffic_s: float,
    drained: float | None,
    final_status: dict[str, Any],
    stop_s: float,
    server: Server,
) -> dict[str, Any]:
    ids = stored_ids(db)
    stored = Counter(ids)
    acknowledged = Counter(tally.acknowledged)
    ack_set, stored_set = set(acknowledged), set(stored)
    labels = stored_labels(db)
    spill_left = sorted(p.name for p in spill_dir.iterdir()) if spill_dir.exists() else []
    during = [(t, b) for t, b, _ in obs.rss if t <= traffic_s]
    baseline = next(((t, b) for t, b in during if t >= RSS_BASELINE_S), None)
    end = during[-1] if during else None
    growth = (end[1] - baseline[1]) / baseline[1] if baseline and end else None
    server_5xx = sum(n for s, n in tally.by_status.items() if s.startswith("5"))
    feedback_5xx = sum(n for (k, s), n in tally.by_kind.items() if k == "feedback" and s >= "500")
    promotions_done = len(obs.promotions)
    picked_up = sum(p["picked_up"] for p in obs.promotions)
    goals = {
        "rss_growth_under_10pct": growth is not None and growth < RSS_GROWTH_MAX,
        "no_5xx": server_5xx == 0 and not tally.client_errors,
        "acknowledged_stored_exactly_once": ack_set == stored_set
        and all(n == 1 for n in stored.values())
        and all(n == 1 for n in acknowledged.values()),
        "acknowledged_labels_stored": labels == tally.labels,
        "spill_loaded_back": not spill_left and drained is not None,
        "promotions_picked_up": promotions_done > 0 and picked_up == promotions_done,
        "outage_spilled": obs.spilled_max > 0 or obs.spill_files_max > 0,
    }
    return {
        "meta": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "minutes": args.minutes,
            "clients": args.clients,
            "traffic_s": round(traffic_s, 1),
            "serve_flags": {
                "max_rows": MAX_ROWS,
                "log_buffer_records": BUFFER_RECORDS,
                "poll_interval_s": POLL_INTERVAL_S,
                "log_store": "sqlite",
            },
            "mix": {
                "feedback_every_s": FEEDBACK_EVERY_S,
                "bad": BAD_SHARE,
                "good": 1 - BAD_SHARE,
                "good_kinds": GOOD_KINDS,
                "bad_kinds": BAD_KINDS,
            },
            "serve_exit_code": server.process.returncode,
            "sigterm_stop_s": round(stop_s, 2),
        },
        "goals": goals,
        "passed": all(goals.values()),
        "rss": {
            "at_minute_2_mib": None if baseline is None else round(baseline[1] / 2**20, 1),
            "at_end_mib": None if end is None else round(end[1] / 2**20, 1),
            "peak_mib": round(max(b for _, b in during) / 2**20, 1) if during else None,
            "growth_pct": None if growth is None else round(100 * growth, 2),
            "samples": [[round(t, 1), b, p] for t, b, p in obs.rss],
        },
        "requests": {
            "total": sum(tally.by_status.values()),
            "by_status": dict(sorted(tally.by_status.items())),
            "by_kind": {f"{k} {s}": n for (k, s), n in sorted(tally.by_kind.items())},
            "server_errors": tally.server_errors[:20],
            "server_error_count": server_5xx,
            "feedback_server_error_count": feedback_5xx,
            "bad_accepted": dict(tally.bad_accepted),
            "client_errors": tally.client_errors[:20],
            "client_error_count": len(tally.client_errors),
        },
        "promotions": {"done": promotions_done, "picked_up": picked_up, "each": obs.promotions},
        "outage": {
            **obs.outage,
            "spilled_max": obs.spilled_max,
            "spill_files_max": obs.spill_files_max,
            "drained_after_traffic_s": None if drained is None else round(drained, 1),
            "spill_files_left": spill_left,
        },
        "records": {
            "acknowledged": len(tally.acknowledged),
            "acknowledged_unique": len(ack_set),
            "stored": len(ids),
            "stored_unique": len(stored_set),
            "duplicates_in_store": sum(n - 1 for n in stored.values() if n > 1),
            "acknowledged_missing": len(ack_set - stored_set),
            "stored_not_acknowledged": len(stored_set - ack_set),
            "missing_sample": sorted(ack_set - stored_set)[:10],
            "labels_acknowledged": len(tally.labels),
            "labels_stored": len(labels),
            "labels_missing_or_different": sum(
                1 for request_id, value in tally.labels.items() if labels.get(request_id) != value
            ),
        },
        "final_log_store_status": final_status.get("log_store"),
        "reloads_seen_by_service": len(final_status.get("reloads") or []),
    }


# --- output --------------------------------------------------------------------------

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARK[min(7, int((v - low) / span * 8))] for v in values)


def mark(ok: bool) -> str:
    return "[green]pass[/green]" if ok else "[red]FAIL[/red]"


def print_summary(result: dict[str, Any]) -> None:
    goals, rss, req = result["goals"], result["rss"], result["requests"]
    rec, out, promo = result["records"], result["outage"], result["promotions"]
    table = Table(
        title=f"soak, {result['meta']['minutes']:g} min, {result['meta']['clients']} clients"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("goal")
    table.add_row(
        "RSS minute 2 / end / peak (MiB)",
        f"{rss['at_minute_2_mib']} / {rss['at_end_mib']} / {rss['peak_mib']}",
        "",
    )
    table.add_row("RSS growth", f"{rss['growth_pct']} %", mark(goals["rss_growth_under_10pct"]))
    table.add_row("requests", str(req["total"]), "")
    table.add_row("by status", ", ".join(f"{s}: {n}" for s, n in req["by_status"].items()), "")
    table.add_row(
        "5xx (of them /feedback) / client errors",
        f"{req['server_error_count']} ({req['feedback_server_error_count']}) / "
        f"{req['client_error_count']}",
        mark(goals["no_5xx"]),
    )
    table.add_row("bad requests answered 200", str(req["bad_accepted"] or 0), "")
    table.add_row(
        "promotions done / picked up",
        f"{promo['done']} / {promo['picked_up']}",
        mark(goals["promotions_picked_up"]),
    )
    table.add_row(
        "outage duration", f"{out.get('duration_s')} s at {out.get('started_at_s')} s", ""
    )
    table.add_row(
        "spilled (max) / spill files (max)",
        f"{out['spilled_max']} / {out['spill_files_max']}",
        mark(goals["outage_spilled"]),
    )
    table.add_row(
        "spill files left / drained after",
        f"{len(out['spill_files_left'])} / {out['drained_after_traffic_s']} s",
        mark(goals["spill_loaded_back"]),
    )
    table.add_row(
        "acknowledged / stored",
        f"{rec['acknowledged']} / {rec['stored']}",
        mark(goals["acknowledged_stored_exactly_once"]),
    )
    table.add_row(
        "missing / extra / duplicates",
        f"{rec['acknowledged_missing']} / {rec['stored_not_acknowledged']} / "
        f"{rec['duplicates_in_store']}",
        "",
    )
    table.add_row(
        "labels accepted / stored / missing",
        f"{rec['labels_acknowledged']} / {rec['labels_stored']} / "
        f"{rec['labels_missing_or_different']}",
        mark(goals["acknowledged_labels_stored"]),
    )
    console.print(table)
    if req["server_errors"]:
        console.print("[red]5xx answers (first ones):[/red]")
        for error in req["server_errors"][:5]:
            console.print(f"  {error}", markup=False)


def write_markdown(path: Path, result: dict[str, Any], png: str | None) -> None:
    goals, rss, req = result["goals"], result["rss"], result["requests"]
    rec, out, promo = result["records"], result["outage"], result["promotions"]
    mib = [b / 2**20 for _, b, _ in rss["samples"]]
    lines = [
        f"# Soak, {result['meta']['minutes']:g} minutes ({result['meta']['finished_at']})",
        "",
        f"Overall: **{'pass' if result['passed'] else 'FAIL'}**",
        "",
        "| goal | result |",
        "|---|---|",
        *(f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in goals.items()),
        "",
        "| figure | value |",
        "|---|---|",
        f"| RSS at minute 2 / end / peak | {rss['at_minute_2_mib']} / {rss['at_end_mib']} / "
        f"{rss['peak_mib']} MiB |",
        f"| RSS growth, minute 2 to end | {rss['growth_pct']} % (goal < 10 %) |",
        f"| requests | {req['total']} |",
        "| by status | " + ", ".join(f"{s}: {n}" for s, n in req["by_status"].items()) + " |",
        f"| 5xx (of them /feedback) / client-side errors | {req['server_error_count']} "
        f"({req['feedback_server_error_count']}) / {req['client_error_count']} |",
        f"| promotions done / picked up | {promo['done']} / {promo['picked_up']} |",
        f"| outage | {out.get('duration_s')} s from {out.get('started_at_s')} s |",
        f"| records spilled (max) / spill files (max) | {out['spilled_max']} / "
        f"{out['spill_files_max']} |",
        f"| spill files left at the end | {len(out['spill_files_left'])} |",
        f"| acknowledged / stored | {rec['acknowledged']} / {rec['stored']} |",
        f"| missing / not acknowledged / duplicates | {rec['acknowledged_missing']} / "
        f"{rec['stored_not_acknowledged']} / {rec['duplicates_in_store']} |",
        f"| labels accepted / stored / missing | {rec['labels_acknowledged']} / "
        f"{rec['labels_stored']} / {rec['labels_missing_or_different']} |",
        "",
        f"RSS every {RSS_EVERY_S:.0f} s ({min(mib, default=0):.0f}-{max(mib, default=0):.0f} MiB):",
        "",
        "```",
        sparkline(mib),
        "```",
        "",
    ]
    if png:
        lines += [f"![RSS over time]({png})", ""]
    lines += ["Requests by kind and status:", "", "| kind status | count |", "|---|---|"]
    lines += [f"| {k} | {n} |" for k, n in req["by_kind"].items()]
    path.write_text("\n".join(lines) + "\n")


def write_png(path: Path, result: dict[str, Any]) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["rss"]["samples"]
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.plot([s[0] / 60 for s in samples], [s[1] / 2**20 for s in samples], lw=1.5)
    outage = result["outage"]
    if outage.get("started_at_s") is not None:
        start = outage["started_at_s"] / 60
        axes.axvspan(
            start, start + outage["duration_s"] / 60, alpha=0.2, color="red", label="store outage"
        )
    for promotion in result["promotions"]["each"]:
        axes.axvline(promotion["at_s"] / 60, color="grey", lw=0.5, ls=":")
    axes.axvline(RSS_BASELINE_S / 60, color="green", lw=1, ls="--", label="minute 2")
    axes.set_xlabel("minutes (dotted: promotions)")
    axes.set_ylabel("RSS, MiB (service session)")
    axes.set_title(f"contender soak: RSS growth {result['rss']['growth_pct']} %")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="contender-soak-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        else:
            console.print(f"kept {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with _workdir(args.keep_workdir) as workdir:
        result = run_soak(args, workdir)
        if not result["passed"]:
            tail = (workdir / "contender.log").read_text(errors="replace").splitlines()
            result["service_log_errors"] = [
                line for line in tail if "Error" in line or "Traceback" in line
            ][:30]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    print_summary(result)
    png = args.results_dir / "soak_rss.png"
    wrote_png = write_png(png, result)
    (args.results_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(args.results_dir / "soak.md", result, png.name if wrote_png else None)
    console.print(f"wrote {args.results_dir / 'soak.json'} and soak.md")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
