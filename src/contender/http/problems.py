"""Errors to HTTP answers, in one place: `{"error_code": ..., "message": ...}`, no traces."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from contender.errors import BadRequest, ContenderError, ModelFailure, NoChampion
from contender.jsonio import dumps

_log = logging.getLogger(__name__)


def problem(status_code: int, error_code: str, message: str, **headers: str) -> Response:
    body = dumps({"error_code": error_code, "message": message})
    return Response(body, status_code, headers=headers or None, media_type="application/json")


async def contender_error(_request: Request, error: Exception) -> Response:
    if isinstance(error, BadRequest | NoChampion | ModelFailure):
        return problem(error.status_code, error.error_code, str(error))
    return await unexpected_error(_request, error)


async def unexpected_error(_request: Request, error: Exception) -> Response:
    _log.error("unexpected error", exc_info=error)
    return problem(500, "INTERNAL_ERROR", "internal error; the service log has the details")


async def http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)  # Starlette only routes HTTPException here
    code = "NOT_FOUND" if error.status_code == 404 else "HTTP_ERROR"
    return problem(error.status_code, code, error.detail)


EXCEPTION_HANDLERS = {
    ContenderError: contender_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
