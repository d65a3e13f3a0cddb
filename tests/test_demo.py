"""``srigl-ref demo``: the stage-by-stage text agrees with the update it explains."""
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from srigl_ref import cli, srigl_update
from srigl_ref.demo import demo, random_layer


def test_demo_walks_through_every_stage(capsys):
    assert cli.main(["demo", "--shape", "8x16", "--seed", "0"]) == 0
    text = capsys.readouterr().out
    for stage in ("mask before the update", "step 1-2  counts", "step 3  salient positions",
                  "step 4  fan-in after ablation", "step 5  keep set",
                  "step 6-8  per-row regrowth"):
        assert stage in text
    assert text.rstrip().endswith("give the same mask and ablated set: yes")


@settings(max_examples=25, deadline=None)
@given(out=st.integers(2, 12), fan=st.integers(4, 40),
       sparsity=st.sampled_from([0.5, 0.75, 0.9]), df=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
       gamma=st.sampled_from([0.0, 0.3, 0.9, 2.0]), seed=st.integers(0, 1000))
@example(out=2, fan=4, sparsity=0.75, df=0.6, gamma=0.0, seed=0)     # gamma 0: no ablation
def test_demo_counts_equal_the_fast_update(out, fan, sparsity, df, gamma, seed):
    shape = (out, fan)
    if (fan * out * (1 - sparsity)) // out < 1:                      # k == 0: refused
        with pytest.raises(ValueError, match="k == 0"):
            demo(f"{out}x{fan}", sparsity, df, gamma, seed)
        return
    text = demo(f"{out}x{fan}", sparsity, df, gamma, seed)
    weight, mask, grad = random_layer(shape, sparsity, np.random.default_rng(seed))
    u = srigl_update(weight, mask, grad, sparsity=sparsity, drop_fraction=df, gamma_sal=gamma)
    result = re.search(r"result: (\d+) pruned, (\d+) grown, (\d+) ablated, (\d+) revived; "
                       r"k (\d+) -> (\d+); active (\d+)", text)
    assert result is not None, text
    pruned, grown, ablated, _, _, k, active = map(int, result.groups())
    assert (pruned, grown, ablated, k, active) == (u.n_pruned, u.n_grown, u.ablated.size,
                                                   u.fan_in, int(u.mask.sum()))
    assert re.search(rf"ablated neurons \(rank order\): \[{', '.join(map(str, u.ablated))}\]",
                     text)
    assert f"n_keep = {u.n_keep} " in text
    assert text.rstrip().endswith(": yes")
    drawn = [line.split()[1] for line in text.split("step 6-8")[1].splitlines()[1:out + 1]]
    new_mask = np.array([[c in "#o+" for c in row] for row in drawn])
    assert np.array_equal(new_mask, u.mask)


@pytest.mark.parametrize("args, message", [
    (["--shape", "8"], r"--shape == '8', must be OUTxIN"),
    (["--shape", "65x8"], r"--shape OUT == 65, must be in \[1, 64\]"),
    (["--sparsity", "1"], r"--sparsity == 1.0, must be in \[0, 1\)"),
    (["--drop-fraction", "-0.1"], r"--drop-fraction == -0.1, must be in \[0, 1\]"),
    (["--gamma-sal", "-1"], r"--gamma-sal == -1.0, must be in \[0, inf\]"),
])
def test_demo_bad_arguments(args, message, capsys):
    assert cli.main(["demo", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
