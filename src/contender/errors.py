"""The one exception tree of contender.

    ContenderError
    ├── BadRequest            the client's input is wrong (4xx)
    │   ├── UnsupportedMediaType   415
    │   ├── PayloadTooLarge        413
    │   └── NotFound               404 (a model or version this service does not serve)
    ├── NoChampion            no champion is loaded yet (503)
    ├── StoreUnavailable      the log store cannot take a write now (the writer buffers it)
    ├── ModelFailure          a model raised while predicting (500 for the champion)
    ├── RemoteModelError      a model raised in the shadow process (its own `Type: message`)
    └── ConfigError           settings or command-line values that cannot work

`http/problems.py` maps these to HTTP answers in one place.
"""

from __future__ import annotations


class ContenderError(Exception):
    """Base of every error contender raises on purpose."""


class BadRequest(ContenderError):
    status_code = 400
    error_code = "BAD_REQUEST"


class UnsupportedMediaType(BadRequest):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(BadRequest):
    status_code = 413
    error_code = "PAYLOAD_TOO_LARGE"


class NotFound(BadRequest):
    status_code = 404
    error_code = "NOT_FOUND"


class NoChampion(ContenderError):
    status_code = 503
    error_code = "NO_CHAMPION"


class StoreUnavailable(ContenderError):
    """The log store refused a write (locked, down): the caller buffers it and retries."""


class ModelFailure(ContenderError):
    status_code = 500
    error_code = "MODEL_ERROR"


class RemoteModelError(ContenderError):
    """A model raised in another process; `str()` is its own `Type: message`."""


class ConfigError(ContenderError):
    """Settings or arguments that cannot work; the CLI prints these without a traceback."""
