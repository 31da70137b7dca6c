"""Promotion policy files (SPEC section 7): YAML in, a frozen `Policy` out, or one error.

```yaml
policy: v1
alpha: 0.05
inference: {mode: sequential, tuning_rows: 5000, burn_in_rows: 200}
primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}
guardrails:
  - {metric: p99_latency_ratio, fail_when: "ci.lower > 1.5"}
  - {metric: error_rate_diff, fail_when: "ci.lower > 0"}
label_quality: {min_coverage: 0.5, max_arm_coverage_gap: 0.1, srm_alpha: 0.001}
evaluation: {interval: 1h, consecutive_successes: 2, on_fail: rollback}
```

Required: `policy: v1` and `primary` with `metric` and `promote_when`. Defaults for the
rest: `alpha` 0.05; `inference` sequential, 5000 tuning rows, 200 burn-in rows; no
guardrails; no label-quality gate (each `label_quality` key present is one gate);
`evaluation` every 1h, 1 consecutive success, `on_fail: hold` (nothing is rolled back
unless the policy says so).

Conditions are written on the interval bounds of the report's field for the metric, as
the report gives it: challenger minus champion for quality metrics and the error rate,
challenger p99 / champion p99 for the latency ratio. Nothing is flipped for metrics where
lower is better (log_loss, brier, rmse, mae): a better challenger there has a *negative*
difference, so such a policy writes `promote_when: "ci.upper < 0"` and
`rollback_when: "ci.lower > 0"`.

Every refusal is a `PolicyError` naming the file and the line:
`policy.yaml line 5: guardrails[0].fail_when "ci.lowr > 1.5": ...`.
"""

from __future__ import annotations

import contextlib
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from contender.errors import ConfigError

PRIMARY_METRICS = ("auc", "log_loss", "brier", "accuracy", "precision", "recall", "rmse", "mae")
GUARDRAIL_METRICS = ("p99_latency_ratio", "error_rate_diff")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
"""Their difference (challenger minus champion) is negative when the challenger is better."""
INFERENCE_MODES = ("sequential", "fixed")
ON_FAIL = ("rollback", "hold")

CONDITION_FORM = '"ci.lower|ci.upper <op> <number>" with <op> one of >, >=, <, <='
_CONDITION = re.compile(r"^\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>[<>=!]+)\s*(?P<number>\S+)\s*$")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_DURATION = re.compile(r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class PolicyError(ConfigError):
    """A policy file that cannot be applied; the message names the file and the line."""


@dataclass(frozen=True)
class Condition:
    """`ci.<bound> <op> <threshold>` on one report interval."""

    bound: str
    """"lower" or "upper"."""
    op: str
    threshold: float
    text: str
    line: int

    def holds(self, ci: tuple[float | None, float | None] | None) -> bool | None:
        """True or False on a known interval; None (unknown) when the bound is missing."""
        if ci is None:
            return None
        value = ci[0] if self.bound == "lower" else ci[1]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return _OPERATORS[self.op](float(value), self.threshold)

    def __str__(self) -> str:
        return f"ci.{self.bound} {self.op} {_format_number(self.threshold)}"


@dataclass(frozen=True)
class Inference:
    mode: str = "sequential"
    tuning_rows: int = 5000
    burn_in_rows: int = 200


@dataclass(frozen=True)
class Primary:
    metric: str
    promote_when: Condition
    rollback_when: Condition | None = None


@dataclass(frozen=True)
class Guardrail:
    metric: str
    fail_when: Condition


@dataclass(frozen=True)
class LabelQuality:
    """Each gate is None when the policy does not set it (not checked)."""

    min_coverage: float | None = None
    max_arm_coverage_gap: float | None = None
    srm_alpha: float | None = None


@dataclass(frozen=True)
class Schedule:
    interval_s: float = 3600.0
    interval: str = "1h"
    consecutive_successes: int = 1
    on_fail: str = "hold"


@dataclass(frozen=True)
class Policy:
    primary: Primary
    version: str = "v1"
    alpha: float = 0.05
    inference: Inference = Inference()
    guardrails: tuple[Guardrail, ...] = ()
    label_quality: LabelQuality = LabelQuality()
    evaluation: Schedule = Schedule()
    source: str = "<policy>"


def load_policy(path: Path | str) -> Policy:
    """Read and check a policy file; PolicyError (one line, with the line number) if bad."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"cannot read policy {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise PolicyError(f"policy {path} is not UTF-8 text") from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Check a policy document; PolicyError naming `source` and the line when it is bad."""
    return _Parser(source).policy(text)


def parse_duration(text: str) -> float:
    """Seconds in "30s", "15m", "1h", "1d"; ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(text)
    seconds = float(match["amount"]) * _UNIT_SECONDS[match["unit"]]
    if seconds <= 0:
        raise ValueError(text)
    return seconds


def _format_number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self._constructor = yaml.SafeLoader("")

    # ---- errors and scalars ----------------------------------------------------------

    def fail(self, node: Node | int, message: str) -> PolicyError:
        line = node if isinstance(node, int) else node.start_mark.line + 1
        return PolicyError(f"{self.source} line {line}: {message}")

    def value(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            return node
        return self._constructor.construct_object(node, deep=True)

    def mapping(self, node: Node, path: str, known: tuple[str, ...]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{path} must be a mapping of {', '.join(known)}")
        found: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str) or key not in known:
                raise self.fail(key_node, f"unknown key {where!r}; known keys: {', '.join(known)}")
            if key in found:
                raise self.fail(
                    key_node, f"{where} is given twice (first on line {key_lines[key]})"
                )
            found[key] = value_node
            key_lines[key] = key_node.start_mark.line + 1
        return found

    def require(self, found: dict[str, Node], key: str, parent: Node, path: str) -> Node:
        if key not in found:
            where = f"{path}.{key}" if path else key
            raise self.fail(parent, f"{where} is required")
        return found[key]

    def number(self, node: Node, path: str) -> float:
        value = self.value(node)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.fail(node, f"{path} must be a number, not {_show(value)}")
        return float(value)

    def fraction(self, node: Node, path: str, *, open_low: bool, open_high: bool) -> float:
        value = self.number(node, path)
        low_ok = value > 0 if open_low else value >= 0
        high_ok = value < 1 if open_high else value <= 1
        if not (low_ok and high_ok):
            interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
            raise self.fail(node, f"{path} must be in {interval}, not {_format_number(value)}")
        return value

    def positive_int(self, node: Node, path: str) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(node, f"{path} must be a whole number >= 1, not {_show(value)}")
        return value

    def choice(self, node: Node, path: str, allowed: tuple[str, ...], what: str) -> str:
        value = self.value(node)
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(
                node, f"{path}: unknown {what} {_show(value)}; use one of {', '.join(allowed)}"
            )
        return value

    def condition(self, node: Node, path: str) -> Condition:
        value = self.value(node)
        if not isinstance(value, str):
            raise self.fail(node, f"{path} {_show(value)}: a condition is {CONDITION_FORM}")
        line = node.start_mark.line + 1
        match = _CONDITION.match(value)
        if match is None:
            raise self.fail(node, f'{path} "{value}": a condition is {CONDITION_FORM}')
        field, op, number = match["field"], match["op"], match["number"]
        if field not in ("ci.lower", "ci.upper"):
            raise self.fail(
                node,
                f'{path} "{value}": {field!r} is not an interval bound; '
                f"a condition is {CONDITION_FORM}",
            )
        if op not in _OPERATORS:
            raise self.fail(
                node, f'{path} "{value}": unknown operator {op!r}; a condition is {CONDITION_FORM}'
            )
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise self.fail(
                node, f'{path} "{value}": {number!r} is not a number; a condition is '
                f"{CONDITION_FORM}",
            )  # fmt: skip
        return Condition(field.removeprefix("ci."), op, threshold, value.strip(), line)

    # ---- sections ----------------------------------------------------------------------

    def policy(self, text: str) -> Policy:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = error.problem or error.context or "not YAML"
            raise self.fail(line, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as error:
            raise PolicyError(f"{self.source} line 1: not valid YAML: {error}") from None
        if root is None:
            raise self.fail(1, "the policy is empty; it starts with `policy: v1`")
        found = self.mapping(root, "", _TOP_LEVEL)
        if "policy" not in found:
            raise self.fail(root, "`policy: v1` is required (the policy format version)")
        version = self.value(found["policy"])
        if version != "v1":
            raise self.fail(found["policy"], f"policy: {_show(version)} is unknown; use v1")
        alpha = 0.05
        if "alpha" in found:
            alpha = self.fraction(found["alpha"], "alpha", open_low=True, open_high=True)
        return Policy(
            version="v1",
            alpha=alpha,
            inference=self.inference(found.get("inference")),
            primary=self.primary(self.require(found, "primary", root, "")),
            guardrails=self.guardrails(found.get("guardrails")),
            label_quality=self.label_quality(found.get("label_quality")),
            evaluation=self.schedule(found.get("evaluation")),
            source=self.source,
        )

    def inference(self, node: Node | None) -> Inference:
        if node is None:
            return Inference()
        found = self.mapping(node, "inference", ("mode", "tuning_rows", "burn_in_rows"))
        default = Inference()
        return Inference(
            mode=self.choice(found["mode"], "inference.mode", INFERENCE_MODES, "mode")
            if "mode" in found
            else default.mode,
            tuning_rows=self.positive_int(found["tuning_rows"], "inference.tuning_rows")
            if "tuning_rows" in found
            else default.tuning_rows,
            burn_in_rows=self.positive_int(found["burn_in_rows"], "inference.burn_in_rows")
            if "burn_in_rows" in found
            else default.burn_in_rows,
        )

    def primary(self, node: Node) -> Primary:
        found = self.mapping(node, "primary", ("metric", "promote_when", "rollback_when"))
        metric = self.choice(
            self.require(found, "metric", node, "primary"), "primary.metric", PRIMARY_METRICS,
            "metric",
        )  # fmt: skip
        promote_when = self.condition(
            self.require(found, "promote_when", node, "primary"), "primary.promote_when"
        )
        rollback_when = (
            self.condition(found["rollback_when"], "primary.rollback_when")
            if "rollback_when" in found
            else None
        )
        return Primary(metric, promote_when, rollback_when)

    def guardrails(self, node: Node | None) -> tuple[Guardrail, ...]:
        if node is None:
            return ()
        if isinstance(node, ScalarNode) and self.value(node) is None:
            return ()
        if not isinstance(node, SequenceNode):
            raise self.fail(node, "guardrails must be a list of {metric, fail_when}")
        result = []
        for index, item in enumerate(node.value):
            path = f"guardrails[{index}]"
            found = self.mapping(item, path, ("metric", "fail_when"))
            metric = self.choice(
                self.require(found, "metric", item, path), f"{path}.metric", GUARDRAIL_METRICS,
                "guardrail metric",
            )  # fmt: skip
            fail_when = self.condition(
                self.require(found, "fail_when", item, path), f"{path}.fail_when"
            )
            result.append(Guardrail(metric, fail_when))
        return tuple(result)

    def label_quality(self, node: Node | None) -> LabelQuality:
        if node is None:
            return LabelQuality()
        found = self.mapping(
            node, "label_quality", ("min_coverage", "max_arm_coverage_gap", "srm_alpha")
        )

        def gate(key: str, open_low: bool, open_high: bool) -> float | None:
            if key not in found:
                return None
            return self.fraction(
                found[key], f"label_quality.{key}", open_low=open_low, open_high=open_high
            )

        return LabelQuality(
            min_coverage=gate("min_coverage", False, False),
            max_arm_coverage_gap=gate("max_arm_coverage_gap", False, False),
            srm_alpha=gate("srm_alpha", True, True),
        )

    def schedule(self, node: Node | None) -> Schedule:
        if node is None:
            return Schedule()
        found = self.mapping(node, "evaluation", ("interval", "consecutive_successes", "on_fail"))
        default = Schedule()
        interval, interval_s = default.interval, default.interval_s
        if "interval" in found:
            raw = self.value(found["interval"])
            try:
                interval_s = parse_duration(raw) if isinstance(raw, str) else math.nan
            except ValueError:
                interval_s = math.nan
            if math.isnan(interval_s):
                raise self.fail(
                    found["interval"],
                    f"evaluation.interval {_show(raw)} is not a duration; "
                    'write a number and a unit: "30s", "15m", "1h", "1d"',
                )
            interval = raw.strip()
        return Schedule(
            interval_s=interval_s,
            interval=interval,
            consecutive_successes=self.positive_int(
                found["consecutive_successes"], "evaluation.consecutive_successes"
            )
            if "consecutive_successes" in found
            else default.consecutive_successes,
            on_fail=self.choice(found["on_fail"], "evaluation.on_fail", ON_FAIL, "on_fail")
            if "on_fail" in found
            else default.on_fail,
        )


_TOP_LEVEL = (
    "policy", "alpha", "inference", "primary", "guardrails", "label_quality", "evaluation",
)  # fmt: skip


def _show(value: object) -> str:
    if isinstance(value, Node):
        return "a " + ("list" if isinstance(value, SequenceNode) else "mapping")
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if value is not None else "nothing"
