"""Replaying case files: golden cases match, corrupted outputs are diagnosed.

Golden cases are the authors' PyTorch results (tests/golden/README.md): under
``tie_break="torch_cpu"`` every one must replay to a match (strictly: ablated order,
threshold included), under ``"stable"`` the tie-free ones. A deliberately corrupted
expected output must be reported at the corrupted position with the stage that decided
it (docs/interchange.md section 2).
"""
import json

import numpy as np
import pytest

from srigl_ref.interchange import cases, diagnose, replay
from tests.dst.test_golden import RIGL, SRIGL, check_exact

GOLDEN = SRIGL + RIGL


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_golden_case_replays_to_a_match_under_torch_cpu(path):
    r = replay.replay_file(path, strict=True)
    assert r.tie_break == "torch_cpu" and r.compared
    assert r.mismatch is None, r.summary()
    check_exact(np.load(path), r.update)           # the same verdict as tests/dst


@pytest.mark.parametrize("path", [p for p in GOLDEN if not np.load(p)["ties"]],
                         ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_tie_free_golden_case_replays_to_a_match_under_stable(path):
    r = replay.replay_file(path, tie_break="stable", strict=True)
    assert r.mismatch is None, r.summary()


def test_golden_method_is_inferred_from_gamma_sal():
    assert cases.read_case(SRIGL[0]).method == "srigl"
    assert cases.read_case(RIGL[0]).method == "rigl"
    assert cases.read_case(SRIGL[0]).tie_break == "torch_cpu"


@pytest.mark.parametrize("path", SRIGL, ids=lambda p: p.stem)
def test_keep_set_lies_in_the_recomputed_ranking(path):
    """Attribution recomputes our pre-cap keep ranking; the cap only removes from it."""
    case = cases.read_case(path)
    u = replay.run_case(case)
    ranked = diagnose._ranked_keep(case, u, "torch_cpu").reshape(u.kept.shape)
    assert not (u.kept & ~ranked).any()
    rows = ranked.reshape(ranked.shape[0], -1).sum(1)
    kept_rows = u.kept.reshape(ranked.shape[0], -1).sum(1)
    np.testing.assert_array_equal(kept_rows, np.minimum(rows, u.fan_in))


def corrupted(tmp_path, path, **changes):
    """A copy of case ``path`` with some arrays replaced."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    out = tmp_path / f"corrupt_{path.stem}.npz"
    np.savez(out, **arrays)
    return out


def flip(a, p):
    a = a.copy()
    a.flat[p] = not a.flat[p]
    return a


def first_difference(path, strict=False):
    """The diagnosis of ``path``'s replay and its first concrete position."""
    d = replay.replay_file(path, expect=True, strict=strict).mismatch
    assert d is not None
    return d, d.first


def test_mismatch_in_the_keep_set_is_attributed_to_keep(tmp_path):
    path = SRIGL[1]                                  # tie-free, nothing ablated
    d, u = np.load(path), replay.replay_file(path).update
    p = int(np.flatnonzero(u.kept)[7])              # a kept position, active in both
    f = corrupted(tmp_path, path, mask_out=flip(d["mask_out"], p))
    diag, m = first_difference(f)
    F = d["weight"][0].size
    assert diag.stage == "keep" and diag.outputs == ("mask_out",)
    assert (m.key, m.stage, m.index, m.row, m.column) == ("mask_out", "keep", p, p // F,
                                                          p % F)
    assert (m.expected, m.got) == ("inactive", "active")
    assert f"flat index {p}" in m.describe() and "stage keep" in m.describe()
    assert diag.describe().startswith("stage keep: 1 position of mask_out differs in row ")


def test_mismatch_at_a_grown_position_is_attributed_to_grow(tmp_path):
    path = SRIGL[1]
    d, u = np.load(path), replay.replay_file(path).update
    grown = np.flatnonzero(u.mask & ~u.kept)
    assert grown.size
    p = int(grown[0])
    diag, m = first_difference(corrupted(tmp_path, path, mask_out=flip(d["mask_out"], p)))
    assert (diag.stage, m.stage, m.index, m.got) == ("grow", "grow", p, "active")


def test_extra_position_in_expected_mask_inactive_before_is_grow(tmp_path):
    path = SRIGL[1]
    d = np.load(path)
    p = int(np.flatnonzero(~d["mask"] & ~d["mask_out"])[0])
    _, m = first_difference(corrupted(tmp_path, path, mask_out=flip(d["mask_out"], p)))
    assert (m.stage, m.index, m.expected, m.got) == ("grow", p, "active", "inactive")


def test_cap_decided_position_is_attributed_to_cap(tmp_path):
    """A revival case in which the per-neuron cap binds (golden meta: cap_binds)."""
    path = next(p for p in SRIGL if json.loads(np.load(p)["meta"].item())["cap_binds"])
    case = cases.read_case(path)
    u = replay.run_case(case)
    ranked = diagnose._ranked_keep(case, u, "torch_cpu").reshape(u.mask.shape)
    p = int(np.flatnonzero(ranked & ~u.mask)[0])    # ranked in, cut by the cap, not regrown
    _, m = first_difference(corrupted(tmp_path, path,
                                      mask_out=flip(np.load(path)["mask_out"], p)))
    assert (m.stage, m.index, m.expected, m.got) == ("cap", p, "active", "inactive")
    assert "removed by the cap" in m.reason


def test_ablated_order_and_threshold_differ_only_under_strict(tmp_path):
    """Another implementation need not order its ablated list or have our threshold."""
    path = next(p for p in SRIGL if np.load(p)["ablated"].size >= 2)
    d = np.load(path)
    swapped = d["ablated"].copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    f = corrupted(tmp_path, path, ablated=swapped, threshold=d["threshold"] + 1)
    assert replay.replay_file(f, expect=True).mismatch is None
    diag, m = first_difference(f, strict=True)
    assert diag.stage == "ablation" and diag.outputs == ("ablated order", "threshold")
    assert (m.key, m.index, m.expected, m.got) == ("ablated", 0, int(swapped[0]),
                                                  int(d["ablated"][0]))
    assert m.describe().startswith("ablated[0]: expected")
    g = corrupted(tmp_path, path, threshold=d["threshold"] + 1)
    diag, m = first_difference(g, strict=True)
    assert (diag.stage, m.key, m.expected) == ("ablation", "threshold",
                                               int(d["threshold"]) + 1)
    assert diag.headline.startswith(f"threshold: file {int(d['threshold']) + 1}, srigl-ref")


def test_ablated_set_difference_is_the_ablation_stage(tmp_path):
    path = next(p for p in SRIGL if np.load(p)["ablated"].size >= 1)
    d = np.load(path)
    gone = int(d["ablated"][0])
    revived = next(i for i in range(d["weight"].shape[0]) if i not in d["ablated"])
    f = corrupted(tmp_path, path, ablated=np.array(sorted({*d["ablated"].tolist(), revived}
                                                          - {gone}), np.int64))
    diag, m = first_difference(f)
    assert diag.stage == "ablation" and diag.outputs == ("ablated",)
    assert (m.key, m.row) == ("ablated", min(gone, revived))
    assert f"only in file [{revived}]" in diag.headline
    assert f"only in srigl-ref [{gone}]" in diag.headline


def test_fan_in_difference_is_the_fan_in_stage(tmp_path):
    path = SRIGL[3]
    d = np.load(path)
    diag, m = first_difference(corrupted(tmp_path, path, k_out=d["k_out"] + 1))
    assert (diag.stage, m.key, m.expected, m.got) == ("fan_in", "k_out", int(d["k_out"]) + 1,
                                                      int(d["k_out"]))
    assert diag.headline == f"k: file {int(d['k_out']) + 1}, srigl-ref {int(d['k_out'])}"


def test_signed_zero_is_a_weight_stage_mismatch(tmp_path):
    path = SRIGL[1]
    d = np.load(path)
    w = d["weight_out"].copy()
    p = int(np.flatnonzero(~d["mask_out"])[0])
    w.flat[p] = -0.0 if np.signbit(w.flat[p]) == 0 else 0.0
    diag, m = first_difference(corrupted(tmp_path, path, weight_out=w))
    assert diag.stage == "weight" and diag.outputs == ("weight_out",)
    assert (m.key, m.stage, m.index) == ("weight_out", "weight", p)
    assert {m.expected, m.got} == {"-0.0", "0.0"}


def test_momentum_difference_is_a_momentum_stage_mismatch(tmp_path):
    path = RIGL[0]
    d = np.load(path)
    mom = d["momentum_out"].copy()
    p = int(np.flatnonzero(d["mask_out"])[3])
    mom.flat[p] += 1.0
    diag, m = first_difference(corrupted(tmp_path, path, momentum_out=mom))
    assert diag.stage == "momentum"
    assert (m.key, m.stage, m.index) == ("momentum_out", "momentum", p)


def test_result_written_with_out_replays_to_a_match(tmp_path):
    path = SRIGL[-1]
    out = tmp_path / "result.npz"
    first = replay.replay_file(path, tie_break="stable", expect=False, out=out)
    assert not first.compared and first.mismatch is None
    case = cases.read_case(out)
    assert (case.method, case.tie_break) == ("srigl", "stable")
    np.testing.assert_array_equal(case.arrays["kept"], first.update.kept)
    assert case.meta == json.loads(np.load(path)["meta"].item())
    again = replay.replay_file(out, expect=True)
    assert again.mismatch is None and again.tie_break == "stable"


def test_directory_of_golden_cases_replays_in_path_order():
    results = list(replay.replay_dir(SRIGL[0].parent))
    assert [r.case.path for r in results] == [str(p) for p in SRIGL]
    assert all(r.mismatch is None for r in results)


@pytest.mark.parametrize("change, message", [
    (dict(drop="grad"), r"missing key 'grad' \(required for a srigl case"),
    (dict(drop="weight"), r"missing key 'weight'"),
    (dict(mask=np.zeros((2, 2), np.bool_)), r"key 'mask' has dtype bool and shape \(2, 2\), "
                                            r"must be bool of shape"),
    (dict(grad=np.zeros((33, 11), np.float64)), r"key 'grad' has dtype float64 .* must be "
                                                r"float32"),
    (dict(sparsity=np.float32(0.5)), r"key 'sparsity' has dtype float32 .* must be float64"),
    (dict(method=np.array("magic")), r"key 'method' == 'magic', must be one of"),
    (dict(tie_break=np.array("random")), r"key 'tie_break' == 'random'"),
    (dict(meta=np.array("{not json")), r"key 'meta' is not valid JSON"),
    (dict(drop="weight_out"), r"missing key 'weight_out' \(mask_out is present"),
])
def test_bad_case_files_are_refused_naming_file_and_key(tmp_path, change, message):
    with np.load(SRIGL[0]) as z:
        arrays = {k: z[k] for k in z.files}
    drop = change.pop("drop", None)
    arrays.pop(drop, None)
    arrays.update(change)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"bad\.npz: {message}"):
        cases.read_case(path)


def test_missing_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.npz: no such case file"):
        cases.read_case(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"junk\.npz: not a readable \.npz case file"):
        cases.read_case(tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", weight=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz: not a readable \.npz case file"):
        cases.read_case(tmp_path / "obj.npz")


def test_expect_without_outputs_is_an_error(tmp_path):
    with np.load(RIGL[0]) as z:
        arrays = {k: z[k] for k in z.files if not k.endswith("_out")}
    np.savez(tmp_path / "inputs.npz", **arrays)
    assert replay.replay_file(tmp_path / "inputs.npz", expect=False).mismatch is None
    with pytest.raises(ValueError, match=r"inputs\.npz: no stored outputs"):
        replay.replay_file(tmp_path / "inputs.npz", expect=True)


def another_implementation(tmp_path, rng, name="other.npz", *, keys=("mask_out",
                           "weight_out", "momentum_out"), **deviation):
    """A case file as another SRigL would write it: the reference with ``deviation``,
    stored with only ``keys`` among the outputs (no threshold, order or keep set)."""
    from srigl_ref.dst import reference
    from tests.interchange.conftest import make_layer
    weight, mask, grad, momentum = make_layer(rng, (24, 40), 0.9, dead_rows=(2, 5, 9))
    u = reference.srigl_update(weight, mask, grad, sparsity=0.9, drop_fraction=0.3,
                               gamma_sal=0.3, momentum=momentum, **deviation)
    outputs = dict(mask_out=u.mask, weight_out=u.weight, momentum_out=u.momentum,
                   ablated=u.ablated, k_out=np.int64(u.fan_in), kept=u.kept)
    path = tmp_path / name
    np.savez(path, method=np.array("srigl"), tie_break=np.array("stable"), weight=weight,
             mask=mask, grad=grad, momentum=momentum, drop_fraction=np.float64(0.3),
             sparsity=np.float64(0.9), gamma_sal=np.float64(0.3),
             dynamic_ablation=np.bool_(True), ablation_exempt=np.bool_(False),
             use_sparse_const_fan_in_for_ablation=np.bool_(True),
             **{k: outputs[k] for k in keys})
    return path, u


def test_outputs_without_threshold_order_or_kept_replay_to_a_match(tmp_path, rng):
    path, _ = another_implementation(tmp_path, rng)
    r = replay.replay_file(path, expect=True)
    assert r.mismatch is None, r.summary()


def test_one_weight_drop_count_difference_is_reported_as_n_keep(tmp_path, rng):
    path, u = another_implementation(tmp_path, rng, n_keep_offset=-1)
    n_keep = u.n_keep + 1                           # the authors' count, one more
    n_prune = int(np.load(path)["mask"].sum()) - n_keep
    diag = replay.replay_file(path, expect=True).mismatch
    assert diag.stage == "count"
    assert diag.headline.startswith(f"n_keep: file {n_keep - 1}, srigl-ref {n_keep} (n_prune: "
                                    f"file {n_prune + 1}, srigl-ref {n_prune};")
    assert diag.first.stage == "count" and diag.first.key == "mask_out"
    assert f"ranked {n_keep} by |W|" in diag.first.reason
    assert diag.describe().startswith("stage count: n_keep: file")


@pytest.mark.parametrize("deviation, stage", [
    (dict(redistribute_fan_in=False), "fan_in"), (dict(reinit_grown=False), "weight"),
    (dict(mask_momentum=False), "momentum")])
def test_deviant_outputs_are_named_by_stage(tmp_path, rng, deviation, stage):
    """(Ablation deviations need special states: tests/test_testing.py generates them.)"""
    path, _ = another_implementation(tmp_path, rng, keys=("mask_out", "weight_out",
                                                           "momentum_out", "ablated"),
                                     **deviation)
    diag = replay.replay_file(path, expect=True).mismatch
    assert diag is not None and diag.stage == stage, diag and diag.describe()
    assert f"stage {stage}" in diag.describe()


def test_the_files_count_is_read_from_its_keep_set_when_stored(tmp_path, rng):
    path, u = another_implementation(tmp_path, rng, keys=("mask_out", "weight_out", "kept"),
                                     n_keep_offset=1)
    diag = replay.replay_file(path, expect=True).mismatch
    assert diag.stage == "count"
    assert diag.headline.startswith(f"n_keep: file {u.n_keep}, srigl-ref {u.n_keep - 1} ")
    assert diag.headline.endswith("file count from its kept set)")
