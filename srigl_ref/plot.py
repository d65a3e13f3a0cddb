"""Figures of a finished run: ``srigl-ref plot RUN_DIR`` writes PNGs into ``RUN_DIR/plots/``.

Everything is read from the run's files (``metrics.jsonl``, ``summary.json``, ``model.npz``);
nothing is recomputed by training. matplotlib is the optional extra ``plot``
(``pip install 'srigl-ref[plot]'``).

Figures
-------
- ``learning_curves.png``: train/test accuracy and loss per epoch.
- ``topology_updates.png``: per topology update and sparse layer: pruned, grown, ablated and
  revived counts, and the drop fraction (docs/algorithm.md §5, §6).
- ``structure.png``: fan-in ``k`` and active neurons per layer over training (§3, §7).
- ``itop.png``: the in-time over-parameterisation rate (fraction of positions ever active).
- ``first_layer_masks.png``: the first sparse layer's mask, one tile per neuron, at the start
  and the end of training; for a fully connected first layer each tile is the neuron's
  receptive field reshaped to the input image, for a conv layer its ``(C_in, kh, kw)``
  kernel. Ablated neurons are marked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint

PLOT_FILES = ("learning_curves.png", "topology_updates.png", "structure.png", "itop.png",
              "first_layer_masks.png")
_MAX_TILES = 64


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or a one-line ImportError."""
    try:
        import matplotlib
    except ImportError:
        msg = "srigl-ref plot needs matplotlib: pip install 'srigl-ref[plot]'"
        raise ImportError(msg) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_run(run_dir, out_dir=None) -> list[Path]:
    """Write the figures of the run in ``run_dir``; returns the paths written.

    Parameters
    ----------
    run_dir : path
        A run folder holding ``metrics.jsonl``, ``summary.json`` and ``model.npz``.
    out_dir : path, optional
        Where to write the PNGs (default ``run_dir / "plots"``, created if needed).

    Raises
    ------
    ValueError
        A missing or invalid run file, or a run without any epoch record.
    ImportError
        matplotlib is not installed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"RUN_DIR == '{run_dir}' is not a folder (a run folder written by "
                         f"srigl-ref train)")
    records = checkpoint.read_metrics(checkpoint.run_file(run_dir, "metrics.jsonl"))
    summary = checkpoint.read_summary(checkpoint.run_file(run_dir, "summary.json"))
    ckpt = checkpoint.load_checkpoint(checkpoint.run_file(run_dir, "model.npz"))
    epochs = [r for r in records if r.get("kind") == "epoch"]
    updates = [r for r in records if r.get("kind") == "update"]
    if not epochs:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} has no epoch record; nothing to plot")
    plt = _pyplot()
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    title = (f"{summary['method']} on {summary['config']['dataset']} "
             f"({summary['config']['model']}), density {summary['target_density']}, "
             f"seed {summary['config']['seed']}")
    figures = {
        "learning_curves.png": _learning_curves(plt, epochs),
        "topology_updates.png": _topology_updates(plt, updates),
        "structure.png": _structure(plt, epochs, updates, summary),
        "itop.png": _itop(plt, epochs),
        "first_layer_masks.png": _first_layer_masks(plt, ckpt, summary),
    }
    written = []
    for name, fig in figures.items():
        fig.suptitle(title, fontsize=9)
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _learning_curves(plt, epochs):
    e = [r["epoch"] for r in epochs]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for split, style in (("train", "--"), ("test", "-")):
        ax_acc.plot(e, [r[f"{split}_accuracy"] for r in epochs], style, marker="o", label=split)
        ax_loss.plot(e, [r[f"{split}_loss"] for r in epochs], style, marker="o", label=split)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    for ax in (ax_acc, ax_loss):
        ax.legend()
        ax.grid(alpha=0.3)
    return fig


def _layer_series(updates, key) -> dict[str, list]:
    """``{layer name: [record[key] at every update]}``."""
    series: dict[str, list] = {}
    for r in updates:
        for layer in r["layers"]:
            series.setdefault(layer["name"], []).append(layer[key])
    return series


def _topology_updates(plt, updates):
    keys = ("n_pruned", "n_grown", "n_ablated", "n_revived")
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(15, 3.4), layout="constrained")
    steps = [r["step"] for r in updates]
    for ax, key in zip(axes, keys):
        for name, values in _layer_series(updates, key).items():
            ax.plot(steps, values, marker=".", label=name)
        ax.set(xlabel="step", title=key.removeprefix("n_") + (" neurons" if key in (
            "n_ablated", "n_revived") else " weights"))
        ax.grid(alpha=0.3)
    axes[-1].plot(steps, [r["drop_fraction"] for r in updates], marker=".", color="k")
    axes[-1].set(xlabel="step", title="drop fraction")
    axes[-1].grid(alpha=0.3)
    if updates:
        axes[0].legend(fontsize=7)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no topology update\nin this run", ha="center", va="center",
                    transform=ax.transAxes)
    return fig


def _structure(plt, epochs, updates, summary):
    """Fan-in and active neurons: at every epoch end, and after every update."""
    fig, (ax_k, ax_n) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    n_out = {layer["name"]: layer["shape"][0] for layer in summary["layers"]}
    points: dict[str, list] = {}
    for r in sorted(epochs + updates, key=lambda r: (r["step"], r["kind"] == "epoch")):
        for layer in r["layers"]:
            active = layer.get("n_active_neurons", n_out[layer["name"]] - layer["n_ablated"])
            points.setdefault(layer["name"], []).append((r["step"], layer["fan_in"], active))
    for name, p in points.items():
        steps, k, active = zip(*p)
        ax_k.plot(steps, k, marker=".", label=name)
        ax_n.plot(steps, active, marker=".", label=name)
    ax_k.set(xlabel="step", ylabel="k (active inputs per neuron)", title="fan-in k")
    ax_n.set(xlabel="step", ylabel="neurons", title="active neurons")
    for ax in (ax_k, ax_n):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return fig


def _itop(plt, epochs):
    fig, ax = plt.subplots(figsize=(4.5, 3.4), layout="constrained")
    ax.plot([r["epoch"] for r in epochs], [r["itop_rate"] for r in epochs], marker="o")
    ax.set(xlabel="epoch", ylabel="fraction of positions ever active", title="ITOP rate",
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return fig


def _tiles(mask: np.ndarray, input_shape) -> np.ndarray:
    """One 2-D image per neuron: ``[out, H, W]`` bool.

    A fully connected layer whose fan-in equals the input size shows each neuron's inputs
    in the input image's layout (channels side by side); a conv layer shows its kernel
    (channels side by side); anything else is shown as a near-square block of inputs.
    """
    out = mask.shape[0]
    if mask.ndim == 4:                                   # [out, C_in, kh, kw]
        _, c, h, w = mask.shape
        return mask.transpose(0, 2, 1, 3).reshape(out, h, c * w)
    fan_in = mask.shape[1]
    if input_shape is not None and int(np.prod(input_shape)) == fan_in and len(input_shape) == 3:
        c, h, w = input_shape
        return mask.reshape(out, c, h, w).transpose(0, 2, 1, 3).reshape(out, h, c * w)
    side = int(np.ceil(np.sqrt(fan_in)))
    padded = np.zeros((out, side * side), np.bool_)
    padded[:, :fan_in] = mask
    return padded.reshape(out, side, side)


def _first_layer_masks(plt, ckpt: checkpoint.Checkpoint, summary):
    name = ckpt.meta["sparse_names"][0]
    start = ckpt.initial_masks.get(name)
    end = ckpt.masks[name]
    input_shape = summary["config"].get("input_shape") or _guess_input_shape(end)
    panels = [("end of training", end)] if start is None else [("start", start),
                                                               ("end of training", end)]
    n_show = min(end.shape[0], _MAX_TILES)
    cols = int(np.ceil(np.sqrt(n_show)))
    rows = int(np.ceil(n_show / cols))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6),
                             layout="constrained", squeeze=False)
    for ax, (label, mask) in zip(axes[0], panels):
        tiles = _tiles(mask[:n_show], input_shape).astype(np.float32)     # [n, h, w]
        _, h, w = tiles.shape
        ablated = ~mask[:n_show].reshape(n_show, -1).any(axis=1)
        tiles[ablated] = 0.5                                              # grey: ablated
        grid = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1), np.float32) * 0.25
        for t in range(n_show):
            r, c = divmod(t, cols)
            grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = tiles[t]
        ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{name} mask, {label}: neurons 0-{n_show - 1} of {mask.shape[0]}, "
                     f"{int(ablated.sum())} ablated (grey)", fontsize=8)
        ax.axis("off")
    if start is None:
        axes[0][0].text(0.5, -0.04, "the initial mask is not recorded in this model.npz",
                        ha="center", transform=axes[0][0].transAxes, fontsize=8)
    return fig


def _guess_input_shape(mask: np.ndarray):
    """``(1, s, s)`` when a dense layer's fan-in is a perfect square, else None."""
    if mask.ndim != 2:
        return None
    side = int(round(np.sqrt(mask.shape[1])))
    return (1, side, side) if side * side == mask.shape[1] else None
