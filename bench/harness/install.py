"""What the benchmark needs beyond the project's own venv, installed on demand.

- `wrk`, from Debian (`apt-get update` once, then `apt-get install -y wrk`; we run as root).
- `bench/.mlserver-venv`: MLServer 1.7.1 with its MLflow runtime, in a venv of its
  own because it pins FastAPI/Starlette versions the project does not use. It gets
  the same mlflow, scikit-learn, numpy, pandas and skops versions as the project's
  venv, so it loads the very models the project trains. `fastapi<0.116` is the range
  MLServer 1.7.1 was built against; `uvloop==0.21.0` is the last it supports.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

MLSERVER_PINS = (
    "mlserver==1.7.1",
    "mlserver-mlflow==1.7.1",
    "fastapi<0.116",
    "uvloop==0.21.0",
)
# Shared with the project's venv, so both sides unpickle/unskop the same model.
SHARED_WITH_PROJECT = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk but it is not on PATH")
    return found


def mlserver_requirements() -> list[str]:
    shared = []
    for name in SHARED_WITH_PROJECT:
        try:
            shared.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return [*MLSERVER_PINS, *shared]


def ensure_mlserver_venv(venv: Path) -> Path:
    """Create or update `venv`; returns its `mlserver` executable."""
    requirements = mlserver_requirements()
    stamp = venv / ".bench-requirements"
    mlserver = venv / "bin" / "mlserver"
    if mlserver.exists() and stamp.exists() and stamp.read_text() == "\n".join(requirements):
        return mlserver
    print(f"building {venv} ({', '.join(requirements)}) ...", flush=True)
    # The base interpreter of the project's venv: MLServer 1.7.1 supports 3.9-3.12.
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    log = venv / "bench-install.log"
    with log.open("wb") as out:
        for args in (["--upgrade", "pip"], requirements):
            if subprocess.run([*pip, *args], stdout=out, stderr=out, check=False).returncode:
                raise RuntimeError(f"pip install into {venv} failed; see {log}")
    stamp.write_text("\n".join(requirements))
    return mlserver
