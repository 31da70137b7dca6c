"""contender against its peers: throughput, latency, CPU and memory, in one run.

    .venv/bin/python bench/run.py [--servers mlflow,mlserver,mlserver-v2,contender,...]
                                  [--isolation]
                                  [--cases 1row-c1,1row-c8,1row-c64,100row-c8]
                                  [--duration 20] [--warmup 3] [--profile]

What it does, in order:
1. installs what is missing: Debian's `wrk`, and `bench/.mlserver-venv` (MLServer);
2. starts a private MLflow tracking server in a temporary directory, trains and
   registers a champion (Production) and a challenger (Staging), and for the
   isolation targets the costly challengers (`harness/heavy.py`);
3. for each server in turn: start it, then for each case a warm-up, an answer check
   (predictions against the champion's own predict_proba), a measured wrk run
   (CPU and RSS of the server's process tree read from /proc around it) and, for a
   server that scores both arms, the share of the run's requests both scored, from
   its log store; stop it;
4. prints a table, contender's ratios against each peer and the isolation case's
   shadow ÷ only ratios, writes `bench/results/latest.json` and
   `bench/results/throughput.png`.

Every process it starts runs in its own session and is stopped in a `finally`,
on errors, Ctrl-C and SIGTERM alike. A server that fails to start is reported and
the others are still measured. With `--profile`, py-spy records a flamegraph of
each measured run (`bench/results/flame-<server>-<case>.svg`); those runs are
slower, so their figures are marked as profiled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

# `python bench/run.py` puts bench/ on sys.path; the harness package lives there.
from harness import install, rounds
from harness.answers import check_answers
from harness.coverage import Coverage, now_utc, settle
from harness.heavy import register_heavy
from harness.load import DEFAULT_CASES, Case, WrkResult, run_wrk
from harness.models import Registered, start_tracking_server, train_and_register
from harness.output import print_tables, write_chart, write_json
from harness.procs import Server, ServerFailed
from harness.results import ISOLATION, Measurement, failed, from_json, isolation, ratios
from harness.servers import (
    ISOLATION_NAMES,
    TARGET_NAMES,
    TARGETS,
    Context,
    Target,
    log_store_path,
    request_body,
    servers_for,
    start,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
MLSERVER_VENV = BENCH_DIR / ".mlserver-venv"
# Piped output (make, CI logs) would otherwise wrap at 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=120)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--servers",
        default=None,
        help=f"comma-separated subset of {', '.join(TARGET_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--isolation",
        action="store_true",
        help=f"only the isolation case: {', '.join(ISOLATION_NAMES)}",
    )
    parser.add_argument(
        "--cases",
        default=None,
        help="comma-separated <rows>row-c<connections> load shapes, run in that order on "
        f"every server (default: {','.join(c.name for c in DEFAULT_CASES)}; "
        "the isolation targets have their own, see bench/README.md)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--profile", action="store_true", help="py-spy flamegraph of each run")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and stores")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="measure nothing: print the tables and redraw the chart from results/latest.json",
    )
    args = parser.parse_args(argv)
    if args.isolation and args.servers is not None:
        parser.error("--isolation picks the servers itself: give --servers or --isolation")
    servers = ",".join(ISOLATION_NAMES if args.isolation else TARGET_NAMES)
    args.targets = _pick_targets(parser, args.servers or servers)
    args.case_list = None if args.cases is None else _parse_cases(parser, args.cases)
    return args


def _pick_targets(parser: argparse.ArgumentParser, spec: str) -> list[Target]:
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(TARGET_NAMES))
    if unknown or not wanted:
        parser.error(f"--servers: unknown {unknown}; choose from {', '.join(TARGET_NAMES)}")
    return [t for t in TARGETS if t.name in wanted]


def _parse_cases(parser: argparse.ArgumentParser, spec: str) -> list[Case]:
    cases = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        rows, _, connections = name.partition("row-c")
        if not (rows.isdigit() and connections.isdigit()):
            parser.error(f"--cases: {name!r} is not like 1row-c8")
        cases.append(Case(int(rows), int(connections)))
    return cases


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        return _replot(args.results_dir)
    # SIGTERM unwinds like Ctrl-C, so every `finally` below stops its processes.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    wrk = install.ensure_wrk()
    mlserver_bin = None
    if any(t.server == "mlserver" for t in args.targets):
        mlserver_bin = install.ensure_mlserver_venv(MLSERVER_VENV)
    py_spy = _py_spy() if args.profile else None
    with _workdir(args.keep_workdir) as workdir:
        console.print(f"work directory: {workdir}")
        tracking, tracking_uri = start_tracking_server(workdir)
        try:
            registered = train_and_register(tracking_uri)
            kinds = list(dict.fromkeys(t.heavy for t in args.targets if t.heavy is not None))
            if kinds:
                console.print(f"training and registering the costly challengers: {kinds}")
                registered = register_heavy(registered, kinds)
            ctx = Context(workdir, registered, mlserver_bin)
            measurements = _measure_all(args, ctx, wrk, py_spy)
        finally:
            tracking.stop()
    ratio_rows = ratios(measurements)
    isolation_rows = isolation(measurements)
    print_tables(console, measurements, ratio_rows, isolation_rows)
    meta = _meta(args, registered)
    write_json(args.results_dir / "latest.json", meta, measurements, ratio_rows, isolation_rows)
    write_chart(args.results_dir / "throughput.png", measurements, _chart_title(meta))
    console.print(f"wrote {args.results_dir / 'latest.json'} and throughput.png")
    return 1 if any(m.failure or m.errors for m in measurements) else 0


def _replot(results_dir: Path) -> int:
    document = json.loads((results_dir / "latest.json").read_text())
    measurements = [from_json(m) for m in document["results"]]
    print_tables(console, measurements, ratios(measurements), isolation(measurements))
    write_chart(results_dir / "throughput.png", measurements, _chart_title(document["meta"]))
    console.print(f"redrew {results_dir / 'throughput.png'}")
    return 0


def _chart_title(meta: dict[str, Any]) -> str:
    return (
        f"contender bench, {meta['started_at'][:16]}, {meta['duration_s']:.0f} s per run, "
        f"{meta['cpu_count']} cores shared with wrk"
    )


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="contender-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def _measure_all(
    args: argparse.Namespace, ctx: Context, wrk: str, py_spy: str | None
) -> list[Measurement]:
    measurements: list[Measurement] = []
    # Profiled runs are for reading flamegraphs, not ratios: one server at a time.
    pairs = [] if py_spy else _isolation_pairs(args.targets)
    paired = {t.name for pair in pairs for t in pair}
    for server_name, targets in servers_for([t for t in args.targets if t.name not in paired]):
        console.rule(f"{server_name}")
        try:
            server, base_url = start(server_name, ctx)
        except Exception as exc:
            if isinstance(exc, ServerFailed):
                console.print(exc.log_tail, markup=False, highlight=False)
            console.print(f"[red]{server_name} did not start:[/red] {exc}")
            reason = f"did not start: {exc}"[:200]
            measurements += [failed(t.name, c, reason) for t in targets for c in _cases(args, t)]
            continue
        try:
            after: str | None = None  # the case this server process ran last
            for target in targets:
                for case in _cases(args, target):
                    m = _measure(args, ctx, server, base_url, target, case, wrk, py_spy, after)
                    measurements.append(m)
                    after = case.name
        finally:
            server.stop()
    for only, shadow in pairs:
        measurements += _measure_pair(args, ctx, wrk, only, shadow)
    return measurements


def _isolation_pairs(targets: Sequence[Target]) -> list[tuple[Target, Target]]:
    """(only, shadow) for each costly challenger whose two targets are both asked for."""
    by_name = {t.name: t for t in targets}
    return [
        (by_name[only], by_name[shadow])
        for only, shadow in ISOLATION.values()
        if only in by_name and shadow in by_name
    ]


def _measure_pair(
    args: argparse.Namespace, ctx: Context, wrk: str, only: Target, shadow: Target
) -> list[Measurement]:
    """Both servers up at once; the shared cases in paired rounds, then the shadow
    server's own cases (the recovery phase) alone, right after its last shared case."""
    console.rule(f"{only.server} and {shadow.server}, in alternating rounds")
    shared = [c for c in _cases(args, only) if c in _cases(args, shadow)]
    own = [c for c in _cases(args, shadow) if c not in shared]
    started: dict[str, tuple[Server, str]] = {}
    try:
        for target in (only, shadow):
            try:
                started[target.name] = start(target.server, ctx)
            except Exception as exc:
                if isinstance(exc, ServerFailed):
                    console.print(exc.log_tail, markup=False, highlight=False)
                console.print(f"[red]{target.server} did not start:[/red] {exc}")
                reason = f"did not start: {exc}"[:200]
                return [failed(t.name, c, reason) for t in (only, shadow) for c in _cases(args, t)]
        measurements: list[Measurement] = []
        after: str | None = None
        for case in shared:
            measurements += _measure_rounds(args, ctx, started, (only, shadow), case, wrk, after)
            after = case.name
        server, base_url = started[shadow.name]
        for case in own:
            measurements.append(
                _measure(args, ctx, server, base_url, shadow, case, wrk, None, after)
            )
            after = case.name
        return measurements
    finally:
        for server, _ in started.values():
            server.stop()


def _measure_rounds(
    args: argparse.Namespace,
    ctx: Context,
    started: dict[str, tuple[Server, str]],
    pair: tuple[Target, Target],
    case: Case,
    wrk: str,
    after: str | None,
) -> list[Measurement]:
    """`rounds.ROUNDS` alternating runs of `args.duration / 2` s on each server."""
    round_s = args.duration / 2
    bodies = {t.name: _body_file(ctx, t, case) for t in pair}
    urls = {t.name: started[t.name][1] + t.path for t in pair}
    by_name = {t.name: t for t in pair}
    results: dict[str, list[WrkResult]] = {t.name: [] for t in pair}
    cpu_s = dict.fromkeys(results, 0.0)
    checks = {}
    try:
        for target in pair:
            if args.warmup > 0:
                run_wrk(
                    wrk, urls[target.name], bodies[target.name],
                    connections=case.connections, duration_s=args.warmup,
                )  # fmt: skip
            checks[target.name] = check_answers(started[target.name][1], target, ctx.registered)
            for message in checks[target.name].messages:
                console.print(f"[red]answer mismatch[/red] {message}")
        load_average = os.getloadavg()[0]
        window_start = now_utc()
        for index in range(rounds.ROUNDS):
            for name in rounds.order(index, pair[0].name, pair[1].name):
                server = started[name][0]
                before = server.sample()
                result = run_wrk(
                    wrk, urls[name], bodies[name], connections=case.connections, duration_s=round_s
                )
                cpu_s[name] += server.sample().cpu_s - before.cpu_s
                results[name].append(result)
        window_end = now_utc()
    except Exception as exc:
        console.print(f"[red]{case.name} rounds failed:[/red] {exc}")
        return [failed(t.name, case, str(exc).splitlines()[0][:200]) for t in pair]
    measurements = []
    for name, runs in results.items():
        target = by_name[name]
        coverage = None
        if target.shadow:
            db = log_store_path(ctx, target.server)
            expected = sum(r.requests for r in runs)
            coverage = settle(db, window_start, window_end, expected=expected)
        median = rounds.median_result(runs)
        sample = started[name][0].sample()
        console.print(
            f"{name:20} {case.name:10} {median.requests_per_s:8.0f} req/s  "
            f"p50 {median.p50_ms:7.2f} ms  p99 {median.p99_ms:7.2f} ms (medians of "
            f"{len(runs)} rounds: {', '.join(f'{r.requests_per_s:.0f}' for r in runs)} req/s)"
            f"  errors {median.errors}{_coverage_note(coverage)}",
            highlight=False,
        )
        measurements.append(
            Measurement(
                target=name,
                case=case,
                wrk=median,
                cpu_ms_per_request=cpu_s[name] * 1000 / median.requests
                if median.requests
                else None,
                rss_mb=sample.rss_bytes / 2**20,
                server_processes=sample.processes,
                answer_checks=checks[name].requests,
                answer_mismatches=checks[name].mismatches,
                load_average_1m=load_average,
                coverage=coverage,
                after=after,
                rounds=tuple(runs),
            )
        )
    return measurements


def _body_file(ctx: Context, target: Target, case: Case) -> Path:
    body_file = ctx.workdir / f"body-{target.protocol}-{case.rows}.json"
    body_file.write_bytes(request_body(target.protocol, ctx.registered.sample.head(case.rows)))
    return body_file


def _cases(args: argparse.Namespace, target: Target) -> Sequence[Case]:
    """--cases for every server when given; otherwise the target's own, or the defaults."""
    if args.case_list is not None:
        return list(args.case_list)
    return target.cases or DEFAULT_CASES


def _measure(
    args: argparse.Namespace,
    ctx: Context,
    server: Server,
    base_url: str,
    target: Target,
    case: Case,
    wrk: str,
    py_spy: str | None,
    after: str | None,
) -> Measurement:
    body_file = _body_file(ctx, target, case)
    url = base_url + target.path
    try:
        if args.warmup > 0:
            run_wrk(wrk, url, body_file, connections=case.connections, duration_s=args.warmup)
        check = check_answers(base_url, target, ctx.registered)
        for message in check.messages:
            console.print(f"[red]answer mismatch[/red] {message}")
        load_average = os.getloadavg()[0]
        before = server.sample()
        profiler, svg = _start_profiler(py_spy, server, target, case, args)
        started_at = now_utc()
        result = run_wrk(
            wrk, url, body_file, connections=case.connections, duration_s=args.duration
        )
        ended_at = now_utc()
        sample = server.sample()
        if profiler is not None:
            profiler.wait(timeout=60)
        coverage = None
        if target.shadow:
            db = log_store_path(ctx, target.server)
            coverage = settle(db, started_at, ended_at, expected=result.requests)
    except Exception as exc:
        console.print(f"[red]{target.name} {case.name} failed:[/red] {exc}")
        return failed(target.name, case, str(exc).splitlines()[0][:200])
    cpu_ms = (sample.cpu_s - before.cpu_s) * 1000 / result.requests if result.requests else None
    console.print(
        f"{target.name:20} {case.name:10} {result.requests_per_s:8.0f} req/s  "
        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
        f"  mismatches {check.mismatches}{_coverage_note(coverage)}",
        highlight=False,
    )
    return Measurement(
        target=target.name,
        case=case,
        wrk=result,
        cpu_ms_per_request=cpu_ms,
        rss_mb=sample.rss_bytes / 2**20,
        server_processes=sample.processes,
        answer_checks=check.requests,
        answer_mismatches=check.mismatches,
        profile_svg=svg,
        load_average_1m=load_average,
        coverage=coverage,
        after=after,
    )


def _coverage_note(coverage: Coverage | None) -> str:
    if coverage is None:
        return ""
    share = "-" if coverage.share is None else f"{coverage.share:.1%}"
    skipped = "".join(f", {n} skipped ({why})" for why, n in coverage.challenger_skipped.items())
    unsettled = "" if coverage.settled else ", records still arriving at the deadline"
    return (
        f"  both scored {share} of {coverage.records} records{skipped}, "
        f"{coverage.challenger_errors} challenger errors{unsettled}"
    )


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/python -m pip install py-spy")
    return found


def _start_profiler(
    py_spy: str | None, server: Server, target: Target, case: Case, args: argparse.Namespace
) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    if py_spy is None:
        return None, None
    svg = args.results_dir / f"flame-{target.name}-{case.name}.svg"
    svg.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy, "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking",
        "--duration", str(max(1, round(args.duration))), "--rate", "200",
        "--format", "flamegraph", "--output", str(svg),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL), str(svg)


def _meta(args: argparse.Namespace, registered: Registered) -> dict[str, Any]:
    import importlib.metadata as md

    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "profiled": bool(args.profile),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": "1 thread, closed loop (connections = concurrency), on the same 2 cores",
        "mlflow": md.version("mlflow"),
        "scikit_learn": md.version("scikit-learn"),
        "mlserver": "1.7.1 (max_batch_size 32, max_batch_time 0.005 s, default workers)",
        "model": f"{registered.model_name} v{registered.champion_version} "
        "LogisticRegression, predict_proba, 20 float features",
        "isolation_challengers": {
            kind: f"{h.model_name} v{h.challenger_version}: {h.description}"
            for kind, h in registered.heavy.items()
        },
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        done = subprocess.run(
            ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()
    return None


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; every started process was stopped[/yellow]")
        sys.exit(130)
