"""Neuron ablation: which neurons to switch off at an update (docs/algorithm.md §7)."""
from __future__ import annotations

import numpy as np


def ablation_threshold(gamma_sal: float, budget: int, out: int, fan: int,
                       ablation_base: str) -> int:
    """Minimum salient count a neuron needs before the keep-alive lowering (docs/algorithm.md §7).

    ``gamma_sal >= 1`` is an absolute count; otherwise ``max(1, int(gamma_sal * base))``
    with ``base = budget // out`` (``"sparse"``) or ``fan`` (``"dense"``).
    """
    if gamma_sal >= 1:
        return int(gamma_sal)
    base = budget // out if ablation_base == "sparse" else fan
    return max(1, int(gamma_sal * base))


def ablated_from_counts(counts: np.ndarray, budget: int, fan: int, gamma_sal: float,
                        ablation_base: str) -> tuple[np.ndarray, int]:
    """Neurons to ablate from their salient counts (docs/algorithm.md §7).

    Parameters
    ----------
    counts : ndarray of shape (out,), int64
        Salient positions per neuron (``_kernels.salient_counts``).
    budget : int
        ``B`` of the layer.
    fan : int
        Dense fan-in ``F``.
    gamma_sal : float
        Salient threshold (fraction of the base, or an absolute count if >= 1).
    ablation_base : {"sparse", "dense"}

    Returns
    -------
    ablated : ndarray of int64
        Neurons in rank order: salient count descending, ties by ascending index.
    threshold : int
        The threshold after lowering it so that at least ``B // F + 1`` neurons stay alive
        (when ``B // F >= out`` no neuron can go: the last-ranked one decides).
    """
    out = counts.shape[0]
    rank = np.argsort(-counts, kind="stable")              # [out] int64
    threshold = ablation_threshold(gamma_sal, budget, out, fan, ablation_base)
    min_neurons = min(budget // fan, out - 1)
    threshold = min(threshold, int(counts[rank[min_neurons]]))
    ablated = rank[counts[rank] < threshold]
    return ablated.astype(np.int64), threshold
