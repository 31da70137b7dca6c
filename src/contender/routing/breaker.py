"""CircuitBreaker: stop invoking a challenger that keeps failing (SPEC section 1).

State machine, driven only by the outcomes it is told and the injected clock:

- **closed**: the challenger runs on every request. Over the last `window` challenger
  predictions (skipped work is not a prediction), once the window is full and the share
  that failed exceeds `error_rate`, the breaker opens.
- **open**: requests drawn for the challenger are answered by the champion at once;
  the challenger runs only as a probe (as shadow work, never as an answer), on at most
  one request per `probe_interval_s`, and is skipped (`"breaker_open"`) on the others.
  Once `cooldown_s` has passed since the probing began, the probes decide: a failure
  share at or under `error_rate` closes the breaker; over it, probing starts again.
- A new challenger version (`follow`) starts closed with an empty window.

Every transition is reported to `on_transition(old_state, new_state, error_rate)`.
It is used from the event loop only, so it takes no lock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from enum import Enum, StrEnum

from contender.clock import Clock
from contender.metrics import ServiceMetrics

_log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class Admission(Enum):
    RUN = "run"
    """Closed: the challenger runs as usual."""
    PROBE = "probe"
    """Open, and a probe is due: run it as shadow work."""
    SKIP = "skip"
    """Open: do not invoke the challenger."""


Transition = Callable[[BreakerState, BreakerState, float], None]


class CircuitBreaker:
    def __init__(
        self,
        *,
        window: int,
        error_rate: float,
        cooldown_s: float,
        clock: Clock,
        on_transition: Transition,
        probe_interval_s: float = 1.0,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self._window = window
        self._error_rate = error_rate
        self._cooldown_s = cooldown_s
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._on_transition = on_transition
        self._outcomes: deque[bool] = deque(maxlen=window)
        """True for a failed prediction: the window while closed, the probes while open."""
        self._state = BreakerState.CLOSED
        self._opened_at: datetime | None = None
        self._probing_since_s = 0.0
        self._last_probe_s: float | None = None
        self._followed: object | None = None
        self._transition_rate = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def error_rate(self) -> float:
        """The failed share of the window (closed) or of the probes (open); before any
        outcome in the current state, the share that caused the last transition."""
        if not self._outcomes:
            return self._transition_rate
        return sum(self._outcomes) / len(self._outcomes)

    def describe(self) -> dict[str, object]:
        opened_at = self._opened_at.isoformat() if self._opened_at is not None else None
        return {"state": self._state.value, "error_rate": self.error_rate, "opened_at": opened_at}

    def follow(self, challenger: object | None) -> None:
        """A different challenger than last time starts closed, with a clean window."""
        if challenger is self._followed:
            return
        self._followed = challenger
        self._outcomes.clear()
        self._transition_rate = 0.0
        if self._state is BreakerState.OPEN:
            self._move_to(BreakerState.CLOSED)

    def admit(self) -> Admission:
        if self._state is BreakerState.CLOSED:
            return Admission.RUN
        now_s = self._clock.monotonic()
        if self._last_probe_s is not None and now_s - self._last_probe_s < self._probe_interval_s:
            return Admission.SKIP
        self._last_probe_s = now_s
        return Admission.PROBE

    def record(self, failed: bool) -> None:
        """One challenger prediction's outcome (a run that was skipped is not one)."""
        self._outcomes.append(failed)
        if self._state is BreakerState.CLOSED:
            if len(self._outcomes) == self._window and self.error_rate > self._error_rate:
                self._open()
            return
        if self._clock.monotonic() - self._probing_since_s < self._cooldown_s:
            return
        if self.error_rate <= self._error_rate:
            self._move_to(BreakerState.CLOSED)
            self._outcomes.clear()
        else:
            self._start_probing()

    def _open(self) -> None:
        self._opened_at = self._clock.now()
        self._move_to(BreakerState.OPEN)
        self._start_probing()

    def _start_probing(self) -> None:
        self._outcomes.clear()
        self._probing_since_s = self._clock.monotonic()

    def _move_to(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        error_rate = self._transition_rate = self.error_rate
        if state is BreakerState.CLOSED:
            self._opened_at = None
            self._last_probe_s = None
        self._on_transition(old, state, error_rate)


def reported(metrics: ServiceMetrics) -> Transition:
    """A transition handler that logs each change and counts it in the metrics."""

    def on_transition(old: BreakerState, new: BreakerState, error_rate: float) -> None:
        metrics.breaker_open.set(1 if new is BreakerState.OPEN else 0)
        metrics.breaker_transitions.labels(new.value).inc()
        _log.warning("breaker from=%s to=%s error_rate=%.3f", old.value, new.value, error_rate)

    return on_transition
