"""Promotion policies: parsing (every refusal names its line), evaluation on report
objects, and the autopilot controller on an in-memory registry."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from typer.testing import CliRunner

from contender.cli.autopilot import autopilot
from contender.errors import ConfigError
from contender.policy import Outcome, PolicyError, evaluate, load_policy, parse_policy
from contender.policy.autopilot import AUTOPILOT_TAG, TAG_LIMIT, Autopilot, tag_document
from contender.policy.evaluate import REPORT_FIELDS, report_options_for
from contender.policy.parse import Condition
from contender.registry.routing_tag import parse_tag, tag_value
from contender.routing.table import Routing
from tests.fakes import FakeClock

SPEC_POLICY = """\
policy: v1
alpha: 0.05
inference: {mode: sequential, tuning_rows: 5000, burn_in_rows: 200}
primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}
guardrails:
  - {metric: p99_latency_ratio, fail_when: "ci.lower > 1.5"}
  - {metric: error_rate_diff, fail_when: "ci.lower > 0"}
label_quality: {min_coverage: 0.5, max_arm_coverage_gap: 0.1, srm_alpha: 0.001}
evaluation: {interval: 1h, consecutive_successes: 2, on_fail: rollback}
"""


def report(
    auc: tuple[float | None, float | None] = (0.02, 0.05),
    latency: tuple[float | None, float | None] | None = (0.9, 1.1),
    error_rate: tuple[float | None, float | None] | None = (-0.01, 0.0),
    labeled_share: float | None = 0.8,
    by_arm: tuple[float, float] | None = (0.8, 0.78),
    srm_p: float | None = 0.4,
    n_labeled: int = 1000,
    challenger: str = "2",
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "n_labeled": n_labeled,
        "verdict": "inconclusive",
        "challenger": {"version": challenger},
        "difference": {"auc": {"estimate": 0.0, "ci": list(auc), "p_value": 0.5}},
        "label_quality": {},
    }
    if latency is not None:
        document["latency_ratio"] = {"ratio": 1.0, "ci": list(latency), "status": "ok"}
    if error_rate is not None:
        document["difference"]["error_rate"] = {"estimate": 0.0, "ci": list(error_rate)}
    if labeled_share is not None:
        document["label_quality"]["labeled_share"] = labeled_share
    if by_arm is not None:
        document["label_quality"]["labeled_share_by_arm"] = {
            "champion": by_arm[0],
            "challenger": by_arm[1],
        }
    if srm_p is not None:
        document["label_quality"]["srm_p"] = srm_p
    return document


# ---- parsing ---------------------------------------------------------------------------


def test_the_spec_policy_parses() -> None:
    policy = parse_policy(SPEC_POLICY, "policy.yaml")
    assert policy.alpha == 0.05
    assert policy.inference.mode == "sequential"
    assert policy.inference.burn_in_rows == 200
    assert policy.primary.metric == "auc"
    assert str(policy.primary.promote_when) == "ci.lower > 0"
    assert policy.primary.rollback_when is not None
    assert str(policy.primary.rollback_when) == "ci.upper < 0"
    assert [g.metric for g in policy.guardrails] == ["p99_latency_ratio", "error_rate_diff"]
    assert policy.guardrails[0].fail_when.threshold == 1.5
    assert policy.guardrails[0].fail_when.line == 6
    assert policy.label_quality.srm_alpha == 0.001
    assert policy.evaluation.interval_s == 3600
    assert policy.evaluation.consecutive_successes == 2
    assert policy.evaluation.on_fail == "rollback"


def test_a_minimal_policy_takes_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('policy: v1\nprimary: {metric: log_loss, promote_when: "ci.upper < 0"}\n')
    policy = load_policy(path)
    assert policy.source == str(path)
    assert policy.guardrails == ()
    assert policy.label_quality.min_coverage is None
    assert policy.evaluation.on_fail == "hold"
    assert policy.evaluation.consecutive_successes == 1
    assert policy.inference.burn_in_rows == 200


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1d", 86400), ("1.5h", 5400)],
)
def test_intervals(text: str, seconds: float) -> None:
    policy = parse_policy(SPEC_POLICY.replace("interval: 1h", f"interval: {text}"))
    assert policy.evaluation.interval_s == seconds


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


REFUSED = [
    # (name, policy text, line expected, words the message must hold)
    ("bad yaml", SPEC_POLICY.replace("alpha: 0.05", "alpha: 0.05: 1"), 2, "not valid YAML"),
    ("tab in yaml", SPEC_POLICY.replace("  - {metric: error", "\t- {metric: error"), 7,
     "not valid YAML"),
    ("bad yaml indentation", SPEC_POLICY + "  oops: [1\n", 10, "not valid YAML"),
    ("empty", "", 1, "empty"),
    ("unknown top-level key", SPEC_POLICY + "schedule: 1h\n", 10, "unknown key 'schedule'"),
    ("unknown nested key",
     SPEC_POLICY.replace("srm_alpha: 0.001", "srm_alpha: 0.001, max_gap: 1"), 8,
     "unknown key 'label_quality.max_gap'"),
    ("duplicate key", SPEC_POLICY + "alpha: 0.1\n", 10, "given twice (first on line 2)"),
    ("missing policy: v1", SPEC_POLICY.replace("policy: v1\n", ""), 1, "`policy: v1` is required"),
    ("wrong version", SPEC_POLICY.replace("policy: v1", "policy: v2"), 1, '"v2" is unknown'),
    ("unknown primary metric", SPEC_POLICY.replace("metric: auc", "metric: f1"), 4,
     'unknown metric "f1"'),
    ("unknown guardrail metric",
     SPEC_POLICY.replace("metric: error_rate_diff", "metric: error_rate"), 7,
     'unknown guardrail metric "error_rate"'),
    ("condition not on a ci bound",
     SPEC_POLICY.replace('promote_when: "ci.lower > 0"', 'promote_when: "estimate > 0"'), 4,
     "'estimate' is not an interval bound"),
    ("misspelt bound",
     SPEC_POLICY.replace('fail_when: "ci.lower > 1.5"', 'fail_when: "ci.lowr > 1.5"'), 6,
     'guardrails[0].fail_when "ci.lowr > 1.5": \'ci.lowr\' is not an interval bound'),
    ("bad operator",
     SPEC_POLICY.replace('rollback_when: "ci.upper < 0"', 'rollback_when: "ci.upper == 0"'), 4,
     "unknown operator '=='"),
    ("not a number", SPEC_POLICY.replace('"ci.lower > 0"}', '"ci.lower > zero"}'), 7,
     "'zero' is not a number"),
    ("condition not a string",
     SPEC_POLICY.replace('fail_when: "ci.lower > 1.5"', "fail_when: 1.5"), 6,
     "a condition is"),
    ("no condition at all",
     SPEC_POLICY.replace('promote_when: "ci.lower > 0"', 'promote_when: "ci.lower"'), 4,
     "a condition is"),
    ("bad interval", SPEC_POLICY.replace("interval: 1h", "interval: hourly"), 9,
     '"hourly" is not a duration'),
    ("interval without unit", SPEC_POLICY.replace("interval: 1h", "interval: 60"), 9,
     "is not a duration"),
    ("on_fail invalid", SPEC_POLICY.replace("on_fail: rollback", "on_fail: panic"), 9,
     'unknown on_fail "panic"'),
    ("consecutive_successes 0",
     SPEC_POLICY.replace("consecutive_successes: 2", "consecutive_successes: 0"), 9,
     "whole number >= 1"),
    ("alpha out of range", SPEC_POLICY.replace("alpha: 0.05", "alpha: 1.5"), 2,
     "alpha must be in (0, 1)"),
    ("alpha not a number", SPEC_POLICY.replace("alpha: 0.05", "alpha: low"), 2,
     'alpha must be a number, not "low"'),
    ("mode invalid", SPEC_POLICY.replace("mode: sequential", "mode: bayes"), 3,
     'unknown mode "bayes"'),
    ("tuning_rows not positive", SPEC_POLICY.replace("tuning_rows: 5000", "tuning_rows: -1"), 3,
     "inference.tuning_rows must be a whole number >= 1"),
    ("burn_in_rows not int", SPEC_POLICY.replace("burn_in_rows: 200", "burn_in_rows: 2.5"), 3,
     "inference.burn_in_rows must be a whole number"),
    ("min_coverage out of range",
     SPEC_POLICY.replace("min_coverage: 0.5", "min_coverage: 50"), 8,
     "label_quality.min_coverage must be in [0, 1]"),
    ("srm_alpha zero", SPEC_POLICY.replace("srm_alpha: 0.001", "srm_alpha: 0"), 8,
     "label_quality.srm_alpha must be in (0, 1)"),
    ("guardrails not a list",
     SPEC_POLICY.replace(
         "guardrails:\n  - {metric: p99_latency_ratio, fail_when: \"ci.lower > 1.5\"}\n"
         "  - {metric: error_rate_diff, fail_when: \"ci.lower > 0\"}\n",
         "guardrails: {metric: p99_latency_ratio}\n",
     ), 5, "guardrails must be a list"),
    ("primary missing",
     SPEC_POLICY.replace(
         'primary: {metric: auc, promote_when: "ci.lower > 0", rollback_when: "ci.upper < 0"}\n',
         "",
     ), 1, "primary is required"),
    ("promote_when missing",
     SPEC_POLICY.replace('promote_when: "ci.lower > 0", ', ""), 4,
     "primary.promote_when is required"),
    ("top level not a mapping", "- policy: v1\n", 1, "must be a mapping"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "words"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_malformed_policies_are_refused_with_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.yaml")
    message = str(raised.value)
    assert message.startswith(f"policy.yaml line {line}: "), message
    assert words in message, message
    assert "\n" not in message
    assert isinstance(raised.value, ConfigError)


def test_an_unreadable_policy_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")


# ---- conditions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "ci", "holds"),
    [
        ("ci.lower > 0", (0.01, 0.2), True),
        ("ci.lower > 0", (0.0, 0.2), False),
        ("ci.lower >= 0", (0.0, 0.2), True),
        ("ci.lower >= 0", (-0.001, 0.2), False),
        ("ci.upper < 0", (-0.2, -0.01), True),
        ("ci.upper < 0", (-0.2, 0.0), False),
        ("ci.upper <= 0", (-0.2, 0.0), True),
        ("ci.upper <= 0", (-0.2, 0.001), False),
        ("ci.lower > 1.5", (1.6, 2.0), True),
        ("ci.lower>-1e-3", (0.0, 1.0), True),
        ("ci.upper < 0", (None, None), None),
        ("ci.lower > 0", (None, 0.3), None),
        ("ci.upper < 0", (None, -0.3), True),
        ("ci.lower > 0", None, None),
    ],
)
def test_condition_operators(
    condition: str, ci: tuple[float | None, float | None] | None, holds: bool | None
) -> None:
    text = f'policy: v1\nprimary: {{metric: auc, promote_when: "{condition}"}}\n'
    parsed: Condition = parse_policy(text).primary.promote_when
    assert parsed.holds(ci) is holds


def test_report_fields_are_one_table() -> None:
    assert REPORT_FIELDS["p99_latency_ratio"] == ("latency_ratio", "ci")
    assert REPORT_FIELDS["error_rate_diff"] == ("difference", "error_rate", "ci")
    assert REPORT_FIELDS["log_loss"] == ("difference", "log_loss", "ci")


# ---- evaluation ------------------------------------------------------------------------


WORSE = (-0.06, -0.02)
UNSURE = (-0.01, 0.03)
ROLLBACK_POLICY = parse_policy(SPEC_POLICY)
HOLD_POLICY = parse_policy(SPEC_POLICY.replace("on_fail: rollback", "on_fail: hold"))

EVALUATIONS = [
    # (name, report, outcome with on_fail rollback, with on_fail hold, words in reason)
    ("clearly better", report(), "promote", "promote", "every condition passes"),
    ("clearly worse", report(auc=WORSE), "rollback", "hold", "ci.upper < 0 holds"),
    ("undecided", report(auc=UNSURE), "hold", "hold", "ci.lower > 0 does not hold"),
    ("latency fails", report(latency=(1.6, 2.0)), "rollback", "hold", "p99_latency_ratio"),
    ("latency at limit", report(latency=(1.5, 2.0)), "promote", "promote", "passes"),
    ("errors fail", report(error_rate=(0.01, 0.03)), "rollback", "hold", "error_rate_diff"),
    ("latency missing", report(latency=None), "hold", "hold", "latency_ratio fail_when is unknown"),
    ("latency null bound", report(latency=(None, None)), "hold", "hold", "is unknown"),
    ("worse, latency missing", report(auc=WORSE, latency=None), "rollback", "hold", "rollback"),
    ("low coverage", report(labeled_share=0.4), "hold", "hold", "min_coverage fails"),
    ("coverage at limit", report(labeled_share=0.5), "promote", "promote", "passes"),
    ("coverage missing", report(labeled_share=None), "hold", "hold", "min_coverage is unknown"),
    ("arm gap", report(by_arm=(0.8, 0.6)), "hold", "hold", "max_arm_coverage_gap fails"),
    ("arm gap at limit", report(by_arm=(0.8, 0.7)), "promote", "promote", "passes"),
    ("arm gap missing", report(by_arm=None), "hold", "hold", "max_arm_coverage_gap is unknown"),
    ("srm", report(srm_p=0.0001), "hold", "hold", "srm_alpha fails"),
    ("srm at limit", report(srm_p=0.001), "promote", "promote", "passes"),
    ("srm missing", report(srm_p=None), "hold", "hold", "srm_alpha is unknown"),
    ("before burn-in", report(n_labeled=199), "hold", "hold", "burn-in not reached"),
    ("worse before burn-in", report(auc=WORSE, n_labeled=10), "hold", "hold", "burn-in"),
    ("at burn-in", report(n_labeled=200), "promote", "promote", "passes"),
    ("auc missing", {"n_labeled": 1000}, "hold", "hold", "missing (difference.auc.ci)"),
    ("empty report", {}, "hold", "hold", "missing (n_labeled)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "on_rollback", "on_hold", "words"),
    [case[1:] for case in EVALUATIONS],
    ids=[case[0] for case in EVALUATIONS],
)
def test_outcomes(document: dict[str, Any], on_rollback: str, on_hold: str, words: str) -> None:
    with_rollback = evaluate(ROLLBACK_POLICY, document)
    with_hold = evaluate(HOLD_POLICY, document)
    assert with_rollback.outcome == on_rollback, with_rollback.reason
    assert with_hold.outcome == on_hold, with_hold.reason
    assert words in with_rollback.reason, with_rollback.reason
    assert with_hold.failed == with_rollback.failed == (on_rollback == "rollback")
    if with_hold.failed:
        assert with_hold.reason.startswith("hold (on_fail: hold): ")
    # Every check is named in the reason with its value.
    for check in with_rollback.checks:
        assert check.name in with_rollback.reason


def test_the_reason_lists_every_condition_and_its_value() -> None:
    result = evaluate(ROLLBACK_POLICY, report())
    assert "primary auc promote_when ci.lower > 0 on [0.02, 0.05]: holds" in result.reason
    assert "guardrails[0] p99_latency_ratio fail_when ci.lower > 1.5 on [0.9, 1.1]" in result.reason
    assert "label_quality srm_alpha srm_p >= 0.001 on 0.4: holds" in result.reason
    assert len(result.checks) == 1 + 2 + 2 + 3
    assert result.as_dict()["outcome"] == "promote"


def test_loss_metrics_are_not_flipped() -> None:
    policy = parse_policy(
        'policy: v1\nprimary: {metric: log_loss, promote_when: "ci.upper < 0",'
        ' rollback_when: "ci.lower > 0"}\nevaluation: {on_fail: rollback}\n'
    )
    better = {"n_labeled": 500, "difference": {"log_loss": {"ci": [-0.05, -0.01]}}}
    worse = {"n_labeled": 500, "difference": {"log_loss": {"ci": [0.01, 0.05]}}}
    assert evaluate(policy, better).outcome is Outcome.PROMOTE
    assert evaluate(policy, worse).outcome is Outcome.ROLLBACK


def test_report_options_follow_the_policy() -> None:
    options = report_options_for(ROLLBACK_POLICY)
    assert options.metric == "auc"
    assert options.min_labeled == 200
    brier = parse_policy('policy: v1\nprimary: {metric: brier, promote_when: "ci.upper < 0"}\n')
    assert report_options_for(brier).metric == "brier"
    assert report_options_for(brier).inference == "sequential"


# ---- the controller --------------------------------------------------------------------


class MemoryRegistry:
    """An `AutopilotRegistry` in memory: Production/Staging versions and model tags."""

    def __init__(self, champion: str = "1", challenger: str | None = "2") -> None:
        self.champion = champion
        self.challenger = challenger
        self.tags: dict[str, str] = {}
        self.writes = 0

    def challenger_version(self, model: str) -> str | None:
        return self.challenger

    def promote(self, model: str) -> tuple[str, ...]:
        assert self.challenger is not None
        self.writes += 1
        steps = (f"version {self.challenger}: Staging -> Production",)
        self.champion, self.challenger = self.challenger, None
        return steps

    def routing_tag(self, model: str) -> str | None:
        return self.tags.get("contender.routing")

    def write_routing_tag(self, model: str, value: str) -> None:
        self.writes += 1
        self.tags["contender.routing"] = value

    def autopilot_tag(self, model: str) -> str | None:
        return self.tags.get(AUTOPILOT_TAG)

    def write_autopilot_tag(self, model: str, value: str) -> None:
        assert len(value) <= TAG_LIMIT
        self.writes += 1
        self.tags[AUTOPILOT_TAG] = value

    def state(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.tags[AUTOPILOT_TAG])
        return document


def pilot(
    registry: MemoryRegistry,
    reports: list[dict[str, Any]],
    policy_text: str = SPEC_POLICY,
    dry_run: bool = False,
) -> Autopilot:
    queue = list(reports)

    def next_report() -> dict[str, Any]:
        return copy.deepcopy(queue.pop(0) if len(queue) > 1 else queue[0])

    return Autopilot(
        "m", parse_policy(policy_text), registry, next_report, FakeClock(), dry_run=dry_run
    )


def test_promotes_only_after_consecutive_successes() -> None:
    registry = MemoryRegistry()
    controller = pilot(registry, [report()])
    first = controller.step()
    assert first.action is Outcome.HOLD
    assert first.streak == 1
    assert "promote 1 of 2 consecutive" in first.reason
    assert registry.champion == "1"
    assert registry.state()["streak"] == 1
    second = controller.step()
    assert second.action is Outcome.PROMOTE
    assert registry.champion == "2"
    assert second.changes == ("version 2: Staging -> Production",)
    state = registry.state()
    assert state["decision"] == "promote"
    assert state["streak"] == 2
    assert "every condition passes" in state["reason"]
    assert [h["decision"] for h in state["history"]] == ["hold", "promote"]


def test_the_streak_persists_across_runs_and_resets_on_a_miss() -> None:
    registry = MemoryRegistry()
    pilot(registry, [report()]).step()  # one run: streak 1
    undecided = pilot(registry, [report(auc=UNSURE)]).step()  # another run
    assert undecided.action is Outcome.HOLD
    assert undecided.streak == 0
    pilot(registry, [report()]).step()
    assert registry.state()["streak"] == 1
    decision = pilot(registry, [report()]).step()  # a fresh controller reads the tag
    assert decision.action is Outcome.PROMOTE
    assert registry.champion == "2"


def test_a_new_challenger_starts_a_new_streak() -> None:
    registry = MemoryRegistry()
    pilot(registry, [report()]).step()
    registry.challenger = "3"
    decision = pilot(registry, [report(challenger="3")]).step()
    assert decision.streak == 1
    assert decision.action is Outcome.HOLD


def test_rollback_writes_weight_zero_and_testing_false_once() -> None:
    registry = MemoryRegistry()
    registry.tags["contender.routing"] = tag_value(Routing(0.2, True, 4))
    controller = pilot(registry, [report(auc=WORSE)])
    decision = controller.step()
    assert decision.action is Outcome.ROLLBACK
    routing = parse_tag(registry.tags["contender.routing"])
    assert routing == Routing(0.0, False, 5)
    assert registry.champion == "1"
    assert registry.challenger == "2"
    again = controller.step()  # already rolled back: no new revision
    assert again.action is Outcome.ROLLBACK
    assert again.changes == ()
    assert parse_tag(registry.tags["contender.routing"]).revision == 5
    assert registry.state()["decision"] == "rollback"


def test_rollback_without_a_routing_tag_writes_the_first_revision() -> None:
    registry = MemoryRegistry()
    pilot(registry, [report(latency=(1.8, 2.5))]).step()
    assert parse_tag(registry.tags["contender.routing"]) == Routing(0.0, False, 1)


def test_on_fail_hold_changes_only_the_autopilot_tag() -> None:
    registry = MemoryRegistry()
    policy = SPEC_POLICY.replace("on_fail: rollback", "on_fail: hold")
    decision = pilot(registry, [report(auc=WORSE)], policy).step()
    assert decision.action is Outcome.HOLD
    assert decision.reason.startswith("hold (on_fail: hold): ")
    assert set(registry.tags) == {AUTOPILOT_TAG}


@pytest.mark.parametrize(
    "document", [report(), report(auc=(-0.06, -0.02)), report(auc=(-0.01, 0.03))]
)
def test_dry_run_changes_nothing(document: dict[str, Any]) -> None:
    registry = MemoryRegistry()
    registry.tags["contender.routing"] = tag_value(Routing(0.2, True, 4))
    before = dict(registry.tags)
    controller = pilot(registry, [document], dry_run=True)
    for _ in range(3):
        decision = controller.step()
        assert decision.dry_run
    assert registry.tags == before
    assert registry.writes == 0
    assert (registry.champion, registry.challenger) == ("1", "2")


def test_dry_run_says_what_it_would_do() -> None:
    registry = MemoryRegistry()
    once = "consecutive_successes: 1"
    text = SPEC_POLICY.replace("consecutive_successes: 2", once)
    assert pilot(registry, [report()], text, dry_run=True).step().changes == (
        "would promote version 2",
    )
    worse = pilot(registry, [report(auc=WORSE)], text, dry_run=True).step()
    assert worse.changes == ("would set routing challenger_weight 0, testing false",)


def test_holds_without_a_challenger_or_a_report_or_on_another_version() -> None:
    registry = MemoryRegistry(challenger=None)
    assert "no challenger" in pilot(registry, [report()]).step().reason

    def broken() -> dict[str, Any]:
        raise ConfigError("no record of model 'm' in the log")

    registry = MemoryRegistry()
    controller = Autopilot("m", parse_policy(SPEC_POLICY), registry, broken, FakeClock())
    decision = controller.step()
    assert decision.action is Outcome.HOLD
    assert "cannot build the report: no record" in decision.reason
    stale = pilot(registry, [report(challenger="1")]).step()
    assert stale.action is Outcome.HOLD
    assert "judged challenger version 1" in stale.reason


def test_decisions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="contender.autopilot")
    pilot(MemoryRegistry(), [report(auc=WORSE)]).step()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "contender.autopilot"]
    assert line.startswith("autopilot m: rollback (challenger 2, streak 0): rollback: ")


def test_the_tag_stays_under_the_limit_and_keeps_ten_decisions() -> None:
    registry = MemoryRegistry()
    controller = pilot(registry, [report(auc=UNSURE)])
    for _ in range(25):
        controller.step()
    assert len(registry.state()["history"]) == 10
    decision = controller.step()
    huge = tag_document(
        type(decision)(**{**decision.__dict__, "reason": "x" * 20000}), [{"a": "y" * 400}] * 10
    )
    assert len(huge) <= TAG_LIMIT


def test_run_steps_on_the_interval_until_stopped() -> None:
    registry = MemoryRegistry()
    controller = pilot(registry, [report(auc=UNSURE)])
    stop = threading.Event()
    seen: list[Outcome] = []
    waits: list[float] = []

    def on_decision(decision: Any) -> None:
        seen.append(decision.action)
        if len(seen) == 3:
            stop.set()

    original_wait = stop.wait

    def fake_wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return original_wait(0)

    stop.wait = fake_wait  # type: ignore[method-assign]
    controller.run(stop, on_decision=on_decision)
    assert seen == [Outcome.HOLD] * 3
    assert waits == [3600.0] * 3


# ---- the command -----------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("autopilot")(autopilot)
    app.command("other")(lambda: None)  # two commands: `autopilot` stays a subcommand
    return app


def test_the_command_refuses_a_bad_policy_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(SPEC_POLICY.replace("on_fail: rollback", "on_fail: panic"))
    result = CliRunner().invoke(
        _app(), ["autopilot", "--model", "m", "--policy", str(path), "--once"]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path} line 9: evaluation.on_fail")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_run_can_start_with_a_wait() -> None:
    registry = MemoryRegistry()
    stop = threading.Event()
    stop.set()
    pilot(registry, [report()]).run(stop, wait_first=True)
    assert registry.writes == 0
