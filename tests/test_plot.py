"""``srigl-ref plot``: the figures of a run, and the mask tiles they are drawn from."""
import sys

import numpy as np
import pytest

from srigl_ref import checkpoint, cli
from srigl_ref.plot import PLOT_FILES, _tiles, plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short SRigL run on synthetic data at a density where neurons get ablated."""
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--dataset", "synthetic", "--model", "mlp", "--hidden", "64",
                     "--density", "0.02", "--gamma-sal", "0.5", "--epochs", "2",
                     "--delta", "10", "--out", str(out)])
    assert code == 0
    return out


def test_plot_writes_every_figure(run_dir):
    pytest.importorskip("matplotlib")
    written = plot_run(run_dir)
    assert [p.name for p in written] == list(PLOT_FILES)
    for path in written:
        assert path.parent == run_dir / "plots"
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 5000, f"{path.name} is suspiciously small"
    assert len({p.read_bytes() for p in written}) == len(written)


def test_plot_cli(run_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(run_dir), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOT_FILES)
    assert f"wrote {tmp_path / 'itop.png'}" in capsys.readouterr().out


def test_plot_bad_run_dir(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err
    assert cli.main(["plot", str(tmp_path)]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_plot_without_matplotlib(run_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import fails
    assert cli.main(["plot", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'srigl-ref[plot]'" in err


def test_run_records_the_initial_masks(run_dir):
    ckpt = checkpoint.load_checkpoint(run_dir / "model.npz")
    assert list(ckpt.initial_masks) == ckpt.meta["sparse_names"]
    for name, m0 in ckpt.initial_masks.items():
        assert m0.dtype == np.bool_ and m0.shape == ckpt.masks[name].shape
        rows = m0.reshape(m0.shape[0], -1).sum(axis=1)
        assert (rows == rows[0]).all() and rows[0] > 0         # constant fan-in at init
    first = ckpt.meta["sparse_names"][0]
    assert (ckpt.initial_masks[first] != ckpt.masks[first]).any()   # the topology moved


def test_tiles_put_each_input_at_its_pixel():
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 2 * 4 * 3), np.bool_)                  # input (C=2, H=4, W=3)
    picks = rng.integers(0, mask.shape[1], size=5)
    mask[np.arange(5), picks] = True
    tiles = _tiles(mask, (2, 4, 3))                             # [5, 4, 2*3]
    assert tiles.shape == (5, 4, 6)
    for n, flat in enumerate(picks):
        c, h, w = np.unravel_index(flat, (2, 4, 3))
        assert np.argwhere(tiles[n]).tolist() == [[h, c * 3 + w]]


def test_tiles_of_a_conv_mask_show_kernels_side_by_side():
    mask = np.zeros((3, 2, 5, 5), np.bool_)                     # [out, C_in, kh, kw]
    mask[1, 1, 2, 4] = True
    tiles = _tiles(mask, None)
    assert tiles.shape == (3, 5, 10)
    assert np.argwhere(tiles).tolist() == [[1, 2, 9]]


def test_tiles_of_an_unshaped_layer_pad_to_a_square():
    mask = np.ones((2, 10), np.bool_)
    tiles = _tiles(mask, None)
    assert tiles.shape == (2, 4, 4) and tiles.sum() == 20
