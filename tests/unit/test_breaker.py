"""The challenger's circuit breaker, exactly, on an injected clock."""

from __future__ import annotations

from contender.routing.breaker import Admission, BreakerState, CircuitBreaker
from tests.fakes import FakeClock


class Transitions:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, old: BreakerState, new: BreakerState, error_rate: float) -> None:
        self.seen.append((old.value, new.value))


def state(b: CircuitBreaker) -> str:
    """The state as a plain string: every call reads it afresh."""
    return b.state.value


def breaker(clock: FakeClock, transitions: Transitions, window: int = 10) -> CircuitBreaker:
    return CircuitBreaker(
        window=window, error_rate=0.2, cooldown_s=30, clock=clock, on_transition=transitions
    )


def test_it_opens_once_the_window_is_full_and_over_the_rate() -> None:
    clock, transitions = FakeClock(), Transitions()
    b = breaker(clock, transitions)
    for _ in range(9):
        b.record(failed=True)
    assert state(b) == "closed"  # nine outcomes are not a window of ten
    b.record(failed=True)
    assert state(b) == "open"
    assert transitions.seen == [("closed", "open")]
    assert b.describe()["opened_at"] == clock.now().isoformat()
    assert b.describe()["error_rate"] == 1.0


def test_exactly_the_rate_does_not_open_it() -> None:
    b = breaker(FakeClock(), Transitions())
    for i in range(10):
        b.record(failed=i >= 8)  # 2 of 10 = 0.2: not over 0.2
    assert state(b) == "closed"
    b.record(failed=True)  # the window slides: 3 of the last 10
    assert state(b) == "open"


def test_a_half_failing_challenger_opens_within_one_window() -> None:
    b = breaker(FakeClock(), Transitions(), window=100)
    for i in range(100):
        b.record(failed=i % 2 == 0)
    assert state(b) == "open"


def test_while_open_it_admits_one_probe_a_second() -> None:
    clock = FakeClock()
    b = breaker(clock, Transitions())
    assert b.admit() is Admission.RUN
    for _ in range(10):
        b.record(failed=True)
    assert b.admit() is Admission.PROBE
    assert b.admit() is Admission.SKIP
    clock.advance(0.999)
    assert b.admit() is Admission.SKIP
    clock.advance(0.001)
    assert b.admit() is Admission.PROBE


def test_good_probes_after_the_cooldown_close_it() -> None:
    clock, transitions = FakeClock(), Transitions()
    b = breaker(clock, transitions)
    for _ in range(10):
        b.record(failed=True)
    for _ in range(29):
        clock.advance(1)
        b.record(failed=False)
    assert state(b) == "open"  # 29 s of probes: the cooldown is 30 s
    clock.advance(1)
    b.record(failed=False)
    assert state(b) == "closed"
    assert b.describe()["opened_at"] is None
    assert transitions.seen == [("closed", "open"), ("open", "closed")]
    assert b.admit() is Admission.RUN


def test_bad_probes_keep_it_open_and_start_the_cooldown_again() -> None:
    clock, transitions = FakeClock(), Transitions()
    b = breaker(clock, transitions)
    for _ in range(10):
        b.record(failed=True)
    for _ in range(30):
        clock.advance(1)
        b.record(failed=True)
    assert state(b) == "open"
    for _ in range(29):
        clock.advance(1)
        b.record(failed=False)
    assert state(b) == "open"  # the cooldown restarted after the bad probes
    clock.advance(1)
    b.record(failed=False)
    assert state(b) == "closed"


def test_a_new_challenger_closes_it_with_a_clean_window() -> None:
    clock, transitions = FakeClock(), Transitions()
    b = breaker(clock, transitions)
    old, new = object(), object()
    b.follow(old)
    for _ in range(10):
        b.record(failed=True)
    b.follow(old)
    assert state(b) == "open"  # the same challenger again changes nothing
    b.follow(new)
    assert state(b) == "closed"
    assert b.describe()["error_rate"] == 0.0
    for _ in range(9):
        b.record(failed=True)
    assert state(b) == "closed"  # the old version's failures are gone
