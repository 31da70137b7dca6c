"""Promotion policies (SPEC section 7): parse a policy file, evaluate it on a report, and
`contender autopilot`, the controller that applies it on its schedule."""

from contender.policy.evaluate import (
    REPORT_FIELDS,
    Check,
    Evaluation,
    Outcome,
    evaluate,
    report_for_policy,
    report_options_for,
)
from contender.policy.parse import Policy, PolicyError, load_policy, parse_policy

__all__ = [
    "REPORT_FIELDS",
    "Check",
    "Evaluation",
    "Outcome",
    "Policy",
    "PolicyError",
    "evaluate",
    "load_policy",
    "parse_policy",
    "report_for_policy",
    "report_options_for",
]
