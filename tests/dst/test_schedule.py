"""Drop fraction and update steps (SPEC section 5)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import srigl_ref
from srigl_ref.dst import UpdateSchedule


@given(step=st.integers(0, 10**6), alpha=st.floats(0, 1), t_end=st.integers(1, 10**6))
def test_drop_fraction_exact_formula(step, alpha, t_end):
    want = alpha / 2 * (1 + np.cos(step * np.pi / t_end))
    assert srigl_ref.drop_fraction(step, alpha, t_end) == want
    assert 0.0 <= srigl_ref.drop_fraction(step, alpha, t_end) <= alpha


def test_drop_fraction_endpoints():
    assert srigl_ref.drop_fraction(0, 0.3, 1000) == 0.3
    assert srigl_ref.drop_fraction(1000, 0.3, 1000) == pytest.approx(0.0, abs=1e-17)
    assert srigl_ref.drop_fraction(500, 0.3, 1000) == pytest.approx(0.15)


@given(delta=st.integers(1, 500), total=st.integers(0, 5000), frac=st.floats(0, 1))
def test_update_steps(delta, total, frac):
    t_end = int(frac * total)
    steps = srigl_ref.update_steps(delta, t_end, total)
    want = [s for s in range(1, total + 1) if s % delta == 0 and s < t_end]
    assert steps.dtype == np.int64 and steps.tolist() == want
    sched = UpdateSchedule.from_total(total, delta=delta, t_end_fraction=frac)
    assert sched.steps.tolist() == want
    assert [s for s in range(total + 2) if sched.is_update(s)] == want


@given(delta=st.integers(1, 50), total=st.integers(0, 500), data=st.data())
def test_dense_grad_steps_precede_each_update(delta, total, data):
    n = data.draw(st.integers(1, delta))
    sched = UpdateSchedule.from_total(total, delta=delta, grad_accumulation_n=n)
    needs = [s for s in range(1, total + 1) if sched.needs_dense_grad(s)]
    want = sorted(s - j for s in sched.steps.tolist() for j in range(n))
    assert needs == want


@pytest.mark.parametrize("args, match", [
    ((-1, 0.3, 10), r"step == -1, must be in \[0, inf\]"),
    ((1, 1.3, 10), r"alpha == 1.3, must be in \[0, 1\]"),
    ((1, 0.3, 0), r"t_end == 0, must be in \[1, inf\]"),
    ((1.5, 0.3, 10), r"step == 1.5, must be an int")])
def test_drop_fraction_bad_input(args, match):
    err = TypeError if "must be an int" in match else ValueError
    with pytest.raises(err, match=match):
        srigl_ref.drop_fraction(*args)


def test_update_steps_bad_input():
    with pytest.raises(ValueError, match=r"delta == 0, must be in \[1, inf\]"):
        srigl_ref.update_steps(0, 10, 100)
    with pytest.raises(ValueError, match=r"grad_accumulation_n == 5, must be in \[1, 4\]"):
        UpdateSchedule(delta=4, t_end=10, alpha=0.3, total_steps=20, grad_accumulation_n=5)
