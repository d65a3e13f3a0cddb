"""Observers of topology updates: the metrics record and the replayable trace.

After every topology update the trainer calls each observer with one ``UpdateEvent``
(what every layer got and what it returned); observers only read it. ``MetricsObserver``
appends the update's record to ``metrics.jsonl``; ``TraceObserver`` writes one replayable
case file per layer (``srigl-ref train --trace DIR``, ``interchange.cases``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import checkpoint, dst
from ..interchange import cases
from .methods import LayerInput


@dataclass(frozen=True)
class UpdateEvent:
    """One topology update of every updated layer.

    Attributes
    ----------
    step : int
        The optimizer step after which the update ran.
    drop_fraction : float
    t_end : int
        The step after which updates stop (docs/algorithm.md §5).
    layers : list of (LayerInput, dst.TopologyUpdate)
        Per updated layer, in model order: the method's arguments and its result.
    """
    step: int
    drop_fraction: float
    t_end: int
    layers: list[tuple[LayerInput, dst.TopologyUpdate]]


def update_record(event: UpdateEvent) -> dict:
    """The ``metrics.jsonl`` record of an update: per layer the counts the update reports
    and the neurons revived (rows empty before and active after)."""
    layers = []
    for layer, u in event.layers:
        old = layer.mask
        old_rows = old.reshape(old.shape[0], -1).any(axis=1)
        new_rows = u.mask.reshape(old.shape[0], -1).any(axis=1)
        layers.append({"name": layer.name, "n_pruned": u.n_pruned, "n_grown": u.n_grown,
                       "n_ablated": int(u.ablated.size),
                       "n_revived": int((new_rows & ~old_rows).sum()),
                       "threshold": u.threshold, "fan_in": u.fan_in})
    return {"kind": "update", "step": event.step, "drop_fraction": event.drop_fraction,
            "layers": layers}


class MetricsObserver:
    """Appends ``update_record(event)`` to a ``checkpoint.MetricsLog``."""

    def __init__(self, log: checkpoint.MetricsLog):
        self.log = log

    def __call__(self, event: UpdateEvent) -> None:
        self.log.write(update_record(event))


class TraceObserver:
    """Writes every layer's update as a case file ``DIR/step_XXXXXXX/<name>.npz``.

    Parameters
    ----------
    trace_dir : path
    config : TrainConfig
        The run's method and hyper-parameters (stored in each case).
    """

    def __init__(self, trace_dir, config):
        self.trace_dir, self.config = Path(trace_dir), config

    def __call__(self, event: UpdateEvent) -> None:
        cfg = self.config
        for layer, u in event.layers:
            cases.write_case(
                cases.trace_path(self.trace_dir, event.step, layer.name), method=cfg.method,
                weight=layer.weight, mask=layer.mask, grad=layer.grad,
                momentum=layer.momentum, sparsity=layer.sparsity,
                drop_fraction=layer.drop_fraction, step=event.step, t_end=event.t_end,
                alpha=cfg.alpha, gamma_sal=cfg.gamma_sal, ablation=layer.ablation,
                ablation_base=cfg.ablation_base, tie_break="stable", result=u,
                meta={"layer_index": layer.index, "name": layer.name})
