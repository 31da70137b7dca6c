"""deploy/: checked offline, never applied (no cluster, no Docker engine, no systemd boot).

- every Kubernetes manifest validates strictly against pinned Kubernetes schemas;
- the kustomization lists exactly the manifests in its folder;
- probes, stop timings and the spill volume say what SPEC sections 3 and 4 promise;
- every `CONTENDER_*` variable the files set is a real setting, so they cannot drift
  from `contender.settings.Settings`, and their values pass its validation;
- the nginx config passes `nginx -t`; the systemd unit waits long enough on stop.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic.fields import FieldInfo

from contender.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
NGINX_CONF = DEPLOY / "nginx" / "contender.conf"
NGINX = Path("/usr/sbin/nginx")

# The oldest Kubernetes the manifests promise to work on, and the newest whose schemas
# the pinned kubernetes-validate ships (1.25 to 1.37 in 1.37.0).
KUBERNETES_VERSIONS = ("1.30", "1.37")
# SPEC section 4: a SIGTERM during a store outage spills what it cannot store within 30 s.
DRAIN_S = 30
SPILL_DIR = "/var/lib/contender/spill"


def _env_name(name: str, field: FieldInfo) -> str:
    """The variable a setting is read from: `CONTENDER_<FLAG>` (SPEC section 5), or the
    variable its alias names (a setting another library owns)."""
    alias = field.validation_alias
    return alias.upper() if isinstance(alias, str) else f"CONTENDER_{name.upper()}"


SETTINGS_ENV = {_env_name(name, field) for name, field in Settings.model_fields.items()}
KNOWN_ENV = SETTINGS_ENV | {"CONTENDER_ADMIN_TOKEN"}
# The files that set environment variables for the service (keys of `_variables()`).
ENV_SOURCES = (
    "configmap.yaml",
    "secret.yaml",
    "deployment.yaml",
    "contender.env.example",
    "contender.service",
    "Dockerfile",
)


def _documents(path: Path) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in documents), path
    return documents


def _manifests() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def _resource(path: Path, kind: str) -> dict[str, Any]:
    (resource,) = [doc for doc in _documents(path) if doc["kind"] == kind]
    return resource


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _resource(KUBERNETES / "deployment.yaml", "Deployment")["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _container() -> dict[str, Any]:
    (container,) = [c for c in _pod_spec()["containers"] if c["name"] == "contender"]
    assert isinstance(container, dict)
    return container


def _env_file(path: Path) -> dict[str, str]:
    """`NAME=value` lines of an EnvironmentFile, comments and blank lines left out."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def _unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's `Key=value` settings (every section), repeated keys kept."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def _seconds(timespan: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", timespan)
    assert match, f"unhandled systemd time span {timespan!r}"
    return float(match[1]) * (60 if match[2] == "min" else 1)


def _dockerfile_env() -> dict[str, str]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            pairs.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line))
    return pairs


def _variables() -> dict[str, dict[str, str]]:
    """Every environment variable the deploy files set, by file."""
    configmap = _resource(KUBERNETES / "configmap.yaml", "ConfigMap")
    secret = _resource(KUBERNETES / "secret.yaml", "Secret")
    unit_env: dict[str, str] = {}
    for assignment in _unit(SYSTEMD / "contender.service").get("Environment", []):
        name, _, value = assignment.strip('"').partition("=")
        unit_env[name] = value
    return {
        "configmap.yaml": dict(configmap.get("data", {})),
        "secret.yaml": {**secret.get("data", {}), **secret.get("stringData", {})},
        "deployment.yaml": {e["name"]: str(e.get("value", "")) for e in _container()["env"]},
        "contender.env.example": _env_file(SYSTEMD / "contender.env.example"),
        "contender.service": unit_env,
        "Dockerfile": _dockerfile_env(),
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _manifests(), ids=lambda path: path.name)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    documents = _documents(path)
    assert documents, f"{path.name} holds no resource"
    for document in documents:
        name = f"{path.name}: {document.get('kind')}/{document.get('metadata', {}).get('name')}"
        try:
            validated = kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{name} against Kubernetes {version}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{name}: {error.message}")
        # No silent fallback to the schemas of an older version.
        assert validated == version


def test_kustomization_lists_exactly_the_manifests() -> None:
    (kustomization,) = _documents(KUBERNETES / "kustomization.yaml")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), "a resource is listed twice"
    assert sorted(resources) == [path.name for path in _manifests()]


def test_probes_ask_the_service_endpoints() -> None:
    container = _container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    # Models download at start: minutes, not seconds, before the kubelet gives up.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    (http,) = [port for port in container["ports"] if port["name"] == "http"]
    assert http["containerPort"] == 8080
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)
    args = container["args"]
    assert args[0] == "serve"
    assert args[args.index("--port") + 1] == "8080"
    assert args[args.index("--host") + 1] == "0.0.0.0"


def test_grace_period_outlasts_the_log_drain() -> None:
    command = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop_s = float(command[1])
    assert pre_stop_s > 0
    assert _pod_spec()["terminationGracePeriodSeconds"] > DRAIN_S + pre_stop_s


def test_spill_and_tmp_are_writable_on_a_read_only_root() -> None:
    pod, container = _pod_spec(), _container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get("/tmp") in empty_dirs
    assert mounts.get(SPILL_DIR) in empty_dirs
    assert _variables()["deployment.yaml"]["TMPDIR"] == "/tmp"
    configmap = _variables()["configmap.yaml"]
    if "spill_dir" in Settings.model_fields:
        assert configmap.get("CONTENDER_SPILL_DIR") == SPILL_DIR


def test_env_sources_are_all_read() -> None:
    assert tuple(_variables()) == ENV_SOURCES


@pytest.mark.parametrize("source", ENV_SOURCES)
def test_every_contender_variable_is_a_setting(source: str) -> None:
    names = {name for name in _variables()[source] if name.startswith("CONTENDER_")}
    unknown = sorted(names - KNOWN_ENV)
    assert not unknown, f"{source} sets {unknown}, which contender.settings.Settings lacks"


@pytest.mark.parametrize(
    "sources",
    [("configmap.yaml", "secret.yaml", "deployment.yaml"), ("contender.env.example",)],
    ids=["kubernetes", "systemd"],
)
def test_the_values_pass_the_settings_validation(
    sources: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in os.environ:
        if name.startswith("CONTENDER_"):
            monkeypatch.delenv(name)
    for source in sources:
        for name, value in _variables()[source].items():
            monkeypatch.setenv(name, value)
    Settings()  # raises on a value the service would refuse at start


def test_systemd_unit_stops_gracefully() -> None:
    unit = _unit(SYSTEMD / "contender.service")
    assert unit["KillSignal"] == ["SIGTERM"]
    assert _seconds(unit["TimeoutStopSec"][-1]) > DRAIN_S
    assert unit["EnvironmentFile"] == ["/etc/contender/contender.env"]
    assert unit["ExecStart"][-1].startswith("/opt/contender/bin/contender serve")


def _nginx() -> Path:
    """nginx, installed here if missing and we are root; else fail with the command."""
    if NGINX.exists():
        return NGINX
    if os.geteuid() != 0:
        pytest.fail("nginx is needed: run `sudo apt-get update && sudo apt-get install -y nginx`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "nginx"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    assert NGINX.exists(), f"apt-get installed nginx, but {NGINX} is missing"
    return NGINX


def test_nginx_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = _nginx()
    conf = tmp_path / "nginx.conf"
    temp_paths = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"pid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'};\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp_paths}\n"
        f"    include {NGINX_CONF};\n"
        "}\n"
    )
    command = [str(nginx), "-t", "-p", str(tmp_path), "-c", str(conf)]
    command += ["-e", str(tmp_path / "error.log")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    directives = [line.split("#")[0].strip() for line in NGINX_CONF.read_text().splitlines()]
    assert "client_max_body_size 10m;" in directives
    assert Settings.model_fields["max_body_bytes"].default == 10 * 1024 * 1024
    # Never a retry of a POST: a scored request must not be scored and logged twice.
    assert not [line for line in directives if "non_idempotent" in line]


def test_autopilot_is_one_controller_with_a_policy_that_parses() -> None:
    from contender.policy.parse import parse_policy

    path = KUBERNETES / "autopilot.yaml"
    deployment = _resource(path, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two at once
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "autopilot"
    policy_path = Path(args[args.index("--policy") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if v["name"] == mounts[str(policy_path.parent)]]
    configmap = _resource(path, "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    policy = parse_policy(configmap["data"][policy_path.name], source=policy_path.name)
    assert policy.evaluation.on_fail == "rollback"
    # The model, selector and stores come from the service's own ConfigMap and Secret.
    assert [ref for source in container["envFrom"] for ref in source.values()] == [
        {"name": "contender"},
        {"name": "contender"},
    ]
