import pytest

from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.retries import (
    MAX_RETRY_DELAY_S,
    Action,
    Call,
    Decision,
    Kind,
    Policy,
    Reason,
    after_failure,
    before_attempt,
    classify,
    jittered,
    may_start,
    retry_budget,
    retry_delay,
    spread,
    throttle_delay,
)

MID = 0.5  # the draw that gives the delay unjittered
POLICY = Policy(max_retries=2, retry_delay_s=60.0, max_event_age_s=3600.0)
NOW = 10_000.0


def call(age: float = 0.0, retries_used: int = 0, attempts: int | None = None, *, lost: bool = False) -> Call:
    return Call(NOW - age, retries_used, retries_used if attempts is None else attempts, lost=lost)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("FunctionError", Kind.FAILED),
        ("Timeout", Kind.FAILED),
        ("OutOfMemory", Kind.FAILED),
        ("RuntimeExited", Kind.FAILED),
        ("InitError", Kind.FAILED),
        ("ResponseTooLarge", Kind.FAILED),
        ("InternalError", Kind.FAILED),  # unexpected: uses a retry, never loops for free
        ("SomethingNew", Kind.FAILED),
        ("Throttled", Kind.THROTTLED),
        ("QuotaExceeded", Kind.THROTTLED),
        ("ServiceUnavailable", Kind.INTERRUPTED),
        ("NotFound", Kind.GONE),
    ],
)
def test_every_error_code_has_a_kind(code: str, kind: Kind) -> None:
    assert classify(code) is kind


@pytest.mark.parametrize(
    ("retry", "base", "draw", "expected"),
    [
        (1, 60.0, MID, 60.0),  # like Lambda: about a minute,
        (2, 60.0, MID, 120.0),  # then about two
        (3, 60.0, MID, 240.0),
        (1, 0.1, MID, 0.1),
        (1, 60.0, 0.0, 48.0),  # the jitter: ±20 %
        (1, 60.0, 0.999999, 72.0),
        (2, 0.5, 0.0, 0.8),
        (10, 3600.0, MID, MAX_RETRY_DELAY_S),  # the doubling stops
        (1000, 1.0, MID, MAX_RETRY_DELAY_S),
    ],
)
def test_retry_delays_double_with_jitter(retry: int, base: float, draw: float, expected: float) -> None:
    assert retry_delay(retry, base, draw) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0.0, 1.0), (5.0, 1.0), (30.0, 3.0), (600.0, 60.0), (21_600.0, 60.0)],
)
def test_a_throttled_call_waits_a_tenth_of_its_age_within_bounds(age: float, expected: float) -> None:
    assert throttle_delay(age, MID) == pytest.approx(expected)


def test_jitter_spans_the_range_and_nothing_more() -> None:
    assert jittered(10.0, 0.0) == pytest.approx(8.0)
    assert jittered(10.0, MID) == pytest.approx(10.0)
    assert jittered(10.0, 0.99999999) == pytest.approx(12.0)


@pytest.mark.parametrize(
    ("facts", "policy", "code", "expected"),
    [
        # failures use retries: due again after the backoff
        (call(), POLICY, "FunctionError", Decision(Action.RETRY, at=NOW + 60)),
        (call(retries_used=1), POLICY, "Timeout", Decision(Action.RETRY, at=NOW + 120)),
        (call(retries_used=2), POLICY, "OutOfMemory", Decision(Action.DEAD, reason=Reason.RETRIES_EXHAUSTED)),
        (call(), Policy(max_retries=0), "InitError", Decision(Action.DEAD, reason=Reason.RETRIES_EXHAUSTED)),
        (
            call(retries_used=9),
            Policy(max_retries=10, retry_delay_s=0.01),
            "RuntimeExited",
            Decision(Action.RETRY, at=NOW + 5.12),  # the tenth retry: 0.01 s doubled nine times
        ),
        # ... unless the event would be too old when the retry comes due
        (call(age=3500), POLICY, "FunctionError", Decision(Action.RETRY, at=NOW + 60)),
        (call(age=3539), POLICY, "FunctionError", Decision(Action.RETRY, at=NOW + 60)),
        (call(age=3541), POLICY, "FunctionError", Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)),
        # ... which a redriven call (attempts kept, retries reset) is exempt from
        (
            call(age=7200, retries_used=0, attempts=3),
            POLICY,
            "FunctionError",
            Decision(Action.RETRY, at=NOW + 60),
        ),
        # throttling uses nothing: postponed, within the event's age
        (call(), POLICY, "Throttled", Decision(Action.POSTPONE, at=NOW + 1)),
        (call(age=300, retries_used=2), POLICY, "QuotaExceeded", Decision(Action.POSTPONE, at=NOW + 30)),
        (call(age=3599.5), POLICY, "Throttled", Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)),
        (call(age=9000, attempts=1), POLICY, "Throttled", Decision(Action.POSTPONE, at=NOW + 60)),
        # shutting down: due again at once, nothing used, whatever its age
        (call(age=3599.99), POLICY, "ServiceUnavailable", Decision(Action.POSTPONE, at=NOW)),
        (call(retries_used=2), POLICY, "ServiceUnavailable", Decision(Action.POSTPONE, at=NOW)),
        # the function is gone: dead at once
        (call(), POLICY, "NotFound", Decision(Action.DEAD, reason=Reason.FUNCTION_GONE)),
    ],
)
def test_after_a_failure(facts: Call, policy: Policy, code: str, expected: Decision) -> None:
    decision = after_failure(facts, policy, code, now=NOW, draw=MID)
    assert decision.action is expected.action
    assert decision.reason is expected.reason
    assert decision.at == pytest.approx(expected.at)


@pytest.mark.parametrize(
    ("facts", "dead"),
    [
        (call(age=0), False),
        (call(age=3600), False),
        (call(age=3600.5), True),
        (call(age=3600.5, retries_used=1), True),
        (call(age=99_999, attempts=2), False),  # redriven
    ],
)
def test_a_call_leased_too_late_goes_dead_unrun(facts: Call, dead: bool) -> None:
    decision = before_attempt(facts, POLICY, now=NOW)
    assert (decision == Decision(Action.DEAD, reason=Reason.EVENT_AGE_EXCEEDED)) is dead
    assert decision is None or dead


# The queue has counted the lost attempt already: retries_used includes it.
@pytest.mark.parametrize(
    ("facts", "policy", "expected"),
    [
        # a lost attempt with retries left: run again, at once (a kill -9 costs one retry)
        (call(retries_used=1, lost=True), POLICY, None),
        (call(retries_used=2, lost=True), POLICY, None),  # the last retry
        (call(retries_used=1, lost=True), Policy(max_retries=1), None),
        # ... without: dead, like a crash whose retries are used up
        (call(retries_used=3, lost=True), POLICY, Reason.RETRIES_EXHAUSTED),
        (call(retries_used=1, lost=True), Policy(max_retries=0), Reason.RETRIES_EXHAUSTED),
        (call(retries_used=2, attempts=5, lost=True), Policy(max_retries=1), Reason.RETRIES_EXHAUSTED),
        # a redriven call's retries count from zero again, its lost attempts too
        (call(retries_used=1, attempts=4, lost=True), Policy(max_retries=1), None),
        # not lost: what retries_used says is for after_failure to judge, not here
        (call(retries_used=3), POLICY, None),
        # both: too many lost attempts is what it died of
        (call(age=7200, retries_used=3, lost=True), POLICY, Reason.RETRIES_EXHAUSTED),
        (call(age=7200, retries_used=1, lost=True), POLICY, Reason.EVENT_AGE_EXCEEDED),
    ],
)
def test_a_lost_attempt_uses_a_retry_like_a_crash(
    facts: Call, policy: Policy, expected: Reason | None
) -> None:
    decision = before_attempt(facts, policy, now=NOW)
    assert (decision and decision.reason) == expected
    assert decision is None or decision.action is Action.DEAD


def test_a_policy_comes_from_the_function_config() -> None:
    config = FunctionConfig(max_retries=5, retry_delay_s=0.25, max_event_age_s=90, ordering_hold=True)
    assert Policy.of(config) == Policy(5, 0.25, 90, True)
    assert Policy.of(FunctionConfig()) == Policy(2, 60.0, 21_600, False)  # Lambda's defaults


@pytest.mark.parametrize(
    ("max_concurrency", "share", "budget"),
    [
        (100, 0.2, 20),
        (10, 0.2, 2),
        (5, 0.2, 1),
        (4, 0.2, 1),  # at least one: a function's retries always progress
        (1, 0.2, 1),
        (0, 0.2, 1),
        (10, 1.0, 10),
        (3, 0.5, 1),
        (7, 0.3, 2),
        (10, 0.3, 3),  # 0.3 * 10 is 3, not 2.9999999
    ],
)
def test_the_retry_budget_is_a_share_of_the_concurrency(
    max_concurrency: int, share: float, budget: int
) -> None:
    assert retry_budget(max_concurrency, share) == budget


@pytest.mark.parametrize(
    ("retry", "running", "running_retries", "allowed"),
    [
        (False, 0, 0, True),
        (False, 9, 9, True),  # first attempts ignore the budget
        (False, 10, 0, False),  # but not the concurrency
        (True, 0, 0, True),
        (True, 5, 1, True),
        (True, 5, 2, False),  # the budget (2) is used up
        (True, 10, 1, False),  # the concurrency is
        (True, 3, 3, False),
    ],
)
def test_which_attempts_may_start(retry: bool, running: int, running_retries: int, allowed: bool) -> None:
    assert (
        may_start(retry=retry, running=running, running_retries=running_retries, max_concurrency=10, budget=2)
        is allowed
    )


@pytest.mark.parametrize(
    ("position", "slots", "mean", "expected"),
    [
        (0, 2, 1.0, 1.0),  # the first two without room come back after about one attempt,
        (1, 2, 1.0, 1.0),
        (2, 2, 1.0, 2.0),  # the next two after two
        (9, 2, 1.0, 5.0),
        (0, 1, 0.001, 0.05),  # never sooner than this, not to spin on a fast function
        (5000, 1, 30.0, 60.0),  # nor later than this
        (3, 0, 1.0, 4.0),  # no slot at all (disabled): one at a time
    ],
)
def test_calls_without_room_are_spread_over_the_coming_slots(
    position: int, slots: int, mean: float, expected: float
) -> None:
    assert spread(position, slots, mean, MID) == pytest.approx(expected)
