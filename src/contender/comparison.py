"""`contender.compare`: the report as a function, for notebooks and simulations (SPEC 6).

`compare(records, labels=None, *, policy=None, **options)` returns the very object
`contender report --json` prints, computed by the very code: the records go into a
temporary SQLite prediction log (the store's own schema and writer), and the report is
read from it as the command reads a store. So a simulation can never drift from what a
team sees, at the price of a write (about 25 s per million one-row records here).

Records are dicts with the fields of SPEC section 4 and an optional `label` (a scalar
for a one-row request, else a row-aligned list), as `contender log export` writes them.
Fields a simulation need not care about get defaults: `timestamp` (records one
microsecond apart, in the given order), `inputs` (no rows logged), `model_name`
(`"model"`), `served_by` (`"champion"`), `fallback` (false). `labels` maps a request id
to its label and overrides a record's own. `options` are `report`'s flags with
underscores (`threshold`, `metric`, `max_latency_ratio`, `min_labeled`, `seed`, ...), plus
`model` (required when the records hold several models) and `since`. `policy` (a YAML
path or a parsed `Policy`) sets the inference, metric and gates as `report --policy`
does and adds its evaluation as `policy` (`outcome`, `reason`, `checks`).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contender.errors import ConfigError
from contender.policy.evaluate import POLICY_OPTIONS
from contender.policy.parse import Policy, load_policy
from contender.predictions.record import Feedback, JsonValue, PredictionRecord
from contender.predictions.store import SqlPredictionStore

_CHUNK = 5000
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_DEFAULTS: dict[str, JsonValue] = {
    "inputs": {"columns": [], "data": []},
    "model_name": "model",
    "served_by": "champion",
    "fallback": False,
}


def compare(
    records: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Any] | None = None,
    *,
    policy: str | Path | Policy | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The `report --json` object for `records` (see the module docstring).
    `ConfigError` for records, labels or options that do not make a report."""
    from contender.analysis.load import parse_since
    from contender.analysis.render_json import report_to_dict
    from contender.analysis.report import ReportOptions, build_report

    rules = load_policy(Path(policy)) if isinstance(policy, str | Path) else policy
    if rules is not None:
        from contender.policy.evaluate import report_options_for

        # The policy's inference, metric and gates win, as with `report --policy`.
        chosen = report_options_for(rules)
        for name in POLICY_OPTIONS:
            options[name] = getattr(chosen, name)
    model = options.pop("model", None)
    since = options.pop("since", None)
    known = {field.name for field in dataclasses.fields(ReportOptions)} - {"replay"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"compare() got unknown options {unknown}; known: {sorted(known)}")
    with tempfile.TemporaryDirectory(prefix="contender-compare-") as folder:
        url = f"sqlite:///{Path(folder) / 'log.db'}"
        models = _write_log(url, records, labels or {})
        if model is None:
            if len(models) != 1:
                raise ConfigError(
                    f"the records hold {len(models)} models ({', '.join(sorted(models))}): "
                    "pass model=..."
                )
            (model,) = models
        since_at = parse_since(since) if isinstance(since, str) else since
        report = build_report(url, model, since=since_at, options=ReportOptions(**options))
        result = report_to_dict(report)
    if rules is not None:
        from contender.policy.evaluate import evaluate

        result["policy"] = {"source": rules.source, **evaluate(rules, result).as_dict()}
    return result


def _write_log(
    url: str, records: Iterable[Mapping[str, Any]], labels: Mapping[str, Any]
) -> set[str]:
    store = SqlPredictionStore(url)
    models: set[str] = set()
    batch: list[PredictionRecord] = []
    feedback: list[Feedback] = []
    try:
        for number, given in enumerate(records):
            row = {**_DEFAULTS, **given}
            row.setdefault("timestamp", (_EPOCH + timedelta(microseconds=number)).isoformat())
            try:
                record = PredictionRecord.from_row(row)
            except (KeyError, TypeError) as error:
                raise ConfigError(f"record {number} is not a record: no field {error}") from None
            models.add(record.model_name)
            batch.append(record)
            label = labels.get(record.request_id, row.get("label"))
            if label is not None:
                feedback.extend(_feedback(record.request_id, label))
            if len(batch) >= _CHUNK:
                _flush(store, batch, feedback)
        _flush(store, batch, feedback)
    finally:
        store.close()
    if not models:
        raise ConfigError("no records to compare")
    return models


def _feedback(request_id: str, label: Any) -> list[Feedback]:
    if isinstance(label, list):
        return [
            Feedback(request_id, i, value) for i, value in enumerate(label) if value is not None
        ]
    return [Feedback(request_id, 0, label)]


def _flush(
    store: SqlPredictionStore, batch: list[PredictionRecord], feedback: list[Feedback]
) -> None:
    store.append_many(batch)
    if feedback:
        store.add_feedback(feedback)
    batch.clear()
    feedback.clear()
