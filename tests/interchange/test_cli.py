"""``srigl-ref replay | inspect | export``: output and exit codes 0 / 1 / 2."""
import numpy as np
import pytest

from srigl_ref.cli import main
from tests.dst.test_golden import SRIGL
from tests.interchange.conftest import FIXTURES


def test_replay_golden_folder_matches(capsys):
    assert main(["replay", str(SRIGL[0].parent), "--expect"]) == 0
    assert capsys.readouterr().out.strip().endswith("all 34 case(s) match")


def test_replay_file_without_expect_describes_the_update(capsys, tmp_path):
    out = tmp_path / "r.npz"
    assert main(["replay", str(SRIGL[3]), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "srigl update (torch_cpu) done:" in text and "k = " in text
    assert main(["replay", str(out), "--expect", "--tie-break", "torch_cpu"]) == 0


def test_replay_mismatch_exits_1_and_names_position_and_stage(capsys, tmp_path):
    with np.load(SRIGL[1]) as z:
        arrays = {k: z[k] for k in z.files}
    p = int(np.flatnonzero(arrays["mask_out"])[0])
    arrays["mask_out"].flat[p] = False
    np.savez(tmp_path / "c.npz", **arrays)
    assert main(["replay", str(tmp_path / "c.npz"), "--expect"]) == 1
    text = capsys.readouterr().out
    assert f"flat index {p}" in text and "MISMATCH" in text and "stage " in text
    assert main(["replay", str(tmp_path), "--expect"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'c.npz'} [step {int(arrays['step'])}]: MISMATCH "
                               f"stage keep: 1 position of mask_out differs in row ")
    assert "first diverging update" in lines[1]
    assert lines[-1] == f"{tmp_path}: 1 case(s): 0 match, 1 differ (1 at stage keep)"


def test_folder_replay_lists_every_case_with_verdict_and_stage(capsys, tmp_path):
    for i, path in enumerate(SRIGL[:3]):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if i == 1:
            arrays["weight_out"] = -arrays["weight_out"]
        np.savez(tmp_path / f"case_{i}.npz", **arrays)
    assert main(["replay", str(tmp_path), "--expect"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'case_0.npz'} [step {int(np.load(SRIGL[0])['step'])}]: " \
                       f"match"
    assert lines[1].startswith(f"{tmp_path / 'case_1.npz'} [step ")
    assert ": MISMATCH stage weight: weight_out: " in lines[1]
    assert lines[2].endswith(": match")
    assert lines[-1] == f"{tmp_path}: 3 case(s): 2 match, 1 differ (1 at stage weight)"


def test_strict_compares_threshold_and_explain_names_the_deviation(capsys, tmp_path, rng):
    from tests.interchange.test_replay import another_implementation
    with np.load(SRIGL[3]) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["threshold"] = arrays["threshold"] + 1
    np.savez(tmp_path / "t.npz", **arrays)
    assert main(["replay", str(tmp_path / "t.npz"), "--expect"]) == 0
    assert main(["replay", str(tmp_path / "t.npz"), "--strict"]) == 1
    assert "MISMATCH: stage ablation: threshold: file" in capsys.readouterr().out
    path, _ = another_implementation(tmp_path, rng, n_keep_offset=-1)
    assert main(["replay", str(path), "--explain"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: stage count: n_keep: file" in out
    assert "explain: reproduced exactly by the deviation n_keep_offset=-1" in out


def test_stable_replay_of_tied_golden_folder_exits_1(capsys):
    assert main(["replay", str(SRIGL[0].parent), "--expect", "--tie-break", "stable"]) == 1
    assert " differ (" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["replay", "{tmp}/missing.npz"], r"missing\.npz: no such case file"),
    (["replay", "{tmp}/junk.npz"], r"junk\.npz: not a readable \.npz case file"),
    (["replay", "{tmp}/nograd.npz"], r"nograd\.npz: missing key 'grad'"),
    (["replay", "{tmp}"], r"no \.npz case files below this folder"),
    (["inspect", "{tmp}/junk.npz"], r"junk\.npz: not a PyTorch checkpoint"),
    (["inspect", str(FIXTURES / "module.pt")], r"refused global torch\.nn\.modules"),
    (["export", "{tmp}", "--format", "safetensors"],
     r"has no model\.npz \(expected a run folder holding model\.npz, or the file\)"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "junk" in " ".join(argv):
        (tmp_path / "junk.npz").write_bytes(b"garbage")
    if "nograd" in " ".join(argv):
        with np.load(SRIGL[0]) as z:
            np.savez(tmp_path / "nograd.npz", **{k: z[k] for k in z.files if k != "grad"})
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("srigl-ref: error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_inspect_and_export_exit_0(capsys, model_npz):
    assert main(["inspect", str(FIXTURES / "scheduler.pt")]) == 0
    assert "scheduler (dense)" in capsys.readouterr().out
    assert main(["export", str(model_npz.parent), "--format", "pt-compatible-npz"]) == 0
    assert capsys.readouterr().out.startswith("wrote ")
    assert main(["inspect", str(model_npz.parent / "model_pt.npz")]) == 0
    assert "fc1.weight" in capsys.readouterr().out


def test_inspect_accepts_a_run_folder(capsys, model_npz):
    assert main(["inspect", str(model_npz.parent)]) == 0
    assert capsys.readouterr().out.startswith(f"{model_npz}: srigl-ref model.npz")
    assert main(["inspect", str(model_npz.parent / "missing")]) == 2
    assert "does not exist (expected a run folder holding model.npz" in \
        capsys.readouterr().err
