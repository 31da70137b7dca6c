"""The demo folder: every file the demo writes, and a reset that removes only those."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

# What a run creates; a reset removes these and nothing else, so `--dir .` is safe.
_CREATED = (
    "mlflow.db",
    "mlflow.db-journal",
    "artifacts",
    "contender.db",
    "contender.db-wal",
    "contender.db-shm",
    "report.html",
    "service.log",
)


@dataclass(frozen=True)
class Workspace:
    """Paths of one demo run. `root` is kept as given (relative to the working directory
    when it was given that way) so the commands the demo prints stay short."""

    root: Path

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def log_db(self) -> Path:
        return self.root / "contender.db"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def service_log(self) -> Path:
        return self.root / "service.log"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    @property
    def log_store(self) -> str:
        return f"sqlite:///{self.log_db}"

    def reset(self) -> list[str]:
        """Remove what a previous run left; returns the names removed."""
        removed = []
        for name in _CREATED:
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
        self.root.mkdir(parents=True, exist_ok=True)
        return removed
