"""The app built from the environment alone: what each `--workers N` process runs."""

from __future__ import annotations

from starlette.applications import Starlette

from contender.compose import build_services, tune_process
from contender.http.app import create_app
from contender.settings import Settings


def app_from_environment() -> Starlette:
    tune_process()
    return create_app(build_services(Settings()))
