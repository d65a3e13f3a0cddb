"""``TrainConfig``: everything that decides a run, validated once when it is built."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .. import data, dst
from .._validate import check_choice, check_density, check_int, check_real
from ..nn.models import DENSE_INITS, MODEL_DEFAULTS, MODELS, SPARSE_INITS
from .engines import ENGINES
from .methods import REGISTRY


# Configs written when one ``init`` named both choices: "kaiming" re-drew the active weights
# at each row's fan-in, "official" was the authors' scaled variant; both on Kaiming-normal.
LEGACY_INITS = {"kaiming": {"init": "kaiming", "sparse_init": "fan_in"},
                "official": {"init": "kaiming", "sparse_init": "official"}}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run (stored in ``model.npz`` and ``summary.json``)."""
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    model: str = "mlp"
    method: str = "srigl"
    density: float = 0.1
    distribution: str = "erk"
    epochs: int = 20
    batch_size: int = 128
    lr: float | None = None           # None: the model's (nn.models.MODEL_DEFAULTS)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_epochs: int | None = None  # None: the model's (nn.models.MODEL_DEFAULTS)
    seed: int = 0
    delta: int = 100
    alpha: float = 0.3
    t_end_fraction: float = 0.75
    grad_accumulation_n: int = 1
    gamma_sal: float = 0.3
    ablation: bool = True
    ablation_base: str = "sparse"
    exempt_last_layer: bool = True
    init: str | None = None           # dense init (nn.models.dense_init); None: the model's
    sparse_init: str = "fan_in"       # sparse init on top of it (nn.models.sparse_init)
    dense_layers: tuple[int, ...] = ()
    n_train: int | None = None        # use only the first n training examples (quick runs)
    engine: str = "masked"            # "condensed": truly sparse SRigL (condensed_engine.py)
    hidden: tuple[int, ...] | None = None   # mlp hidden widths (None: LeNet-300-100's)

    def __post_init__(self):
        check_choice("method", self.method, tuple(REGISTRY))
        check_choice("model", self.model, MODELS)
        check_choice("distribution", self.distribution, dst.sparsity.DISTRIBUTIONS)
        check_choice("dataset", self.dataset, data.DATASETS)
        check_density("density", self.density)
        check_int("epochs", self.epochs, low=1)
        defaults = MODEL_DEFAULTS[self.model]         # recorded resolved, in the saved config
        if self.init is None:
            object.__setattr__(self, "init", defaults["init"])
        if self.lr is None:
            object.__setattr__(self, "lr", defaults["lr"])
        if self.warmup_epochs is None:
            object.__setattr__(self, "warmup_epochs",
                               min(defaults["warmup_epochs"], self.epochs - 1))
        check_choice("init", self.init, DENSE_INITS)
        check_choice("sparse_init", self.sparse_init, SPARSE_INITS)
        check_int("batch_size", self.batch_size, low=1)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_real("label_smoothing", self.label_smoothing, low=0.0, high=1.0)
        check_int("warmup_epochs", self.warmup_epochs, low=0, high=self.epochs - 1)
        check_int("seed", self.seed, low=0)
        check_int("delta", self.delta, low=1)
        check_real("alpha", self.alpha, low=0.0, high=1.0)
        check_real("t_end_fraction", self.t_end_fraction, low=0.0, high=1.0)
        check_int("grad_accumulation_n", self.grad_accumulation_n, low=1, high=self.delta)
        check_real("gamma_sal", self.gamma_sal, low=0.0)
        if self.n_train is not None:
            check_int("n_train", self.n_train, low=1)
        object.__setattr__(self, "dense_layers", tuple(self.dense_layers))
        check_choice("engine", self.engine, ENGINES)
        if self.engine == "condensed" and self.model not in ("mlp", "lenet5", "cnn"):
            raise ValueError(f"engine == 'condensed' handles models without BatchNorm ('mlp', "
                             f"'lenet5', 'cnn'), got model == {self.model!r}")
        if self.engine == "condensed" and REGISTRY[self.method].structure != "constant_fan_in":
            raise ValueError(f"engine == 'condensed' needs method == 'srigl' (constant "
                             f"fan-in), got method == {self.method!r}")
        if self.hidden is not None:
            if self.model != "mlp":
                raise ValueError(f"hidden == {self.hidden!r} applies to model 'mlp' only, "
                                 f"got model == {self.model!r}")
            object.__setattr__(self, "hidden", tuple(
                check_int(f"hidden[{i}]", h, low=1) for i, h in enumerate(self.hidden)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        if "sparse_init" not in d and d.get("init") in LEGACY_INITS:
            d = {**d, **LEGACY_INITS[d["init"]]}          # a config written before the split
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config has unknown key(s) {sorted(unknown)}")
        return cls(**d)
