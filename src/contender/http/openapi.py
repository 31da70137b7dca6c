"""GET /openapi.json: an OpenAPI 3.1 document of every endpoint (SPEC section 3).

The document is plain Python data, built once at import: its schemas mirror what the
handlers in `scoring.py`, `status.py`, `admin.py`, `v2.py` and `dashboard.py` answer.
`tests/unit/test_openapi.py` keeps them honest: the document validates as OpenAPI 3.1,
its paths are exactly the app's routes, and real answers validate against it. A new
route or a new answer field needs its line here, or that test fails.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from contender import __version__, protocol
from contender.jsonio import dumps

Schema = dict[str, Any]

_REF = "#/components/schemas/"


def _ref(name: str) -> Schema:
    return {"$ref": _REF + name}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


_STRING: Schema = {"type": "string"}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_BOOLEAN: Schema = {"type": "boolean"}
_INTEGER: Schema = {"type": "integer"}
_WEIGHT: Schema = {"type": "number", "minimum": 0, "maximum": 1}
_STRING_MAP: Schema = {"type": "object", "additionalProperties": _STRING}
_PARAMS: Schema = {
    "type": "object",
    "description": "Inference parameters, passed to the model's `predict(params=...)`.",
}
_V2_DATATYPES = [
    "BOOL",
    *(f"UINT{bits}" for bits in (8, 16, 32, 64)),
    *(f"INT{bits}" for bits in (8, 16, 32, 64)),
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]

_SCHEMAS: dict[str, Schema] = {
    "Error": {
        **_object({"error_code": _STRING, "message": _STRING}),
        "description": "Every 4xx and 5xx answer: a stable code and a message naming the "
        "problem; never a stack trace.",
    },
    "V2Error": {
        **_object({"error_code": _STRING, "message": _STRING, "error": _STRING}),
        "description": "The V2 endpoints' errors: `Error` plus `error` (the same message), "
        "the key V2 clients read.",
    },
    # POST /invocations, MLflow's scoring protocol: exactly one of the four forms.
    "InvocationRequest": {
        "oneOf": [
            {
                "type": "object",
                "required": [form],
                "properties": {form: _ref(name), "params": _PARAMS},
                "additionalProperties": False,
            }
            for form, name in (
                ("dataframe_split", "DataframeSplit"),
                ("dataframe_records", "DataframeRecords"),
                ("instances", "Instances"),
                ("inputs", "Instances"),
            )
        ],
    },
    "DataframeSplit": _object(
        {"data": {"type": "array", "items": {"type": "array"}}},
        {
            "columns": {"type": "array", "items": _STRING},
            "index": {"type": "array"},
        },
    ),
    "DataframeRecords": {"type": "array", "items": {"type": "object"}},
    "Instances": {
        "description": "A list of rows, an object of columns, or a tensor (nested lists).",
        "type": ["array", "object"],
    },
    "InvocationResponse": _object(
        {
            "predictions": {
                "description": "The serving model's output, as MLflow's scoring server "
                "writes it (a list per row, records, or an object of columns)."
            },
            "request_id": _STRING,
            "served_by": _ref("Arm"),
            "model_version": _STRING,
        }
    ),
    "Arm": {"type": "string", "enum": ["champion", "challenger"]},
    "Feedback": _object(
        {
            "request_id": {"type": "string", "maxLength": 128},
            "label": {
                "description": "A scalar for a one-row request, or a list aligned with its rows."
            },
        }
    ),
    "FeedbackRequest": {
        "oneOf": [_ref("Feedback"), {"type": "array", "items": _ref("Feedback")}],
    },
    "FeedbackResponse": _object(
        {
            "accepted": {**_INTEGER, "description": "Labels (rows) accepted."},
            "unknown_request_ids": {
                "type": "array",
                "items": _STRING,
                "description": "Ids not in the log yet: their labels are kept and join "
                "when the record lands.",
            },
        },
        {
            "buffered": {
                **_BOOLEAN,
                "description": "true (202 only): the store is down, the labels wait in the "
                "service's buffer and the ids are not checked yet.",
            }
        },
    ),
    "Status": _object({"status": _STRING}),
    "Versions": _object({"contender": _STRING, "mlflow": _STRING}),
    "Slot": _object(
        {
            "version": _STRING,
            "run_id": _STRING,
            "source": _STRING,
            "loaded_at": {"type": "string", "format": "date-time"},
            "requirements_mismatch": {"type": "array", "items": _STRING},
        }
    ),
    "Breaker": _object(
        {
            "state": {"type": "string", "enum": ["closed", "open"]},
            "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "opened_at": _NULLABLE_STRING,
        }
    ),
    "LogStore": _object(
        {
            "healthy": _BOOLEAN,
            "last_error": _NULLABLE_STRING,
            "buffered": _INTEGER,
            "spilled": _INTEGER,
        }
    ),
    "ReloadEvent": _object(
        {
            "at": _STRING,
            "slot": {"type": "string", "enum": ["champion", "challenger"]},
            "old_version": _NULLABLE_STRING,
            "new_version": _NULLABLE_STRING,
            "load_seconds": {"type": "number"},
            "outcome": {"type": "string", "enum": ["loaded", "reused", "emptied", "failed"]},
            "error": _NULLABLE_STRING,
            "attempt": _INTEGER,
        }
    ),
    "ServiceStatus": _object(
        {
            "model": _STRING,
            "selector": {"type": "string", "enum": ["stages", "aliases"]},
            "testing": _BOOLEAN,
            "challenger_weight": _WEIGHT,
            "routing_revision": {"type": ["integer", "null"]},
            "routing_error": _NULLABLE_STRING,
            "champion": _nullable(_ref("Slot")),
            "challenger": _nullable(_ref("Slot")),
            "last_poll_at": _NULLABLE_STRING,
            "last_poll_error": _NULLABLE_STRING,
            "breaker": _ref("Breaker"),
            "log_store": _ref("LogStore"),
            "load_errors": _STRING_MAP,
            "downloads": _INTEGER,
            "reloads": {"type": "array", "items": _ref("ReloadEvent")},
        }
    ),
    "DashboardData": {
        "type": "object",
        "description": "Everything the dashboard shows: `/status`'s slots, routing, "
        "breaker, reloads and log store, plus this worker's live series.",
        "required": ["model", "champion", "challenger", "routing", "live"],
        "properties": {
            "model": _STRING,
            "pid": _INTEGER,
            "workers": _INTEGER,
            "admin_enabled": _BOOLEAN,
            "champion": _nullable(_ref("Slot")),
            "challenger": _nullable(_ref("Slot")),
            "routing": {"type": "object"},
            "breaker": _ref("Breaker"),
            "log_store": _ref("LogStore"),
            "reloads": {"type": "array", "items": _ref("ReloadEvent")},
            "live": {"type": "object"},
        },
    },
    "RoutingChange": {
        **_object({}, {"challenger_weight": _WEIGHT, "testing": _BOOLEAN}),
        "minProperties": 1,
        "additionalProperties": False,
    },
    "Routing": _object(
        {
            "challenger_weight": _WEIGHT,
            "testing": _BOOLEAN,
            "revision": {"type": ["integer", "null"]},
        }
    ),
    "ReloadResult": _object(
        {
            "changed": _BOOLEAN,
            "champion": _NULLABLE_STRING,
            "challenger": _NULLABLE_STRING,
            "last_poll_error": _NULLABLE_STRING,
            "load_errors": _STRING_MAP,
        }
    ),
    # The Open Inference Protocol (V2) REST API.
    "V2Live": _object({"live": _BOOLEAN}),
    "V2Ready": _object({"ready": _BOOLEAN}),
    "V2ServerMetadata": _object(
        {"name": _STRING, "version": _STRING, "extensions": {"type": "array", "items": _STRING}}
    ),
    "V2TensorMetadata": _object(
        {
            "name": _STRING,
            "datatype": {"type": "string", "enum": _V2_DATATYPES},
            "shape": {"type": "array", "items": _INTEGER},
        }
    ),
    "V2ModelMetadata": _object(
        {
            "name": _STRING,
            "versions": {"type": "array", "items": _STRING},
            "platform": _STRING,
            "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("V2TensorMetadata")},
        }
    ),
    "V2ModelReady": _object({"name": _STRING, "ready": _BOOLEAN}),
    "V2Tensor": _object(
        {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": _V2_DATATYPES},
        },
        {
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {
                "description": "The tensor's elements, flat or nested in row-major order; "
                "absent when `parameters.binary_data_size` puts them in the binary part.",
            },
        },
    ),
    "V2RequestedOutput": _object(
        {"name": _STRING},
        {"parameters": {"type": "object", "properties": {"binary_data": _BOOLEAN}}},
    ),
    "V2InferenceRequest": _object(
        {"inputs": {"type": "array", "items": _ref("V2Tensor"), "minItems": 1}},
        {
            "id": _STRING,
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": _BOOLEAN},
            },
            "outputs": {"type": "array", "items": _ref("V2RequestedOutput")},
        },
    ),
    "V2InferenceResponse": _object(
        {
            "model_name": _STRING,
            "model_version": _STRING,
            "id": _STRING,
            "parameters": _object(
                {"served_by": _ref("Arm"), "model_version": _STRING, "request_id": _STRING}
            ),
            "outputs": {"type": "array", "items": _ref("V2Tensor")},
        }
    ),
}

_ERROR_REASONS = {
    400: "Bad request: the body does not parse, or a column is missing or mistyped "
    "(the message names it).",
    401: "A bearer token is configured, and this request's is missing or wrong.",
    403: "Admin endpoints are off: no CONTENDER_ADMIN_TOKEN is configured.",
    404: "Not found: no such model or version is served here.",
    413: "Payload too large: more rows than --max-rows, or a body over --max-body-bytes.",
    415: "Unsupported media type (or charset, or Content-Encoding).",
    500: "Internal error, or the serving model failed.",
    503: "Unavailable: no champion is loaded yet.",
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Schema, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(schema), **extra}


def _errors(*codes: int, v2: bool = False, **reasons: str) -> dict[str, Any]:
    """The error answers of an operation; `reasons` overrides a code's description."""
    schema = _ref("V2Error" if v2 else "Error")
    return {
        str(code): {
            "description": reasons.get(f"r{code}", _ERROR_REASONS[code]),
            "content": _json(schema),
        }
        for code in codes
    }


def _text(media_type: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {media_type: {"schema": {"type": "string"}}},
    }


_ANSWER_HEADERS = {
    "X-Request-ID": {
        "description": "The request id: the client's, or a new one.",
        "schema": _STRING,
    },
    "X-Served-By": {"description": "The arm whose answer this is.", "schema": _ref("Arm")},
    "X-Model-Version": {"description": "The answering model's version.", "schema": _STRING},
}
_IDENTITY_PARAMETERS = [
    {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Kept as the request id (in the answer and the log).",
        "schema": {"type": "string", "maxLength": 128},
    },
    {
        "name": "X-Routing-Key",
        "in": "header",
        "required": False,
        "description": "Requests with the same key go to the same arm.",
        "schema": {"type": "string", "maxLength": 256},
    },
]
_MODEL = {"name": "model", "in": "path", "required": True, "schema": _STRING}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": _STRING}
_ADMIN = {"security": [{"bearerAuth": []}], "tags": ["admin"]}


def _get(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses, **extra}}


def _invocations() -> dict[str, Any]:
    return {
        "post": {
            "summary": "Score with MLflow's scoring protocol (drop-in for `mlflow models serve`)",
            "tags": ["scoring"],
            "parameters": _IDENTITY_PARAMETERS,
            "requestBody": {
                "required": True,
                "content": {
                    protocol.JSON_TYPE: {"schema": _ref("InvocationRequest")},
                    protocol.CSV_TYPE: {
                        "schema": {"type": "string", "description": "A header row, then rows."}
                    },
                    protocol.PARQUET_TYPE: {
                        "schema": {"type": "string", "contentMediaType": protocol.PARQUET_TYPE}
                    },
                },
            },
            "responses": {
                "200": _ok(
                    "The serving arm's predictions.",
                    _ref("InvocationResponse"),
                    headers=_ANSWER_HEADERS,
                ),
                **_errors(400, 413, 415, 500, 503),
            },
        }
    }


def _infer(versioned: bool) -> dict[str, Any]:
    parameters = [_MODEL, *([_VERSION] if versioned else []), *_IDENTITY_PARAMETERS]
    binary = {
        "schema": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "The JSON document (its length in "
            "Inference-Header-Content-Length), then the tensors' binary data.",
        }
    }
    return {
        "post": {
            "summary": "V2 (Open Inference Protocol) inference on the same router"
            + (" (the router, not the path, picks the answering version)" if versioned else ""),
            "tags": ["v2"],
            "parameters": [
                *parameters,
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "description": "With binary tensor data: the JSON part's length in bytes.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    protocol.JSON_TYPE: {"schema": _ref("V2InferenceRequest")},
                    "application/octet-stream": binary,
                },
            },
            "responses": {
                "200": {
                    "description": "The outputs; binary when `binary_data_output` or an "
                    "output's `binary_data` asked for it.",
                    "headers": {
                        **_ANSWER_HEADERS,
                        "Inference-Header-Content-Length": {
                            "description": "With a binary answer: the JSON part's length.",
                            "schema": _INTEGER,
                        },
                    },
                    "content": {
                        protocol.JSON_TYPE: {"schema": _ref("V2InferenceResponse")},
                        "application/octet-stream": binary,
                    },
                },
                **_errors(400, 404, 413, 415, 500, 503, v2=True),
            },
        }
    }


def _v2_model(versioned: bool) -> dict[str, dict[str, Any]]:
    base = "/v2/models/{model}" + ("/versions/{version}" if versioned else "")
    parameters = [_MODEL, *([_VERSION] if versioned else [])]
    errors = _errors(404, 500, 503, v2=True)
    return {
        base: _get(
            "V2 model metadata, from the champion's (or that version's) signature",
            {"200": _ok("The model's metadata.", _ref("V2ModelMetadata")), **errors},
            parameters=parameters,
            tags=["v2"],
        ),
        base + "/ready": _get(
            "V2 model readiness",
            {"200": _ok("The model is ready.", _ref("V2ModelReady")), **errors},
            parameters=parameters,
            tags=["v2"],
        ),
        base + "/infer": _infer(versioned),
    }


_ROUTING_REFUSED = "The registry refused the routing change: nothing changed anywhere."
_PATHS: dict[str, dict[str, Any]] = {
    "/invocations": _invocations(),
    "/feedback": {
        "post": {
            "summary": "Ground truth for logged requests",
            "tags": ["scoring"],
            "requestBody": {"required": True, "content": _json(_ref("FeedbackRequest"))},
            "responses": {
                "200": _ok("The labels were stored.", _ref("FeedbackResponse")),
                "202": _ok(
                    "The log store is down: the labels are kept (spilled to disk past the "
                    "buffer) and stored once it is back; request ids are not checked.",
                    _ref("FeedbackResponse"),
                ),
                **_errors(400, 413, 500),
            },
        }
    },
    "/ping": _get("Liveness", {"200": _ok("The process serves.", _ref("Status"))}),
    "/health": _get("Liveness (as /ping)", {"200": _ok("The process serves.", _ref("Status"))}),
    "/ready": _get(
        "Readiness",
        {"200": _ok("A champion is loaded.", _ref("Status")), **_errors(503)},
    ),
    "/version": _get(
        "contender's and MLflow's versions", {"200": _ok("The versions.", _ref("Versions"))}
    ),
    "/status": _get(
        "Slots, routing, breaker, log store and reloads",
        {"200": _ok("The service's state.", _ref("ServiceStatus"))},
    ),
    "/metrics": _get(
        "Prometheus exposition (all workers)",
        {"200": _text("text/plain", "The Prometheus text exposition format.")},
    ),
    "/openapi.json": _get(
        "This document",
        {"200": _ok("The OpenAPI 3.1 document.", {"type": "object"})},
    ),
    "/dashboard": _get("The live dashboard page", {"200": _text("text/html", "The page.")}),
    "/dashboard/dashboard.js": _get(
        "The dashboard's script", {"200": _text("text/javascript", "The script.")}
    ),
    "/dashboard/dashboard.css": _get(
        "The dashboard's style", {"200": _text("text/css", "The style sheet.")}
    ),
    "/dashboard/data": _get(
        "What the dashboard shows, as JSON (this worker's)",
        {"200": _ok("The dashboard's data.", _ref("DashboardData"))},
    ),
    "/v2": _get(
        "V2 server metadata",
        {"200": _ok("The server's metadata.", _ref("V2ServerMetadata"))},
        tags=["v2"],
    ),
    "/v2/health/live": _get(
        "V2 liveness", {"200": _ok("The process serves.", _ref("V2Live"))}, tags=["v2"]
    ),
    "/v2/health/ready": _get(
        "V2 readiness",
        {"200": _ok("A champion is loaded.", _ref("V2Ready")), **_errors(503, v2=True)},
        tags=["v2"],
    ),
    **_v2_model(versioned=False),
    **_v2_model(versioned=True),
    "/admin/reload": {
        "post": {
            "summary": "Poll the registry now",
            **_ADMIN,
            "responses": {
                "200": _ok("The poll's outcome.", _ref("ReloadResult")),
                **_errors(401, 403, 500),
            },
        }
    },
    "/admin/routing": {
        "put": {
            "summary": "Change the routing (written to the registry, effective at once)",
            **_ADMIN,
            "requestBody": {"required": True, "content": _json(_ref("RoutingChange"))},
            "responses": {
                "200": _ok("The new routing and its revision.", _ref("Routing")),
                **_errors(400, 401, 403, 413, 500, 503, r503=_ROUTING_REFUSED),
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "contender",
        "version": __version__,
        "description": "Champion/challenger serving for models in the MLflow Model Registry.",
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "CONTENDER_ADMIN_TOKEN; only the admin endpoints need it.",
            }
        },
    },
}

_BODY = dumps(DOCUMENT)


async def openapi(_request: Request) -> Response:
    return Response(_BODY, media_type=protocol.JSON_TYPE)
