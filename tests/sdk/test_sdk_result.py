"""FlextResult: the monad and functor laws, and the accessors."""

from __future__ import annotations

import dataclasses

import pytest

from flext_observability import FlextResult
from flext_observability.sdk.result import UnwrapError


def double(x: int) -> int:
    return 2 * x


def plus_one(x: int) -> int:
    return x + 1


def half(x: int) -> FlextResult[int]:
    return FlextResult.ok(x // 2) if x % 2 == 0 else FlextResult.fail(f"x: {x} is odd")


def positive(x: int) -> FlextResult[int]:
    return FlextResult.ok(x) if x > 0 else FlextResult.fail("x: must be positive")


RESULTS = [FlextResult.ok(4), FlextResult.ok(3), FlextResult.ok(0), FlextResult.fail("broken")]


@pytest.mark.parametrize("value", [0, 3, 4, -8])
def test_left_identity(value):
    assert FlextResult.ok(value).flat_map(half) == half(value)


@pytest.mark.parametrize("result", RESULTS)
def test_right_identity(result):
    assert result.flat_map(FlextResult.ok) == result


@pytest.mark.parametrize("result", RESULTS)
def test_associativity(result):
    assert result.flat_map(half).flat_map(positive) == result.flat_map(
        lambda x: half(x).flat_map(positive)
    )


@pytest.mark.parametrize("result", RESULTS)
def test_functor_identity_and_composition(result):
    assert result.map(lambda x: x) == result
    assert result.map(double).map(plus_one) == result.map(lambda x: plus_one(double(x)))


def test_success_accessors():
    result = FlextResult.ok(5)
    assert result.is_success
    assert not result.is_failure
    assert result.value == 5
    assert result.error is None
    assert result.unwrap() == 5
    assert result.unwrap_or(0) == 5


def test_success_may_hold_none():
    result = FlextResult.ok(None)
    assert result.is_success
    assert result.unwrap() is None


def test_failure_accessors():
    result: FlextResult[int] = FlextResult.fail("value: must be a finite number")
    assert result.is_failure
    assert not result.is_success
    assert result.value is None
    assert result.error == "value: must be a finite number"
    assert result.unwrap_or(7) == 7
    with pytest.raises(UnwrapError, match="value: must be a finite number"):
        result.unwrap()


def test_failure_short_circuits():
    calls = []
    result: FlextResult[int] = FlextResult.fail("nope")
    assert result.map(calls.append).error == "nope"
    assert result.flat_map(lambda x: FlextResult.ok(calls.append(x))).error == "nope"
    assert calls == []


def test_frozen_and_slotted():
    result = FlextResult.ok(1)
    for name in (f.name for f in dataclasses.fields(result)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, name, 2)
    assert not hasattr(result, "__dict__")


def test_generic_subscription():
    assert FlextResult[int].ok(1).unwrap() == 1


def test_ok_and_fail_on_the_subscripted_class_as_the_seed_writes_them():
    assert FlextResult[list[int]].ok([1]).value == [1]
    failed = FlextResult[dict[str, object]].fail("Invalid metrics collection configuration")
    assert failed.is_failure
    assert failed.error == "Invalid metrics collection configuration"
    assert isinstance(failed, FlextResult)


@pytest.mark.parametrize("result", RESULTS)
def test_bind_is_flat_map(result):
    assert result.bind(half) == result.flat_map(half)


def test_map_error_and_alt_change_only_a_failure():
    failed: FlextResult[int] = FlextResult.fail("value: must be a finite number")
    assert failed.map_error(lambda e: f"metric: {e}").error == (
        "metric: value: must be a finite number"
    )
    assert failed.alt(str.upper).error == "VALUE: MUST BE A FINITE NUMBER"
    success = FlextResult.ok(3)
    assert success.map_error(lambda e: "never") is success
    assert success.alt(lambda e: "never") is success


def test_tap_sees_a_success_only_and_returns_the_same_result():
    seen = []
    success = FlextResult.ok(3)
    assert success.tap(seen.append) is success
    failed: FlextResult[int] = FlextResult.fail("nope")
    assert failed.tap(seen.append) is failed
    assert seen == [3]
