"""Layer reports for every mask convention, and the export for PyTorch users."""
import json
import re

import numpy as np
import pytest

from srigl_ref import checkpoint
from srigl_ref.interchange import export, inspect, layers, safetensors
from tests.interchange.conftest import FIXTURES

EXPECTED = np.load(FIXTURES / "expected.npz")


@pytest.mark.parametrize("stem, convention", [("plain", "nonzero"), ("prune", "prune"),
                                              ("parametrize", "parametrize")])
def test_each_convention_gives_the_same_report(stem, convention):
    fmt, reports = inspect.inspect_file(FIXTURES / f"{stem}.pt")
    assert fmt == "torch"
    first, second = reports
    assert (first.name, first.shape, first.convention) == ("0.weight", (8, 12), convention)
    assert first.constant and first.fan_in == 3 and first.ablated.tolist() == [2, 5]
    assert first.density == pytest.approx(18 / 96)
    assert not second.constant and second.fan_in == -1
    assert (second.first_bad_row, second.first_bad_count, second.reference_count) == (1, 2, 3)


def test_prune_layer_weight_is_orig_times_mask():
    _, found = layers.load_layers(FIXTURES / "prune.pt")
    orig, mask = EXPECTED["prune/0.weight_orig"], EXPECTED["prune/0.weight_mask"]
    np.testing.assert_array_equal(found[0].mask, mask == 1)
    np.testing.assert_array_equal(found[0].weight, orig * mask)


def test_scheduler_masks_pair_with_weights_in_module_order():
    _, reports = inspect.inspect_file(FIXTURES / "scheduler.pt")
    assert [(r.name, r.shape, r.convention) for r in reports] == [
        ("0.weight", (4, 1, 3, 3), "scheduler"), ("2.weight", (6, 36), "scheduler (dense)"),
        ("3.weight", (3, 6), "scheduler")]
    conv, dense, last = reports
    assert conv.fan_in == 5 and conv.ablated.tolist() == [3]
    assert dense.density == 1.0 and last.fan_in == 2


def test_scheduler_mask_count_must_match(tmp_path):
    state = {"a.weight": np.ones((2, 3), np.float32), "b.weight": np.ones((2, 2), np.float32)}
    with pytest.raises(ValueError, match=r"f\.pt: the scheduler's backward_masks has 1 "
                                         r"entries, but the state dict has 2 weights"):
        layers.state_dict_layers(state, path="f.pt", masks=[None])
    with pytest.raises(ValueError, match=r"mask 'backward_masks\[0\]' has shape \(3,\), must be"):
        layers.state_dict_layers(state, path="f.pt", masks=[np.ones(3, bool), None])
    bad = dict(state, **{"c.weight_orig": np.ones((2, 2)), "c.weight_mask": np.full((2, 2), 2.)})
    with pytest.raises(ValueError, match=r"mask 'c\.weight_mask' has values other than 0 and 1"):
        layers.state_dict_layers(bad, path="f.pt")


def test_checkpoint_without_a_state_dict_is_refused():
    with pytest.raises(ValueError, match=r"x\.pt: no state dict: expected a dict of tensors"):
        layers.find_state({"epoch": 3, "cfg": {"lr": 0.1}}, path="x.pt")


def test_our_model_npz_is_inspected(model_npz):
    fmt, reports = inspect.inspect_file(model_npz)
    assert fmt == "srigl-ref model.npz"
    fc1, fc2 = reports
    assert (fc1.name, fc1.fan_in, fc1.ablated.tolist(), fc1.convention) == (
        "fc1.weight", 4, [4], "srigl-ref")
    assert fc2.fan_in == 4 and fc2.ablated.size == 0


@pytest.mark.parametrize("fmt, name", [("safetensors", "model.safetensors"),
                                       ("pt-compatible-npz", "model_pt.npz")])
def test_export_uses_prune_names_and_round_trips(model_npz, fmt, name):
    out = export.export_model(model_npz.parent, format=fmt)
    assert out == model_npz.parent / name
    ckpt = checkpoint.load_checkpoint(model_npz)
    if fmt == "safetensors":
        state, meta = safetensors.read_safetensors(out)
        assert json.loads(meta["srigl_ref.sparse_names"]) == ["fc1.weight", "fc2.weight"]
        assert meta["format"] == "pt"
    else:
        state = dict(np.load(out))
    assert list(state) == ["fc1.weight_orig", "fc1.weight_mask", "fc1.bias",
                           "fc2.weight_orig", "fc2.weight_mask", "fc2.bias"]
    for n in ("fc1", "fc2"):
        assert state[f"{n}.weight_mask"].dtype == np.float32            # as prune stores it
        np.testing.assert_array_equal(state[f"{n}.weight_mask"] == 1, ckpt.masks[f"{n}.weight"])
        np.testing.assert_array_equal(state[f"{n}.weight_orig"], ckpt.params[f"{n}.weight"])
        np.testing.assert_array_equal(state[f"{n}.bias"], ckpt.params[f"{n}.bias"])
    _, reports = inspect.inspect_file(out)
    assert [(r.name, r.fan_in, r.ablated.tolist(), r.convention) for r in reports] == [
        ("fc1.weight", 4, [4], "prune"), ("fc2.weight", 4, [], "prune")]


def test_export_errors(tmp_path, model_npz):
    with pytest.raises(ValueError, match=r"format == 'onnx', must be one of"):
        export.export_model(model_npz, format="onnx")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} has no model.npz (expected a "
                                                   f"run folder")):
        export.export_model(tmp_path, format="safetensors")


def test_format_reports_is_one_line_per_layer():
    fmt, reports = inspect.inspect_file(FIXTURES / "plain.pt")
    text = inspect.format_reports("plain.pt", fmt, reports)
    lines = text.splitlines()
    assert lines[0] == "plain.pt: torch, 2 layer(s) with a weight of ndim >= 2"
    assert "k=3" in lines[2] and "2 [2, 5]" in lines[2]
    assert "row 1 has 2, first active row has 3" in lines[3]
    assert "mask from nonzero" in lines[4]
