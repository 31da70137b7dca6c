"""`--redact`: keyed hashes (HMAC-SHA256 with CONTENDER_REDACT_KEY), never a plain hash."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from contender import protocol
from contender.errors import ConfigError
from contender.jsonio import dumps
from contender.settings import Settings
from tests.support import BIN

KEY = b"a long random secret"
REDACTION = protocol.Redaction(frozenset({"ssn"}), KEY)


@pytest.mark.parametrize(
    "value", [987.654321, "123-45-6789", 42, None, True, [1, 2], np.float64(0.1), np.int64(7)]
)
def test_a_token_is_the_hmac_of_the_values_json_text(value: Any) -> None:
    expected = hmac.new(KEY, dumps(value), hashlib.sha256).hexdigest()
    assert REDACTION.token(value) == f"hmac-sha256:{expected}"
    # Not the plain hash, which anyone can recompute for every likely value.
    assert hashlib.sha256(dumps(value)).hexdigest() not in REDACTION.token(value)


def test_the_same_value_and_key_give_the_same_token_and_another_key_another() -> None:
    again = protocol.Redaction(frozenset({"ssn"}), KEY)
    other = protocol.Redaction(frozenset({"ssn"}), b"another key")
    assert REDACTION.token("123-45-6789") == again.token("123-45-6789")
    assert REDACTION.token("123-45-6789") != other.token("123-45-6789")
    assert REDACTION.token("123-45-6789") != REDACTION.token("123-45-6780")
    # A number and its text are different values.
    assert REDACTION.token(1) != REDACTION.token("1")


def test_logged_rows_keep_only_tokens_of_redacted_columns() -> None:
    frame = pd.DataFrame({"age": [41.0, 52.0], "ssn": ["123-45-6789", "987-65-4321"]})
    logged = protocol.log_inputs(frame, REDACTION)
    assert logged["columns"] == ["age", "ssn"]
    assert logged["data"] == [
        [41.0, REDACTION.token("123-45-6789")],
        [52.0, REDACTION.token("987-65-4321")],
    ]
    assert b"123-45-6789" not in dumps(logged)


@pytest.mark.parametrize(
    "data",
    [
        [{"ssn": "123-45-6789", "age": 41}],
        {"ssn": ["123-45-6789", "x"], "age": [41]},
        {"nested": [{"ssn": "123-45-6789"}]},
    ],
    ids=["records", "ragged-columns", "nested"],
)
def test_inputs_that_are_not_a_table_are_redacted_too(data: Any) -> None:
    # A model without a signature gets (and the log keeps) the input as sent.
    logged = protocol.log_inputs(data, REDACTION)
    assert b"123-45-6789" not in dumps(logged)
    assert b'"ssn":"hmac-sha256:' in dumps(logged)


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": 2.5},
        np.arange(8.0).reshape(2, 2, 2),
        np.asfortranarray(np.arange(6.0).reshape(3, 2))[:, :1],
        pd.DataFrame({"b": [b"\x00\xff", b"x"], "t": [pd.NaT, pd.Timestamp("2026-01-01")]}),
        pd.DataFrame({"s": pd.array(["x", None], dtype="string")}),
        "just a string",
    ],
    ids=["scalars", "tensor", "strided", "bytes-and-times", "string-na", "string"],
)
def test_logging_any_parsed_input_never_raises(data: Any) -> None:
    # This runs in the log writer's thread: an input it cannot write would stall the log.
    logged = protocol.log_inputs(data, protocol.Redaction())
    dumps(logged)


def test_redacting_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="CONTENDER_REDACT_KEY"):
        protocol.Redaction.of(["ssn"], None)
    with pytest.raises(ConfigError):
        protocol.Redaction.of(["ssn"], "")
    assert protocol.Redaction.of([], None) == protocol.Redaction()


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTENDER_REDACT_KEY", raising=False)
    monkeypatch.delenv("CONTENDER_REDACT", raising=False)


@pytest.mark.usefixtures("no_key")
def test_settings_refuse_redact_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(model="m", redact=("ssn",))
    (issue,) = raised.value.errors()
    assert issue["loc"] == ("redact",)
    assert "CONTENDER_REDACT_KEY" in issue["msg"]
    monkeypatch.setenv("CONTENDER_REDACT", "ssn,email")
    with pytest.raises(ValidationError):
        Settings(model="m")
    monkeypatch.setenv("CONTENDER_REDACT_KEY", "s3cret")
    settings = Settings(model="m")
    assert settings.redact == ("ssn", "email")
    assert "s3cret" not in repr(settings)
    assert Settings(model="m", redact=()).redact == ()


@pytest.mark.usefixtures("no_key")
def test_serve_refuses_to_start_with_redact_and_no_key() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTENDER_")}
    result = subprocess.run(
        [str(BIN / "contender"), "serve", "--model", "m", "--redact", "x"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "--redact: needs CONTENDER_REDACT_KEY" in output, output
    assert "Traceback" not in output
