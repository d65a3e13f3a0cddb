"""The worked example of docs/algorithm.md §12, step by step, with the values it shows.

Every literal below appears in the document; if a step's result changes, the document is
wrong and this test says where.
"""
import numpy as np

import srigl_ref
from srigl_ref.dst import reference

# docs/algorithm.md §12: "The layer"
WEIGHT = np.array([[0.3, 0.0, -0.9, 0.8, 0.0, 0.7],
                   [0.0, 0.6, -0.2, 0.0, 0.1, -0.4],
                   [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                   [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)      # [4, 6] float32
MASK = WEIGHT != 0                                                   # [4, 6] bool
GRAD = np.array([[0.05, -0.65, 0.10, 0.02, 0.15, -0.03],
                 [0.12, 0.04, -0.08, 0.20, 0.06, -0.85],
                 [0.30, 0.95, -0.25, 0.01, -0.75, 0.09],
                 [0.07, -0.11, 0.14, 0.13, -0.16, 0.18]], np.float32)  # [4, 6] float32
SPARSITY, DROP_FRACTION, GAMMA_SAL = 0.65, 0.5, 0.3


def positions(a):
    """Active positions of a bool [out, F] array as sorted (row, column) pairs."""
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(a))]


def test_worked_example_step_by_step():
    budget = srigl_ref.fan_in_budget(WEIGHT.shape, SPARSITY)
    assert budget == 8
    assert MASK.sum(axis=1).tolist() == [4, 4, 0, 0]                 # k = 8 // 2 before

    # 6.1-6.2 counts
    counts = reference.prune_keep_counts(MASK, WEIGHT, DROP_FRACTION)
    assert counts == (8, 4, 4)                                       # n_ones, n_prune, n_keep
    weight_score, grad_score = np.abs(WEIGHT), np.abs(GRAD)

    # 6.3 ablation (section 7)
    assert positions(reference.top_n(weight_score, 4)) == [(0, 2), (0, 3), (0, 5), (1, 1)]
    assert positions(reference.top_n(grad_score, 4)) == [(0, 1), (1, 5), (2, 1), (2, 4)]
    salient = reference.salient_counts(weight_score, grad_score, counts.n_keep,
                                       counts.n_prune)
    assert salient.tolist() == [4, 2, 2, 0]
    threshold = reference.salient_threshold(GAMMA_SAL, budget, counts.n_ones, (4, 6))
    assert threshold == 1
    assert budget // 6 == 1                                          # keep-alive rank
    ablation = reference.ablate_neurons(salient, threshold, budget // 6)
    assert ablation.ablated.tolist() == [3] and ablation.threshold == 1

    # 6.4 fan-in
    k = reference.fan_in_after_ablation(budget, WEIGHT.shape, 1, SPARSITY)
    assert k == 2

    # 6.5 keep set and cap
    keep = reference.keep_set(weight_score, counts.n_keep, ablation.ablated)
    assert positions(keep) == [(0, 2), (0, 3), (0, 5), (1, 1)]
    kept = reference.cap_rows(keep, k)
    assert positions(kept) == [(0, 2), (0, 3), (1, 1)]

    # 6.6 regrowth
    grown = reference.regrow_rows(kept, grad_score, ablation.ablated, k)
    assert positions(grown) == [(1, 5), (2, 1), (2, 4)]

    # 6.7-6.8 the new layer
    new = reference.apply_new_mask(WEIGHT, MASK, kept, grown, 0.0, None)
    assert positions(new.mask) == [(0, 2), (0, 3), (1, 1), (1, 5), (2, 1), (2, 4)]
    assert positions(MASK & ~new.mask) == [(0, 0), (0, 5), (1, 2), (1, 4)]   # pruned
    want = np.array([[0, 0, -0.9, 0.8, 0, 0],
                     [0, 0.6, -0.0, 0, 0, -0.4],
                     [0, 0, 0, 0, 0, 0],
                     [0, 0, 0, 0, 0, 0]], np.float32)
    assert new.weight.tobytes() == want.tobytes()                    # -0.0 at (1, 2)
    assert np.signbit(new.weight[1, 2]) and not np.signbit(new.weight[2, 1])
    assert (new.n_pruned, new.n_grown) == (4, 2)
    assert new.mask.sum(axis=1).tolist() == [2, 2, 2, 0]


def test_worked_example_is_one_update_in_both_implementations():
    kwargs = dict(sparsity=SPARSITY, drop_fraction=DROP_FRACTION, gamma_sal=GAMMA_SAL)
    for update in (reference.srigl_update, srigl_ref.srigl_update):
        u = update(WEIGHT, MASK, GRAD, **kwargs)
        assert positions(u.mask) == [(0, 2), (0, 3), (1, 1), (1, 5), (2, 1), (2, 4)]
        assert positions(u.kept) == [(0, 2), (0, 3), (1, 1)]
        assert u.ablated.tolist() == [3] and u.fan_in == 2 and u.threshold == 1
        assert (u.n_pruned, u.n_grown) == (4, 2)
        assert u.weight[1, 5] == np.float32(-0.4)                    # regrown, value kept
