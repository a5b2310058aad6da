"""Retry policy (ojs-retry.md): parsing, validation, backoff maths and the failure decision."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from ojs_actors.core.errors import InvalidRequest, OJSError, ValidationFailed
from ojs_actors.core.retry import (
    DEFAULT_POLICY,
    Backoff,
    Exhaustion,
    FailureDecision,
    HandlerCode,
    RetryPolicy,
    backoff_delay_ms,
    decide_failure,
    matches_non_retryable,
    parse_policy,
)
from ojs_actors.core.timefmt import parse_duration_ms

SECOND = 1_000


def policy(**raw: Any) -> RetryPolicy:
    return parse_policy(raw)


# --------------------------------------------------------------------------- defaults (§8)


def test_none_gives_the_default_policy() -> None:
    assert parse_policy(None) is DEFAULT_POLICY


def test_default_policy_matches_section_8() -> None:
    p = parse_policy({})
    assert p == DEFAULT_POLICY
    assert p.max_attempts == 3
    assert p.initial_interval_ms == 1_000
    assert p.backoff_coefficient == 2.0
    assert p.max_interval_ms == 300_000
    assert p.jitter is True
    assert p.non_retryable_errors == ()
    assert p.on_exhaustion is Exhaustion.DISCARD
    assert p.backoff is Backoff.EXPONENTIAL


def test_default_policy_wire_form_is_semantically_section_8() -> None:
    wire = DEFAULT_POLICY.to_wire()
    assert set(wire) == {
        "max_attempts",
        "initial_interval",
        "backoff_coefficient",
        "max_interval",
        "jitter",
        "non_retryable_errors",
        "on_exhaustion",
    }
    assert wire["max_attempts"] == 3
    assert parse_duration_ms(wire["initial_interval"], "x") == parse_duration_ms("PT1S", "x")
    assert parse_duration_ms(wire["max_interval"], "x") == parse_duration_ms("PT5M", "x")
    assert wire["backoff_coefficient"] == 2.0
    assert wire["jitter"] is True
    assert wire["non_retryable_errors"] == []
    assert wire["on_exhaustion"] == "discard"


def test_partial_override_merges_with_defaults_section_8_1() -> None:
    p = parse_policy({"max_attempts": 10, "on_exhaustion": "dead_letter"})
    assert p == RetryPolicy(
        max_attempts=10,
        initial_interval_ms=1_000,
        backoff_coefficient=2.0,
        max_interval_ms=300_000,
        jitter=True,
        non_retryable_errors=(),
        on_exhaustion=Exhaustion.DEAD_LETTER,
        backoff=Backoff.EXPONENTIAL,
    )


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"max_attempts": 1}, "max_attempts", 1),
        ({"max_attempts": 0}, "max_attempts", 0),
        ({"initial_interval": "PT0.5S"}, "initial_interval_ms", 500),
        ({"max_interval": "PT1H"}, "max_interval_ms", 3_600_000),
        ({"backoff_coefficient": 1}, "backoff_coefficient", 1.0),
        ({"backoff_coefficient": 1.5}, "backoff_coefficient", 1.5),
        ({"jitter": False}, "jitter", False),
        ({"non_retryable_errors": ["a.b", "c.*"]}, "non_retryable_errors", ("a.b", "c.*")),
        ({"on_exhaustion": "discard"}, "on_exhaustion", Exhaustion.DISCARD),
        ({"backoff_strategy": "none"}, "backoff", Backoff.NONE),
        ({"backoff_strategy": "linear"}, "backoff", Backoff.LINEAR),
        ({"backoff_strategy": "polynomial"}, "backoff", Backoff.POLYNOMIAL),
        ({"backoff_strategy": "exponential"}, "backoff", Backoff.EXPONENTIAL),
        ({"initial_interval_ms": 250}, "initial_interval_ms", 250),
        ({"max_interval_ms": 60_000}, "max_interval_ms", 60_000),
    ],
)
def test_single_field_override_keeps_every_other_default(
    raw: dict[str, Any], field: str, value: object
) -> None:
    p = parse_policy(raw)
    assert getattr(p, field) == value
    for name in RetryPolicy.__dataclass_fields__:
        if name != field:
            assert getattr(p, name) == getattr(DEFAULT_POLICY, name), name


def test_backoff_coefficient_is_stored_as_float() -> None:
    assert isinstance(parse_policy({"backoff_coefficient": 3}).backoff_coefficient, float)


def test_duration_form_wins_over_millisecond_form() -> None:
    p = parse_policy({"initial_interval": "PT2S", "initial_interval_ms": 5})
    assert p.initial_interval_ms == 2_000


def test_http_binding_millisecond_example() -> None:
    p = parse_policy(
        {
            "max_attempts": 5,
            "initial_interval_ms": 1000,
            "backoff_coefficient": 2.0,
            "max_interval_ms": 300000,
            "jitter": True,
        }
    )
    assert p == RetryPolicy(max_attempts=5)


@pytest.mark.parametrize(
    "p",
    [
        DEFAULT_POLICY,
        RetryPolicy(max_attempts=0, jitter=False),
        RetryPolicy(
            max_attempts=25,
            initial_interval_ms=15_000,
            backoff_coefficient=4.0,
            max_interval_ms=3_600_000,
            non_retryable_errors=("payment.card_stolen", "validation.*"),
            on_exhaustion=Exhaustion.DEAD_LETTER,
            backoff=Backoff.POLYNOMIAL,
        ),
        RetryPolicy(initial_interval_ms=1, max_interval_ms=1, backoff=Backoff.NONE),
        RetryPolicy(initial_interval_ms=1_234, max_interval_ms=98_765, backoff=Backoff.LINEAR),
    ],
)
def test_wire_form_round_trips(p: RetryPolicy) -> None:
    assert parse_policy(p.to_wire()) == p


def test_backoff_strategy_only_on_the_wire_when_not_exponential() -> None:
    assert "backoff_strategy" not in DEFAULT_POLICY.to_wire()
    assert RetryPolicy(backoff=Backoff.LINEAR).to_wire()["backoff_strategy"] == "linear"


# --------------------------------------------------------------------------- validation (§11)


@pytest.mark.parametrize(
    ("raw", "error", "field"),
    [
        ({"max_attempts": -1}, ValidationFailed, "max_attempts"),
        ({"max_attempts": 2.5}, ValidationFailed, "max_attempts"),
        ({"max_attempts": 3.0}, ValidationFailed, "max_attempts"),
        ({"max_attempts": "3"}, ValidationFailed, "max_attempts"),
        ({"max_attempts": True}, ValidationFailed, "max_attempts"),
        ({"max_attempts": None}, ValidationFailed, "max_attempts"),
        ({"backoff_coefficient": 0.5}, ValidationFailed, "backoff_coefficient"),
        ({"backoff_coefficient": 0}, ValidationFailed, "backoff_coefficient"),
        ({"backoff_coefficient": 0.999}, ValidationFailed, "backoff_coefficient"),
        ({"backoff_coefficient": -2.0}, ValidationFailed, "backoff_coefficient"),
        ({"backoff_coefficient": "2.0"}, ValidationFailed, "backoff_coefficient"),
        ({"backoff_coefficient": True}, ValidationFailed, "backoff_coefficient"),
        ({"initial_interval": "1S"}, InvalidRequest, "initial_interval"),
        ({"initial_interval": "P1Y"}, InvalidRequest, "initial_interval"),
        ({"initial_interval": "PT"}, InvalidRequest, "initial_interval"),
        ({"initial_interval": ""}, InvalidRequest, "initial_interval"),
        ({"initial_interval": 1000}, InvalidRequest, "initial_interval"),
        ({"initial_interval": "PT0S"}, ValidationFailed, "initial_interval"),
        ({"max_interval": "5 minutes"}, InvalidRequest, "max_interval"),
        ({"max_interval": "P1M"}, InvalidRequest, "max_interval"),
        ({"initial_interval": "PT10S", "max_interval": "PT5S"}, ValidationFailed, "max_interval"),
        ({"initial_interval": "PT10M"}, ValidationFailed, "max_interval"),  # vs default PT5M
        ({"max_interval": "PT0.5S"}, ValidationFailed, "max_interval"),  # vs default PT1S
        ({"initial_interval_ms": -1}, ValidationFailed, "initial_interval_ms"),
        ({"initial_interval_ms": "1000"}, ValidationFailed, "initial_interval_ms"),
        ({"max_interval_ms": 1.5}, ValidationFailed, "max_interval_ms"),
        ({"initial_interval_ms": 0}, ValidationFailed, "initial_interval"),
        ({"on_exhaustion": "retry"}, ValidationFailed, "on_exhaustion"),
        ({"on_exhaustion": "DEAD_LETTER"}, ValidationFailed, "on_exhaustion"),
        ({"on_exhaustion": None}, ValidationFailed, "on_exhaustion"),
        ({"jitter": "true"}, ValidationFailed, "jitter"),
        ({"jitter": 1}, ValidationFailed, "jitter"),
        ({"jitter": None}, ValidationFailed, "jitter"),
        ({"non_retryable_errors": "auth.*"}, ValidationFailed, "non_retryable_errors"),
        ({"non_retryable_errors": ["ok", 1]}, ValidationFailed, "non_retryable_errors"),
        ({"backoff_strategy": "fibonacci"}, ValidationFailed, "backoff_strategy"),
    ],
)
def test_invalid_policy_is_rejected_naming_the_field(
    raw: dict[str, Any], error: type[OJSError], field: str
) -> None:
    with pytest.raises(OJSError) as info:
        parse_policy(raw)
    err = info.value
    assert type(err) is error
    assert field in err.message
    assert err.details["field"] == f"retry.{field}"
    assert err.retryable is False
    assert err.status == (422 if error is ValidationFailed else 400)


@pytest.mark.parametrize("field", ["max_attempts", "backoff_coefficient"])
def test_conformance_validation_errors_render_as_validation_error(field: str) -> None:
    # L1 retry-validation-invalid-*: 422, error.type validation_error, message names the field.
    bad = {"max_attempts": -1, "backoff_coefficient": 0.5}[field]
    raw = {
        "max_attempts": 3,
        "initial_interval": "PT1S",
        "backoff_coefficient": 2.0,
        "max_interval": "PT5M",
        "jitter": False,
        "non_retryable_errors": [],
        "on_exhaustion": "discard",
        field: bad,
    }
    with pytest.raises(ValidationFailed) as info:
        parse_policy(raw)
    assert info.value.status == 422
    wire = info.value.to_wire()["error"]
    assert wire["type"] == "validation_error"
    assert field in wire["message"]
    assert wire["details"]["received"] == bad


@pytest.mark.parametrize("raw", [[], "PT1S", 3, True])
def test_retry_must_be_an_object(raw: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_policy(raw)
    assert "retry" in info.value.message
    assert info.value.details["field"] == "retry"


def test_coefficient_of_exactly_one_and_equal_intervals_are_valid() -> None:
    p = parse_policy(
        {"backoff_coefficient": 1.0, "initial_interval": "PT5S", "max_interval": "PT5S"}
    )
    assert p.backoff_coefficient == 1.0
    assert p.initial_interval_ms == p.max_interval_ms == 5_000


# --------------------------------------------------------------------------- backoff (§3)


def delays(p: RetryPolicy, count: int) -> list[int]:
    return [backoff_delay_ms(p, n) for n in range(1, count + 1)]


def test_none_strategy_table_3_1() -> None:
    p = policy(initial_interval="PT5S", backoff_strategy="none", jitter=False)
    assert delays(p, 4) == [5_000, 5_000, 5_000, 5_000]


def test_none_strategy_ignores_coefficient() -> None:
    p = policy(
        initial_interval="PT5S", backoff_strategy="none", backoff_coefficient=7, jitter=False
    )
    assert delays(p, 3) == [5_000, 5_000, 5_000]


def test_linear_strategy_table_3_2() -> None:
    p = policy(initial_interval="PT5S", backoff_strategy="linear", jitter=False)
    assert delays(p, 4) == [5_000, 10_000, 15_000, 20_000]


def test_linear_strategy_ignores_coefficient() -> None:
    p = policy(
        initial_interval="PT5S", backoff_strategy="linear", backoff_coefficient=9, jitter=False
    )
    assert delays(p, 3) == [5_000, 10_000, 15_000]


def test_linear_conformance_case() -> None:
    p = policy(
        max_attempts=5,
        initial_interval="PT1S",
        backoff_coefficient=1.0,
        backoff_strategy="linear",
        max_interval="PT30S",
        jitter=False,
    )
    assert delays(p, 3) == [1_000, 2_000, 3_000]
    assert backoff_delay_ms(p, 40) == 30_000


def test_exponential_strategy_table_3_3() -> None:
    p = policy(initial_interval="PT1S", backoff_coefficient=2.0, max_interval="PT5M", jitter=False)
    expected_seconds = [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert delays(p, 10) == [s * SECOND for s in expected_seconds]


def test_exponential_is_the_default_strategy() -> None:
    p = policy(jitter=False)
    assert delays(p, 3) == [1_000, 2_000, 4_000]


def test_exponential_with_coefficient_one_is_constant() -> None:
    p = policy(initial_interval="PT1S", backoff_coefficient=1.0, jitter=False)
    assert delays(p, 4) == [1_000, 1_000, 1_000, 1_000]


def test_exponential_fractional_coefficient() -> None:
    p = policy(initial_interval="PT1S", backoff_coefficient=1.5, jitter=False)
    assert delays(p, 4) == [1_000, 1_500, 2_250, 3_375]


def test_polynomial_strategy_table_3_4() -> None:
    p = policy(
        initial_interval="PT1S",
        backoff_coefficient=4.0,
        max_interval="PT5M",
        backoff_strategy="polynomial",
        jitter=False,
    )
    assert delays(p, 5) == [s * SECOND for s in (1, 16, 81, 256, 300)]


def test_polynomial_example_12_3() -> None:
    p = policy(
        max_attempts=25,
        initial_interval="PT15S",
        backoff_coefficient=4.0,
        max_interval="PT1H",
        backoff_strategy="polynomial",
        jitter=False,
    )
    assert delays(p, 5) == [s * SECOND for s in (15, 240, 1215, 3600, 3600)]


@pytest.mark.parametrize("strategy", list(Backoff))
def test_max_interval_caps_every_strategy(strategy: Backoff) -> None:
    p = policy(
        initial_interval="PT3S",
        max_interval="PT7S",
        backoff_coefficient=3.0,
        backoff_strategy=strategy.value,
        jitter=False,
    )
    values = delays(p, 30)
    assert max(values) <= 7_000
    assert values == sorted(values)  # never decreasing
    if strategy is not Backoff.NONE:
        assert values[-1] == 7_000


@pytest.mark.parametrize("strategy", list(Backoff))
@pytest.mark.parametrize("retry_number", [4_000, 50_000, 10**6])
def test_huge_retry_numbers_are_capped_not_crashing(strategy: Backoff, retry_number: int) -> None:
    p = policy(
        max_attempts=10**7,
        backoff_coefficient=300.0,
        max_interval="PT1H",
        backoff_strategy=strategy.value,
        jitter=False,
    )
    expected = 1_000 if strategy is Backoff.NONE else 3_600_000
    assert backoff_delay_ms(p, retry_number) == expected
    jittered = policy(
        max_attempts=10**7,
        backoff_coefficient=300.0,
        max_interval="PT1H",
        backoff_strategy=strategy.value,
    )
    assert 0 < backoff_delay_ms(jittered, retry_number, random.Random(1)) <= expected * 1.5


def test_retry_number_below_one_is_treated_as_the_first_retry() -> None:
    p = policy(jitter=False)
    assert backoff_delay_ms(p, 0) == backoff_delay_ms(p, 1) == 1_000
    assert backoff_delay_ms(p, -3) == 1_000


# --------------------------------------------------------------------------- jitter (§5)


def uncapped_delay(p: RetryPolicy, n: int) -> float:
    base = p.initial_interval_ms
    raw = {
        Backoff.NONE: float(base),
        Backoff.LINEAR: float(base * n),
        Backoff.EXPONENTIAL: base * p.backoff_coefficient ** (n - 1),
        Backoff.POLYNOMIAL: base * float(n) ** p.backoff_coefficient,
    }[p.backoff]
    return min(raw, float(p.max_interval_ms))


@pytest.mark.parametrize("strategy", list(Backoff))
@pytest.mark.parametrize("seed", [0, 1, 42, 2026])
def test_jitter_matches_the_algorithm_exactly(strategy: Backoff, seed: int) -> None:
    p = policy(
        initial_interval="PT10S",
        backoff_coefficient=2.0,
        max_interval="PT5M",
        backoff_strategy=strategy.value,
    )
    rng, mirror = random.Random(seed), random.Random(seed)
    for n in range(1, 12):
        effective = uncapped_delay(p, n)
        expected = round(min(effective * mirror.uniform(0.5, 1.5), p.max_interval_ms))
        assert backoff_delay_ms(p, n, rng) == expected


def test_same_seed_same_delays() -> None:
    p = policy()
    a = [backoff_delay_ms(p, n, random.Random(99)) for n in range(1, 9)]
    b = [backoff_delay_ms(p, n, random.Random(99)) for n in range(1, 9)]
    assert a == b


@pytest.mark.parametrize(
    ("retry_number", "low_s", "high_s"),
    [(1, 5, 15), (2, 10, 30), (3, 20, 60), (4, 40, 120), (5, 80, 240), (6, 150, 300)],
)
def test_jitter_ranges_of_example_5_3(retry_number: int, low_s: int, high_s: int) -> None:
    p = policy(initial_interval="PT10S", backoff_coefficient=2.0, max_interval="PT5M", jitter=True)
    rng = random.Random(retry_number)
    samples = [backoff_delay_ms(p, retry_number, rng) for _ in range(2_000)]
    assert min(samples) >= low_s * SECOND
    if retry_number < 6:
        assert max(samples) < high_s * SECOND  # half-open [0.5, 1.5)
    else:
        assert max(samples) == high_s * SECOND  # re-capped at max_interval after jitter
        assert sum(s == 300 * SECOND for s in samples) > 500  # every multiplier >= 1.0
    assert min(samples) < 0.6 * uncapped_delay(p, retry_number)
    assert max(samples) > 0.9 * min(1.4 * uncapped_delay(p, retry_number), 300 * SECOND)


def test_jitter_bounds_random_policies() -> None:
    rng = random.Random(12345)
    strategies = list(Backoff)
    for _ in range(3_000):
        initial = rng.randrange(1, 60_000)
        p = RetryPolicy(
            initial_interval_ms=initial,
            max_interval_ms=initial * rng.randrange(1, 500),
            backoff_coefficient=rng.uniform(1.0, 5.0),
            backoff=rng.choice(strategies),
            jitter=True,
        )
        n = rng.randrange(1, 40)
        effective = uncapped_delay(p, n)
        delay = backoff_delay_ms(p, n, rng)
        assert math.floor(0.5 * effective) <= delay
        assert delay <= min(math.ceil(1.5 * effective), p.max_interval_ms)
        assert delay <= p.max_interval_ms


def test_jitter_mean_is_close_to_the_effective_delay() -> None:
    p = policy(initial_interval="PT10S", max_interval="PT1H")
    rng = random.Random(3)
    samples = [backoff_delay_ms(p, 2, rng) for _ in range(5_000)]
    mean = sum(samples) / len(samples)
    assert 19_000 < mean < 21_000


def test_jitter_without_rng_uses_module_random_within_bounds() -> None:
    p = policy(initial_interval="PT10S")
    for _ in range(200):
        assert 5_000 <= backoff_delay_ms(p, 1) < 15_000


def test_no_jitter_is_deterministic_regardless_of_rng() -> None:
    p = policy(jitter=False)
    assert backoff_delay_ms(p, 3, random.Random(1)) == backoff_delay_ms(p, 3, random.Random(2))
    assert backoff_delay_ms(p, 3) == 4_000


# --------------------------------------------------------------------------- non-retryable (§6.2)


SECTION_6_2 = ("validation.payload_invalid", "auth.*")


@pytest.mark.parametrize(
    ("error_type", "matches"),
    [
        ("validation.payload_invalid", True),
        ("validation.schema_error", False),
        ("auth.token_expired", True),
        ("auth.forbidden", True),
        ("auth", False),
        ("external.auth.failure", False),
    ],
)
def test_matching_table_6_2(error_type: str, matches: bool) -> None:
    assert matches_non_retryable(error_type, SECTION_6_2) is matches


@pytest.mark.parametrize(
    ("error_type", "patterns", "matches"),
    [
        ("Auth.TokenExpired", ("Auth.*",), True),
        ("auth.TokenExpired", ("Auth.*",), False),  # case-sensitive
        ("validation.a.b.c", ("validation.*",), True),
        ("validationx.a", ("validation.*",), False),
        ("validation.", ("validation.*",), True),
        ("ValidationError", ("ValidationError",), True),
        ("ValidationError2", ("ValidationError",), False),
        ("Validation", ("ValidationError",), False),
        ("anything", (), False),
        ("x.y", ("a.b", "x.*", "z"), True),
    ],
)
def test_matching_more_cases(error_type: str, patterns: tuple[str, ...], matches: bool) -> None:
    assert matches_non_retryable(error_type, patterns) is matches


# --------------------------------------------------------------------------- decide_failure


NO_JITTER = RetryPolicy(jitter=False)
DLQ = RetryPolicy(jitter=False, on_exhaustion=Exhaustion.DEAD_LETTER)


def test_retry_while_attempts_remain() -> None:
    assert decide_failure(NO_JITTER, 1, "boom") == FailureDecision(retry=True, delay_ms=1_000)
    assert decide_failure(NO_JITTER, 2, "boom") == FailureDecision(retry=True, delay_ms=2_000)


def test_retry_delay_uses_the_given_rng() -> None:
    p = RetryPolicy()
    decision = decide_failure(p, 2, "boom", rng=random.Random(5))
    assert decision.retry is True
    assert decision.delay_ms == backoff_delay_ms(p, 2, random.Random(5))


@pytest.mark.parametrize(
    ("on_exhaustion", "dead_letter"),
    [(Exhaustion.DISCARD, False), (Exhaustion.DEAD_LETTER, True)],
)
@pytest.mark.parametrize("attempt", [3, 4, 10])
def test_exhaustion_follows_on_exhaustion(
    on_exhaustion: Exhaustion, dead_letter: bool, attempt: int
) -> None:
    p = RetryPolicy(max_attempts=3, on_exhaustion=on_exhaustion)
    decision = decide_failure(p, attempt, "boom")
    assert decision == FailureDecision(retry=False, dead_letter=dead_letter, reason="exhausted")


@pytest.mark.parametrize("max_attempts", [0, 1])
def test_zero_or_one_max_attempts_never_retries(max_attempts: int) -> None:
    p = RetryPolicy(max_attempts=max_attempts)
    decision = decide_failure(p, 1, "boom")
    assert decision.retry is False
    assert decision.reason == "exhausted"


@pytest.mark.parametrize(
    ("on_exhaustion", "dead_letter"),
    [(Exhaustion.DISCARD, False), (Exhaustion.DEAD_LETTER, True)],
)
def test_non_retryable_error_stops_early_per_on_exhaustion(
    on_exhaustion: Exhaustion, dead_letter: bool
) -> None:
    p = RetryPolicy(
        max_attempts=10,
        jitter=False,
        non_retryable_errors=("validation.*", "auth.forbidden"),
        on_exhaustion=on_exhaustion,
    )
    for error_type in ("validation.bad_email", "auth.forbidden"):
        decision = decide_failure(p, 1, error_type)
        assert decision == FailureDecision(
            retry=False, dead_letter=dead_letter, reason="non_retryable"
        )
    assert decide_failure(p, 1, "auth.token_expired").retry is True


@pytest.mark.parametrize(("p", "dead_letter"), [(NO_JITTER, False), (DLQ, True)])
def test_worker_retryable_false_stops_per_on_exhaustion(p: RetryPolicy, dead_letter: bool) -> None:
    decision = decide_failure(p, 1, "boom", worker_says_retryable=False)
    assert decision == FailureDecision(retry=False, dead_letter=dead_letter, reason="not_retryable")


def test_non_retryable_is_checked_before_worker_flag() -> None:
    p = RetryPolicy(non_retryable_errors=("x",))
    decision = decide_failure(p, 1, "x", worker_says_retryable=False)
    assert decision.reason == "non_retryable"


@pytest.mark.parametrize("p", [NO_JITTER, DLQ])
@pytest.mark.parametrize("attempt", [1, 3])
def test_handler_dead_letter_overrides_policy(p: RetryPolicy, attempt: int) -> None:
    decision = decide_failure(p, attempt, "boom", handler_code=HandlerCode.DEAD_LETTER)
    assert decision == FailureDecision(retry=False, dead_letter=True, reason="handler_dead_letter")


@pytest.mark.parametrize("code", [HandlerCode.DISCARD, HandlerCode.FAIL])
@pytest.mark.parametrize("p", [NO_JITTER, DLQ])
@pytest.mark.parametrize("attempt", [1, 3])
def test_handler_discard_and_fail_discard_without_dead_letter(
    code: HandlerCode, p: RetryPolicy, attempt: int
) -> None:
    decision = decide_failure(p, attempt, "boom", handler_code=code)
    assert decision == FailureDecision(retry=False, dead_letter=False, reason="handler_discard")


def test_handler_code_beats_non_retryable_and_worker_flag() -> None:
    p = RetryPolicy(non_retryable_errors=("boom",), on_exhaustion=Exhaustion.DEAD_LETTER)
    discard = decide_failure(
        p, 1, "boom", worker_says_retryable=False, handler_code=HandlerCode.DISCARD
    )
    assert discard.dead_letter is False
    assert discard.reason == "handler_discard"
    q = RetryPolicy(non_retryable_errors=("boom",), on_exhaustion=Exhaustion.DISCARD)
    dead = decide_failure(q, 1, "boom", handler_code=HandlerCode.DEAD_LETTER)
    assert dead.dead_letter is True
    assert dead.reason == "handler_dead_letter"


def test_handler_retry_is_the_normal_policy() -> None:
    p = RetryPolicy(jitter=False, non_retryable_errors=("fatal",))
    assert decide_failure(p, 1, "boom", handler_code=HandlerCode.RETRY) == decide_failure(
        p, 1, "boom"
    )
    assert decide_failure(p, 1, "fatal", handler_code=HandlerCode.RETRY).retry is False
    assert decide_failure(p, 3, "boom", handler_code=HandlerCode.RETRY).retry is False


def test_remembered_policies_are_told_apart_by_value_type() -> None:
    """A valid policy is remembered, but ``1`` and ``True`` hash alike: a remembered
    ``jitter: true`` must not let ``jitter: 1`` through, nor a list pass for a tuple."""
    first = parse_policy({"jitter": True, "max_attempts": 5})
    assert parse_policy({"jitter": True, "max_attempts": 5}) is first
    with pytest.raises(OJSError):
        parse_policy({"jitter": 1, "max_attempts": 5})
    with pytest.raises(OJSError):
        parse_policy({"jitter": True, "max_attempts": 5.0})
    listed = parse_policy({"non_retryable_errors": ["a", "b"]})
    assert listed.non_retryable_errors == ("a", "b")
    with pytest.raises(OJSError):
        parse_policy({"non_retryable_errors": "ab"})
