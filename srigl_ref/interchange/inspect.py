"""Per-layer reports of a checkpoint: shape, density, constant fan-in, ablated neurons.

``srigl-ref inspect FILE`` prints :func:`format_reports` of :func:`inspect_file`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import SparseLayer, load_layers


@dataclass(frozen=True)
class LayerReport:
    """What SRigL promises about one layer's mask, checked.

    Attributes
    ----------
    name : str
    shape : tuple of int
    density : float
        Active fraction of the mask.
    fan_in : int
        The constant fan-in ``k`` if every non-empty row has the same count (0 if every
        row is empty), else -1.
    ablated : ndarray of int64
        Empty rows (neurons with no active weight), ascending.
    first_bad_row : int
        First non-empty row whose count differs from the first non-empty row's; -1 if none.
    first_bad_count, reference_count : int
        That row's count and the first non-empty row's (-1 if constant).
    convention : str
        Where the mask came from (see :mod:`.layers`).
    """
    name: str
    shape: tuple
    density: float
    fan_in: int
    ablated: np.ndarray
    first_bad_row: int
    first_bad_count: int
    reference_count: int
    convention: str

    @property
    def constant(self) -> bool:
        return self.first_bad_row < 0


def layer_report(layer: SparseLayer) -> LayerReport:
    """Report on one layer (the checks of ``check_constant_fan_in``, without raising).

    Parameters
    ----------
    layer : SparseLayer
        ``mask`` bool of shape (out, ...), ndim >= 2.

    Returns
    -------
    LayerReport
    """
    m = layer.mask
    counts = np.count_nonzero(m.reshape(m.shape[0], -1), axis=1)     # [out] int
    active = np.flatnonzero(counts)
    ablated = np.flatnonzero(counts == 0).astype(np.int64)
    bad_row = bad_count = ref = -1
    k = 0
    if active.size:
        k = int(counts[active[0]])
        bad = active[counts[active] != k]
        if bad.size:
            bad_row, bad_count, ref, k = int(bad[0]), int(counts[bad[0]]), k, -1
    return LayerReport(layer.name, tuple(m.shape), float(m.mean()), k, ablated, bad_row,
                       bad_count, ref, layer.convention)


def inspect_file(path) -> tuple[str, list[LayerReport]]:
    """Format and per-layer reports of a checkpoint (``model.npz``, ``.pt``, ...).

    Raises
    ------
    ValueError
        As :func:`.layers.load_layers`.
    """
    fmt, layers = load_layers(path)
    return fmt, [layer_report(layer) for layer in layers]


def format_reports(path, fmt: str, reports: list[LayerReport]) -> str:
    """A table, one line per layer, for the command line."""
    lines = [f"{path}: {fmt}, {len(reports)} layer(s) with a weight of ndim >= 2"]
    if not reports:
        return lines[0]
    width = max(12, *(len(r.name) for r in reports))
    lines.append(f"  {'layer':<{width}} {'shape':<14} {'density':>8} {'fan-in':>8} "
                 f"{'ablated':<22} {'mask from':<18} first row breaking constant fan-in")
    for r in reports:
        shape = "x".join(map(str, r.shape))
        fan = f"k={r.fan_in}" if r.constant else "varies"
        abl = str(r.ablated.size)
        if r.ablated.size:
            shown = ", ".join(map(str, r.ablated[:5].tolist()))
            abl += f" [{shown}{', ...' if r.ablated.size > 5 else ''}]"
        bad = "-" if r.constant else (f"row {r.first_bad_row} has {r.first_bad_count}, first "
                                      f"active row has {r.reference_count}")
        lines.append(f"  {r.name:<{width}} {shape:<14} {r.density:>8.4f} {fan:>8} "
                     f"{abl:<22} {r.convention:<18} {bad}")
    if any(r.convention == "nonzero" for r in reports):
        lines.append("  (mask from nonzero: no mask stored, so weight != 0 is used; a grown "
                     "weight that is exactly 0 counts as inactive)")
    return "\n".join(lines)
