"""The finished runs of a sweep: each run's ``summary.json``, its status, and the runs grouped
into cells (one method at one density of one model) for the claims and the report.

A run's status is the summary's ``"status"`` when the trainer wrote one (``"ok"``,
``"diverged"``: stopped at a non-finite loss, ``"at_chance"``: finished at chance accuracy).
A summary without one is ``"at_chance"`` when its test accuracy is within
``CHANCE_BAND`` of ``1 / n_classes`` (the trainer's own rule), else ``"ok"``. Only ``"ok"``
runs enter a cell; the others are *failed* runs, kept aside so that every table and verdict
can say what it left out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from srigl_ref import checkpoint
from srigl_ref.nn.models import MODELS
from srigl_ref.train import TrainConfig

OK = "ok"
STATUSES = (OK, "diverged", "at_chance")
#: A run whose test accuracy is within this of chance (1 / n_classes) is at chance.
CHANCE_BAND = 0.02
_DEFAULTS = TrainConfig()


def model_label(config: TrainConfig) -> str:
    """The model of a run as the report names it: ``mlp``, or ``mlp-1024x1024`` for an MLP
    with other hidden widths than LeNet-300-100's."""
    if config.hidden is None:
        return config.model
    return f"{config.model}-{'x'.join(map(str, config.hidden))}"


def label(config: TrainConfig) -> str:
    """The method label of a run.

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    str
        The method; ``srigl-noabl`` for SRigL without ablation; ``srigl-g<gamma_sal>`` for
        SRigL with a ``gamma_sal`` other than the default.
    """
    if config.method != "srigl":
        return config.method
    if not config.ablation:
        return "srigl-noabl"
    if config.gamma_sal != _DEFAULTS.gamma_sal:
        return f"srigl-g{config.gamma_sal:g}"
    return "srigl"


@dataclass(frozen=True)
class Run:
    """One finished run: its folder, configuration and summary."""
    path: Path
    config: TrainConfig
    summary: dict

    @property
    def label(self) -> str:
        return label(self.config)

    @property
    def accuracy(self) -> float | None:
        """Final test accuracy (None for a run that diverged before its first evaluation)."""
        return self.summary.get("test_accuracy")

    @property
    def n_classes(self) -> int:
        """Output units of the classifier, the last layer of every model."""
        return self.summary["layers"][-1]["shape"][0]

    @property
    def status(self) -> str:
        """One of ``STATUSES``: the summary's own, or derived from the accuracy."""
        if "status" in self.summary:
            return self.summary["status"]
        if abs(self.accuracy - 1.0 / self.n_classes) <= CHANCE_BAND:
            return "at_chance"
        return OK

    @property
    def ablated_fraction(self) -> float:
        """Ablated neurons / neurons over the layers ablation may touch (all but the
        classifier when ``exempt_last_layer``)."""
        layers = self.summary["layers"]
        if self.config.exempt_last_layer:
            layers = layers[:-1]
        return (sum(layer["n_ablated"] for layer in layers)
                / sum(layer["shape"][0] for layer in layers))

    def describe(self) -> str:
        """``'lenet5 dense d1 s0 (at_chance, 10.00 %)'``."""
        acc = "no accuracy" if self.accuracy is None else f"{100 * self.accuracy:.2f} %"
        return (f"{model_label(self.config)} {self.label} d{self.config.density:g} "
                f"s{self.config.seed} ({self.status}, {acc})")


def read_run(path) -> Run:
    """The run whose ``summary.json`` is ``path``, validated.

    A summary with ``"status": "diverged"`` may lack a test accuracy (the run stopped before
    its first evaluation); every other summary passes ``checkpoint.read_summary``.

    Parameters
    ----------
    path : path-like
        A ``summary.json``.

    Returns
    -------
    Run

    Raises
    ------
    ValueError
        Naming the file: unreadable, invalid, an unknown status or no valid ``config``.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON summary ({e})") from None
    status = raw.get("status") if isinstance(raw, dict) else None
    if status is not None and status not in STATUSES:
        raise ValueError(f"{path}: status == {status!r}, must be one of {STATUSES}")
    if status == "diverged" and raw.get("test_accuracy") is None:
        summary = raw
        if not isinstance(summary.get("layers"), list):
            raise ValueError(f"{path}: missing key(s) ['layers']")
    else:
        summary = checkpoint.read_summary(path)
    try:
        config = TrainConfig.from_dict(summary["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: no valid 'config' ({e})") from None
    return Run(path.parent, config, summary)


def load_runs(root) -> list[Run]:
    """Every ``summary.json`` below ``root``, validated (``read_run``), in path order.

    Parameters
    ----------
    root : path-like
        The sweep root.

    Returns
    -------
    list of Run

    Raises
    ------
    ValueError
        If ``root`` is not a folder, holds no ``summary.json``, or one is invalid (naming
        the file: a broken run is rerun by the sweep, never silently left out here).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root == {str(root)!r}: no such folder")
    runs = [read_run(path) for path in sorted(root.glob("**/summary.json"))]
    if not runs:
        raise ValueError(f"root == {str(root)!r}: no summary.json below it; run "
                         f"experiments/sweep.py --out {root} first")
    return runs


@dataclass(frozen=True)
class ModelRuns:
    """The runs of one model on one data set.

    Attributes
    ----------
    cells : dict
        ``{(label, density): [Run, ...]}``: the ``"ok"`` runs, in seed order.
    failed : dict
        Same keys: the runs of any other status (a key is present only when it has some).
    """
    cells: dict
    failed: dict

    def failed_among(self, labels) -> list[Run]:
        """The failed runs of the given method labels, in (label, density, seed) order."""
        return [r for (lab, _), rs in self.failed.items() if lab in labels for r in rs]


def group_runs(runs) -> dict:
    """Runs by data set and model (``model_label``), then by method label and density,
    ``"ok"`` runs apart from failed ones.

    Parameters
    ----------
    runs : iterable of Run

    Returns
    -------
    dict
        ``{(dataset, model label): ModelRuns}``, models in ``MODELS`` order (then by
        hidden widths).
    """
    groups = {}
    order = sorted(runs, key=lambda r: (r.config.dataset, MODELS.index(r.config.model),
                                        r.config.hidden or (), r.config.seed))
    for run in order:
        group = groups.setdefault((run.config.dataset, model_label(run.config)),
                                  ModelRuns({}, {}))
        cells = group.cells if run.status == OK else group.failed
        cells.setdefault((run.label, run.config.density), []).append(run)
    return groups
