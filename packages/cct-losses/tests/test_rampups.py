"""Ramp-up schedules and the consistency weight."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cct_losses import (
    ConsistencyWeight,
    cosine_rampdown,
    cosine_rampup,
    linear_rampup,
    log_rampup,
    sigmoid_rampup,
)
from cct_losses.rampups import step_rampup


@pytest.mark.parametrize(
    ("fn", "start", "mid", "end"),
    [
        (sigmoid_rampup, math.exp(-5.0), math.exp(-1.25), 1.0),
        (linear_rampup, 0.0, 0.5, 1.0),
        (log_rampup, 0.0, 1.0 - math.exp(-2.5), 1.0 - math.exp(-5.0)),
        (cosine_rampdown, 1.0, 0.5, 0.0),
        (cosine_rampup, 0.0, 0.5, 1.0),
    ],
)
def test_values_at_start_mid_end(fn, start, mid, end) -> None:
    assert fn(0, 10) == pytest.approx(start, abs=1e-12)
    assert fn(5, 10) == pytest.approx(mid, abs=1e-12)
    assert fn(10, 10) == pytest.approx(end, abs=1e-12)
    # clipped outside [0, length]
    assert fn(-3, 10) == pytest.approx(start, abs=1e-12)
    assert fn(25, 10) == pytest.approx(end, abs=1e-12)
    # progress form: t in [0, 1] with the default length 1
    assert fn(0.5) == pytest.approx(mid, abs=1e-12)
    assert fn(0.0, 1.0) == pytest.approx(start, abs=1e-12)
    # plain float out, ints in
    assert type(fn(3, 10)) is float


def test_sigmoid_formula_against_direct_expression() -> None:
    for cur, length in [(0, 7), (1, 7), (3.5, 7), (6, 7), (7, 7)]:
        t = cur / length
        assert sigmoid_rampup(cur, length) == pytest.approx(math.exp(-5.0 * (1.0 - t) ** 2))


@pytest.mark.parametrize("fn", [sigmoid_rampup, linear_rampup, log_rampup])
def test_zero_length_means_finished(fn) -> None:
    assert fn(0, 0) == 1.0
    assert fn(5, 0) == 1.0


def test_cosine_rampup_shape() -> None:
    # exactly 0 and 1 at the ends, flat there (zero slope), symmetric about the middle, the mirror of the
    # ramp-down, and the configured `train.unsupervised_weight.schedule: cosine` through ConsistencyWeight
    assert cosine_rampup(0, 0) == 1.0
    assert cosine_rampup(0, 8) == 0.0
    assert cosine_rampup(8, 8) == 1.0
    for t in (0.1, 0.25, 0.4):
        assert cosine_rampup(t) + cosine_rampup(1 - t) == pytest.approx(1.0)
        assert cosine_rampup(t) == pytest.approx(1.0 - cosine_rampdown(t))
        assert cosine_rampup(t) == pytest.approx(0.5 * (1 - math.cos(math.pi * t)))
    eps = 1e-4
    assert cosine_rampup(eps) / eps < 1e-3  # starts flat
    assert (1.0 - cosine_rampup(1 - eps)) / eps < 1e-3  # ends flat
    w = ConsistencyWeight(30.0, rampup=100, schedule="cosine")
    assert w(0) == 0.0
    assert w(50) == pytest.approx(15.0)
    assert w(100) == w(500) == 30.0


def test_step_rampup() -> None:
    assert step_rampup(0, 10) == 0.0
    assert step_rampup(9.99, 10) == 0.0
    assert step_rampup(10, 10) == 1.0


@pytest.mark.parametrize("fn", [sigmoid_rampup, linear_rampup, log_rampup, cosine_rampdown])
def test_negative_length_raises(fn) -> None:
    with pytest.raises(ValueError, match="rampup_length"):
        fn(1, -1)


def test_bool_and_garbage_rejected() -> None:
    with pytest.raises(TypeError):
        sigmoid_rampup(True, 10)
    with pytest.raises(TypeError):
        sigmoid_rampup("3", 10)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(-5, 50, allow_nan=False),
    b=st.floats(-5, 50, allow_nan=False),
    length=st.floats(0.1, 40, allow_nan=False),
)
def test_rampups_monotone_and_bounded(a: float, b: float, length: float) -> None:
    lo, hi = min(a, b), max(a, b)
    for fn in (sigmoid_rampup, linear_rampup, log_rampup, cosine_rampup):
        assert 0.0 <= fn(lo, length) <= fn(hi, length) <= 1.0
    assert 1.0 >= cosine_rampdown(lo, length) >= cosine_rampdown(hi, length) >= 0.0


# --- ConsistencyWeight ---------------------------------------------------------------------------------


def test_weight_by_iterations() -> None:
    w = ConsistencyWeight(30.0, rampup=100)
    assert w.rampup_iters == 100
    assert w(0) == pytest.approx(30.0 * math.exp(-5.0))
    assert w(50) == pytest.approx(30.0 * math.exp(-1.25))
    assert w(100) == pytest.approx(30.0)
    assert w(10_000) == pytest.approx(30.0)
    assert type(w(3)) is float


def test_weight_by_fraction_matches_iterations() -> None:
    by_frac = ConsistencyWeight(30.0, rampup=0.1, total_iters=1000)
    by_iter = ConsistencyWeight(30.0, rampup=100)
    assert by_frac.rampup_iters == pytest.approx(100)
    for it in [0, 1, 17, 50, 99, 100, 101, 999]:
        assert by_frac(it) == pytest.approx(by_iter(it))


def test_weight_defaults_are_the_paper() -> None:
    w = ConsistencyWeight(total_iters=2000)
    assert w.lambda_u == 30.0
    assert w.rampup_iters == pytest.approx(200)
    assert w(200) == pytest.approx(30.0)
    assert w(100) == pytest.approx(30.0 * math.exp(-1.25))


def test_weight_full_fraction_and_no_ramp() -> None:
    assert ConsistencyWeight(2.0, rampup=1.0, total_iters=10, schedule="linear")(5) == pytest.approx(1.0)
    assert ConsistencyWeight(2.0, rampup=0)(0) == 2.0


@pytest.mark.parametrize(
    ("schedule", "expected_mid"),
    [("linear", 0.5), ("log", 1 - math.exp(-2.5)), ("sigmoid", math.exp(-1.25)), ("exp", math.exp(-1.25))],
)
def test_weight_schedules(schedule: str, expected_mid: float) -> None:
    w = ConsistencyWeight(4.0, rampup=10, schedule=schedule)
    assert w(5) == pytest.approx(4.0 * expected_mid)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rampup": 0.1}, "total_iters"),
        ({"rampup": 1.5, "total_iters": 100}, "rampup"),
        ({"rampup": 0.0, "total_iters": 100}, "rampup"),
        ({"rampup": -3}, "rampup"),
        ({"rampup": True}, "rampup"),
        ({"rampup": 10, "schedule": "cubic"}, "schedule"),
        ({"lambda_u": -1.0, "rampup": 10}, "lambda_u"),
        ({"rampup": 10, "total_iters": 0}, "total_iters"),
    ],
)
def test_weight_validation(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ConsistencyWeight(**kwargs)


@pytest.mark.parametrize("old_name", ["final_weight", "weight"])
def test_final_weight_is_the_deprecated_name_of_weight(old_name: str) -> None:
    # lambda_u has one name in the project (issues #16, #42): ``lambda_u``; the old keywords and attributes
    # still work, and warn.
    with pytest.warns(DeprecationWarning, match=old_name):
        old = ConsistencyWeight(**{old_name: 4.0}, rampup=10)
    new = ConsistencyWeight(lambda_u=4.0, rampup=10)
    with pytest.warns(DeprecationWarning, match=old_name):
        assert old.lambda_u == new.lambda_u == getattr(old, old_name) == 4.0
    assert [old(t) for t in (0, 5, 10)] == [new(t) for t in (0, 5, 10)]
    assert "lambda_u=4.0" in repr(new)
