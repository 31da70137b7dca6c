"""`contender autopilot`: one small controller per model that applies a policy (SPEC 7).

Each `Autopilot.step()` builds the report (`report_fn`), checks that it judged the
registry's current challenger, evaluates the policy and acts:
- `promote` once the policy said promote on `evaluation.consecutive_successes`
  consecutive evaluations of the same challenger version: through
  `MlflowRegistryEditor.promote`, the code of `contender promote`;
- `rollback`: the routing tag `contender.routing` one revision on with
  `challenger_weight: 0, testing: false` (not written again when it already says so);
  the champion is left as it is;
- `hold`: nothing.

Every decision is logged at INFO (one line with its reason) and stored in the registered
model's tag `contender.autopilot` (JSON: `decision`, `outcome`, `reason`, `streak`,
`challenger`, `evaluated_at`, and `history`, the last `HISTORY` decisions without their
reasons), kept under MLflow's 5000-character limit for tag values. The streak lives in
that tag, so it carries over from one run (or `--once` invocation) to the next.

`dry_run`: evaluate and report the decision, change nothing in the registry, not the
routing, the slots or the `contender.autopilot` tag either; the streak is read but not
advanced, so a dry run says "promote k of n" where a real run would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

from contender.clock import Clock, SystemClock
from contender.errors import ConfigError, ContenderError
from contender.policy.evaluate import Evaluation, Outcome, evaluate, lookup
from contender.policy.parse import Policy
from contender.registry.routing_tag import InvalidRouting, next_routing, parse_tag, tag_value
from contender.routing.table import Routing
from contender.settings import Selector

logger = logging.getLogger("contender.autopilot")

AUTOPILOT_TAG = "contender.autopilot"
HISTORY = 10
TAG_LIMIT = 5000
"""MLflow's limit on a registered model tag's value, in characters."""
_REASON_LIMIT = 2500


class AutopilotRegistry(Protocol):
    """What the controller needs of the registry (`MlflowAutopilotRegistry`, or a fake)."""

    def challenger_version(self, model: str) -> str | None:
        """The challenger's version; None without one; ConfigError without the model."""
        ...

    def promote(self, model: str) -> tuple[str, ...]:
        """Promote the challenger as `contender promote` does; the steps it took."""
        ...

    def routing_tag(self, model: str) -> str | None: ...

    def write_routing_tag(self, model: str, value: str) -> None: ...

    def autopilot_tag(self, model: str) -> str | None: ...

    def write_autopilot_tag(self, model: str, value: str) -> None: ...


@dataclass(frozen=True)
class Decision:
    model: str
    action: Outcome
    """What the controller did (or, dry-run, would do)."""
    reason: str
    streak: int
    """Consecutive `promote` evaluations of this challenger, after this one."""
    evaluated_at: datetime
    challenger: str | None
    dry_run: bool = False
    evaluation: Evaluation | None = None
    """None when the policy was not evaluated (no challenger, no report)."""
    changes: tuple[str, ...] = ()
    """Registry changes made (dry-run: the ones that would be made)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "decision": self.action.value,
            "outcome": self.evaluation.outcome.value if self.evaluation else None,
            "reason": self.reason,
            "streak": self.streak,
            "challenger": self.challenger,
            "evaluated_at": self.evaluated_at.isoformat(),
            "dry_run": self.dry_run,
            "changes": list(self.changes),
        }


@dataclass
class _State:
    streak: int = 0
    challenger: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _read_state(text: str | None) -> _State:
    if not text:
        return _State()
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        logger.warning("tag %s is not JSON; starting a new streak", AUTOPILOT_TAG)
        return _State()
    if not isinstance(document, dict):
        return _State()
    streak = document.get("streak")
    challenger = document.get("challenger")
    history = document.get("history")
    return _State(
        streak=streak if isinstance(streak, int) and not isinstance(streak, bool) else 0,
        challenger=challenger if isinstance(challenger, str) else None,
        history=[h for h in history if isinstance(h, dict)] if isinstance(history, list) else [],
    )


def tag_document(decision: Decision, history: list[dict[str, Any]]) -> str:
    """The `contender.autopilot` value for `decision`: at most TAG_LIMIT characters."""
    entry = {
        "at": decision.evaluated_at.isoformat(),
        "decision": decision.action.value,
        "challenger": decision.challenger,
        "streak": decision.streak,
    }
    recent = [*history, entry][-HISTORY:]
    reason = decision.reason
    if len(reason) > _REASON_LIMIT:
        reason = reason[: _REASON_LIMIT - 3] + "..."
    document: dict[str, Any] = {
        "decision": decision.action.value,
        "outcome": decision.evaluation.outcome.value if decision.evaluation else None,
        "reason": reason,
        "streak": decision.streak,
        "challenger": decision.challenger,
        "evaluated_at": decision.evaluated_at.isoformat(),
        "changes": list(decision.changes),
        "history": recent,
    }
    text = orjson.dumps(document).decode()
    while len(text) > TAG_LIMIT and document["history"]:
        document["history"] = document["history"][1:]
        text = orjson.dumps(document).decode()
    if len(text) > TAG_LIMIT:
        document["reason"] = reason[:500] + "..."
        document["changes"] = list(decision.changes)[:5]
        text = orjson.dumps(document).decode()
    return text


_ROLLED_BACK = Routing(0.0, False)


class Autopilot:
    """The controller of one model; `step()` is one evaluation, `run()` the schedule."""

    def __init__(
        self,
        model: str,
        policy: Policy,
        registry: AutopilotRegistry,
        report_fn: Callable[[], Mapping[str, Any]],
        clock: Clock | None = None,
        dry_run: bool = False,
    ) -> None:
        self.model = model
        self.policy = policy
        self.registry = registry
        self.report_fn = report_fn
        self.clock = clock or SystemClock()
        self.dry_run = dry_run

    def step(self) -> Decision:
        """Evaluate once and act. Registry errors raise (ConfigError); a report that cannot
        be built is a `hold` with that reason."""
        now = self.clock.now()
        state = _read_state(self.registry.autopilot_tag(self.model))
        challenger = self.registry.challenger_version(self.model)
        if challenger is None:
            return self._finish(state, Outcome.HOLD, "hold: the model has no challenger", 0,
                                now, None)  # fmt: skip
        try:
            report = self.report_fn()
        except ContenderError as error:
            return self._finish(
                state, Outcome.HOLD, f"hold: cannot build the report: {error}", 0, now, challenger
            )
        judged = lookup(report, ("challenger", "version"))
        if judged is not None and str(judged) != challenger:
            reason = (
                f"hold: the report judged challenger version {judged}, but the registry's "
                f"challenger is version {challenger}: it needs traffic and ground truth first"
            )
            return self._finish(state, Outcome.HOLD, reason, 0, now, challenger)
        evaluation = evaluate(self.policy, report)
        previous = state.streak if state.challenger == challenger else 0
        if evaluation.outcome is Outcome.PROMOTE:
            streak = previous + 1
            needed = self.policy.evaluation.consecutive_successes
            if streak < needed:
                reason = (
                    f"hold: promote {streak} of {needed} consecutive evaluations; "
                    f"{evaluation.reason}"
                )
                return self._finish(state, Outcome.HOLD, reason, streak, now, challenger,
                                    evaluation)  # fmt: skip
            return self._finish(state, Outcome.PROMOTE, evaluation.reason, streak, now,
                                challenger, evaluation)  # fmt: skip
        return self._finish(state, evaluation.outcome, evaluation.reason, 0, now, challenger,
                            evaluation)  # fmt: skip

    def _finish(
        self,
        state: _State,
        action: Outcome,
        reason: str,
        streak: int,
        now: datetime,
        challenger: str | None,
        evaluation: Evaluation | None = None,
    ) -> Decision:
        changes: tuple[str, ...] = ()
        if action is Outcome.PROMOTE:
            if self.dry_run:
                changes = (f"would promote version {challenger}",)
            else:
                changes = self.registry.promote(self.model)
        elif action is Outcome.ROLLBACK:
            changes = self._roll_back()
        decision = Decision(
            self.model, action, reason, streak, now, challenger, self.dry_run, evaluation,
            changes,
        )  # fmt: skip
        if not self.dry_run:
            self.registry.write_autopilot_tag(self.model, tag_document(decision, state.history))
        logger.info(
            "autopilot %s%s: %s (challenger %s, streak %d): %s",
            self.model, " (dry run)" if self.dry_run else "", action.value, challenger, streak,
            reason,
        )  # fmt: skip
        return decision

    def _roll_back(self) -> tuple[str, ...]:
        text = self.registry.routing_tag(self.model)
        current: Routing | None = None
        if text is not None:
            with contextlib.suppress(InvalidRouting):
                current = parse_tag(text)
        if current is not None and current.challenger_weight == 0 and current.testing is False:
            return ()
        routing = next_routing(current or _ROLLED_BACK, 0.0, False)
        change = (
            f"routing revision {routing.revision}: challenger_weight 0, testing false"
            if not self.dry_run
            else "would set routing challenger_weight 0, testing false"
        )
        if not self.dry_run:
            self.registry.write_routing_tag(self.model, tag_value(routing))
        return (change,)

    def run(
        self,
        stop: threading.Event,
        on_decision: Callable[[Decision], None] = lambda decision: None,
        on_error: Callable[[ContenderError], None] = lambda error: None,
        wait_first: bool = False,
    ) -> None:
        """Step every `evaluation.interval` until `stop` is set (SIGINT/SIGTERM in the CLI).
        A step that fails (registry unreachable) is logged and retried at the next interval.
        `wait_first`: the caller has just stepped; start with a wait."""
        if wait_first:
            stop.wait(self.policy.evaluation.interval_s)
        while not stop.is_set():
            try:
                on_decision(self.step())
            except ContenderError as error:
                logger.error("autopilot %s: %s", self.model, error)
                on_error(error)
            stop.wait(self.policy.evaluation.interval_s)


class MlflowAutopilotRegistry:
    """`AutopilotRegistry` on an MLflow registry: slots by `selector`, tags on the model."""

    def __init__(self, tracking_uri: str | None, selector: Selector = Selector.STAGES) -> None:
        import mlflow

        from contender.registry.client import MlflowRegistryClient
        from contender.registry.promotion import MlflowRegistryEditor

        self._editor = MlflowRegistryEditor(tracking_uri)
        self._routing = MlflowRegistryClient(tracking_uri)
        self._client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._where = tracking_uri or mlflow.get_tracking_uri()
        self.selector = selector

    def challenger_version(self, model: str) -> str | None:
        challenger = self._editor.slots(model, self.selector).challenger
        return challenger.version if challenger is not None else None

    def promote(self, model: str) -> tuple[str, ...]:
        change = self._editor.promote(model, self.selector)
        return (*change.steps, *(f"note: {note}" for note in change.notes))

    def routing_tag(self, model: str) -> str | None:
        with self._one_line_errors(model):
            return self._routing.routing_tag(model, missing_ok=False)

    def write_routing_tag(self, model: str, value: str) -> None:
        with self._one_line_errors(model):
            self._routing.write_routing_tag(model, value)

    def autopilot_tag(self, model: str) -> str | None:
        with self._one_line_errors(model):
            tags: dict[str, str] = self._client.get_registered_model(model).tags or {}
        return tags.get(AUTOPILOT_TAG)

    def write_autopilot_tag(self, model: str, value: str) -> None:
        with self._one_line_errors(model):
            self._client.set_registered_model_tag(model, AUTOPILOT_TAG, value)

    @contextlib.contextmanager
    def _one_line_errors(self, model: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        from contender.registry.client import is_missing

        try:
            yield
        except MlflowException as error:
            if is_missing(error):
                raise ConfigError(f"no registered model {model!r} in {self._where}") from None
            raise ConfigError(f"registry at {self._where}: {_first(error)}") from None


def _first(error: Any) -> str:
    return (str(error.message).strip().splitlines() or ["(no message)"])[0]
