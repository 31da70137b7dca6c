"""/metrics, deploy/prometheus and deploy/grafana, checked against one another offline.

- `promtool check metrics` accepts the exposition, in one process and in prometheus-client's
  multiprocess mode (`--workers N`), with every metric touched by realistic labels;
- `promtool check rules` accepts deploy/prometheus/alerts.yml, `promtool test rules` runs
  its unit tests (alerts.test.yml), and every alert is tested and well-formed;
- every PromQL expression of the alerts and of the Grafana dashboard parses (promtool
  has no PromQL-parse command: they go into a throwaway rules file) and names only
  metrics the exposition has, and the dashboard shows every metric: neither can drift
  from `contender.metrics`.

promtool comes with Debian's `prometheus` package: installed here when missing and we
are root; otherwise the test fails with the command to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from contender.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERTS_TEST = PROMETHEUS / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "contender.json"
INSTALL = "sudo apt-get update && sudo apt-get install -y prometheus"


# --- the exposition ------------------------------------------------------------------


def touch_every_metric(metrics: ServiceMetrics) -> None:
    """One value, with the labels the service really uses, in every metric (a labelled
    metric with no child yet is not in the exposition at all)."""
    for arm, version, latency_s in (("champion", "3", 0.004), ("challenger", "4", 0.012)):
        metrics.requests.labels(arm, version).inc()
        metrics.model_latency.labels(arm, version).observe(latency_s)
        metrics.model_errors.labels(arm).inc()
        for reason in ("overload", "breaker_open"):
            metrics.shadow_skipped.labels(arm, reason).inc()
        for outcome in ("loaded", "reused", "emptied", "failed"):
            metrics.reloads.labels(arm, outcome).inc()
    metrics.fallbacks.inc()
    metrics.breaker_open.set(1)
    for state in ("open", "closed"):
        metrics.breaker_transitions.labels(state).inc()
    metrics.champion_loaded.set(1)
    metrics.registry_up.set(1)
    metrics.log_queue_depth.set(12)
    metrics.log_write_failures.inc()
    metrics.log_records_written.inc(250)
    metrics.log_store_healthy.set(1)
    metrics.log_spilled_records.inc(40)
    metrics.log_recovered_records.inc(40)


# Run by a fresh interpreter: prometheus-client picks its multiprocess value class as it
# is imported, from PROMETHEUS_MULTIPROC_DIR.
_MULTIPROCESS_SCRIPT = """
import sys
from prometheus_client import CollectorRegistry
from contender.metrics import ServiceMetrics
from tests.unit.test_prometheus import touch_every_metric

metrics = ServiceMetrics(CollectorRegistry(), multiprocess_dir=sys.argv[1])
touch_every_metric(metrics)
sys.stdout.buffer.write(metrics.exposition())
"""


def _metric_families(metrics: ServiceMetrics) -> set[str]:
    """The family names of every metric `ServiceMetrics` defines (counters without
    `_total`, as prometheus-client and its parser name them)."""
    return {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    }


@pytest.fixture(scope="module")
def single_process() -> tuple[str, set[str]]:
    """The exposition of one process, and the family names it must contain."""
    metrics = ServiceMetrics(CollectorRegistry())
    touch_every_metric(metrics)
    return metrics.exposition().decode(), _metric_families(metrics)


@pytest.fixture(scope="module")
def multiprocess(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The exposition of `--workers N` (prometheus-client's multiprocess mode)."""
    directory = tmp_path_factory.mktemp("prometheus-multiproc")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    done = subprocess.run(
        [sys.executable, "-c", _MULTIPROCESS_SCRIPT, str(directory)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert list(directory.glob("*.db")), "the values did not go to the multiprocess directory"
    return done.stdout.decode()


def _sample_names(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def exposed(single_process: tuple[str, set[str]], multiprocess: str) -> set[str]:
    """The sample names a query may use: in both expositions (so not `_created`, which
    the multiprocess mode has not)."""
    return _sample_names(single_process[0]) & _sample_names(multiprocess)


# --- promtool -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool, installed here if missing and we are root; else fail with the command."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"promtool is needed: run `{INSTALL}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "prometheus"]):
        done = subprocess.run(command, env=env, capture_output=True, check=False, timeout=900)
        if done.returncode != 0:
            error = done.stderr.decode()[-2000:]
            pytest.fail(f"`{' '.join(command)}` failed: {error}\nrun `{INSTALL}`")
    found = shutil.which("promtool")
    assert found is not None, "apt-get installed prometheus, but promtool is not on PATH"
    return found


def _promtool(promtool: str, *args: str, stdin: str | None = None, cwd: Path = ROOT) -> str:
    """promtool's output; the test fails with it unless promtool exits 0."""
    done = subprocess.run(
        [promtool, *args],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


def test_exposition_has_every_metric(single_process: tuple[str, set[str]]) -> None:
    exposition, families = single_process
    missing = families - {f.name for f in text_string_to_metric_families(exposition)}
    assert not missing, f"touch_every_metric must give these a value: {sorted(missing)}"


def test_exposition_passes_promtool(promtool: str, single_process: tuple[str, set[str]]) -> None:
    output = _promtool(promtool, "check", "metrics", stdin=single_process[0])
    assert output.strip() == "", output  # a lint problem would be a line here


def test_multiprocess_exposition_passes_promtool(
    promtool: str, single_process: tuple[str, set[str]], multiprocess: str
) -> None:
    families = {f.name for f in text_string_to_metric_families(multiprocess)}
    assert single_process[1] <= families, sorted(single_process[1] - families)
    output = _promtool(promtool, "check", "metrics", stdin=multiprocess)
    assert output.strip() == "", output


# --- PromQL ---------------------------------------------------------------------------

# PromQL words that are not metric names (functions are told apart by their "(").
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENTS = re.compile(r"#[^\n]*")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
# Grafana's interval variables, where a PromQL duration goes.
_GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords, label
    names and values, durations or Grafana variables)."""
    text = _STRINGS.sub('""', expr)
    text = _COMMENTS.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def test_metric_names_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (arm, le) (rate(a_bucket{arm="x", le=~"$le"}'
        "[$__rate_interval]))) / ignoring (arm) group_left sum without (version) "
        "(b_total offset 5m) > bool 1e3 or on (job) c or vector(0) and d[5m:1m]"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def _promql_parses(promtool: str, exprs: dict[str, str], tmp_path: Path) -> None:
    """promtool parses each expression: as a recording rule of a throwaway rules file."""
    rules = [{"record": f"check:{name}", "expr": expr} for name, expr in exprs.items()]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    _promtool(promtool, "check", "rules", str(path))


# --- alerts ---------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    output = _promtool(promtool, "check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(_alert_rules())} rules found" in output, output
    assert "WARNING" not in output.upper(), output


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    output = _promtool(promtool, "test", "rules", ALERTS_TEST.name, cwd=PROMETHEUS)
    assert "SUCCESS" in output, output


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in _alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_every_alert_has_for_severity_and_annotations() -> None:
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names)), names
    for rule in _alert_rules():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, rule["alert"]
        # Which service (and, where the alert keeps it, which process) it is.
        assert "$labels.job" in annotations["summary"], rule["alert"]


def test_alerts_use_only_exposed_metrics(exposed: set[str]) -> None:
    for rule in _alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exposed, f"{rule['alert']}: not in /metrics: {sorted(names - exposed)}"


# --- dashboard ------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _dashboard_exprs() -> dict[str, str]:
    """Every PromQL expression of the panels, by `panel<id>_<refId>`."""
    return {
        f"panel{panel['id']}_{target['refId']}": target["expr"]
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    }


def _variable_selectors() -> dict[str, str]:
    """The series selectors of the template variables' `label_values(selector, label)`."""
    selectors = {}
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        assert match is not None, f"variable {variable['name']}: {query}"
        selectors[f"variable_{variable['name']}"] = match.group(1)
    return selectors


def test_dashboard_shape() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        # Every query goes to the chosen data source, never to one of the author's.
        for owner in (panel, *panel["targets"]):
            assert owner["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_exprs_parse(promtool: str, tmp_path: Path) -> None:
    exprs = {**_dashboard_exprs(), **_variable_selectors()}
    for name, expr in exprs.items():
        for variable, duration in _GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, duration)
        exprs[name] = expr
    _promql_parses(promtool, exprs, tmp_path)


def test_dashboard_uses_only_exposed_metrics(exposed: set[str]) -> None:
    for name, expr in {**_dashboard_exprs(), **_variable_selectors()}.items():
        names = metric_names(expr)
        assert names, f"{name}: {expr}"
        assert names <= exposed, f"{name}: not in /metrics: {sorted(names - exposed)}"


def test_dashboard_shows_every_metric(single_process: tuple[str, set[str]]) -> None:
    used: set[str] = set()
    for expr in _dashboard_exprs().values():
        used |= metric_names(expr)
    families = list(text_string_to_metric_families(single_process[0]))
    names = {family.name for family in families}
    for family in families:
        if family.name.removesuffix("_created") in names - {family.name}:
            continue  # the creation time of a counter or histogram
        samples = {sample.name for sample in family.samples}
        assert samples & used, f"no panel of {DASHBOARD.name} shows {family.name}"
