"""The training loop of docs/algorithm.md §5, its metrics, checkpoints and progress output.

One optimizer step, in this order (docs/algorithm.md §5)::

    forward -> loss -> backward (dense gradients of every parameter)
    if this step precedes an update: accumulate the dense gradients of the sparse weights
    SGD step with the masked gradient; momentum *= M and W *= M
    step += 1
    if step is an update step: per sparse layer, srigl/rigl/set_update on the post-step
    weights with the mean accumulated dense gradient; the momentum buffer is masked with
    the new mask

``train`` only orchestrates: the math lives in ``dst`` and ``nn``; files are written
through ``checkpoint``. It prints progress (stderr) and nothing else.

Engines. ``engine="masked"`` (default, the readable reference) runs the steps above on
``self.model`` and ``self.optimizer``. ``engine="condensed"`` (SRigL only) runs the same
steps through ``condensed.training.CondensedEngine``: the sparse linear layers train as
``values/indices``, the dense gradient is computed only on the steps that record it, and
``sync_dense()`` writes the dense weights and momentum back for topology updates,
checkpoints and anything else that reads ``model.params``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from . import checkpoint, data, dst
from ._validate import check_choice, check_density, check_int, check_real
from .condensed.training import CondensedEngine, condensed_names
from .interchange import cases
from .nn.losses import softmax_cross_entropy
from .nn.models import INITS, MODELS, build_model, sparse_init
from .nn.optim import SGD, CosineLR

METHODS = ("dense", "static", "set", "rigl", "srigl")
DYNAMIC = ("set", "rigl", "srigl")
ENGINES = ("masked", "condensed")


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
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    seed: int = 0
    delta: int = 100
    alpha: float = 0.3
    t_end_fraction: float = 0.75
    grad_accumulation_n: int = 1
    gamma_sal: float = 0.3
    ablation: bool = True
    ablation_base: str = "sparse"
    exempt_last_layer: bool = True
    init: str = "kaiming"
    dense_layers: tuple[int, ...] = ()
    n_train: int | None = None        # use only the first n training examples (quick runs)
    engine: str = "masked"            # "condensed": truly sparse SRigL (condensed/training.py)
    hidden: tuple[int, ...] | None = None   # mlp hidden widths (None: LeNet-300-100's)

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_choice("model", self.model, MODELS)
        check_choice("distribution", self.distribution, dst.sparsity.DISTRIBUTIONS)
        check_choice("init", self.init, INITS)
        check_choice("dataset", self.dataset, data.DATASETS)
        check_density("density", self.density)
        check_int("epochs", self.epochs, low=1)
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
        if self.engine == "condensed" and self.method != "srigl":
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
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config has unknown key(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class RunState:
    """What changes during a run (everything a checkpoint must restore)."""
    step: int = 0
    epoch: int = 0
    masks: dict = field(default_factory=dict)         # name -> bool mask (sparse layers)
    ever_active: dict = field(default_factory=dict)   # name -> bool, for the ITOP rate
    dense_grad: dict = field(default_factory=dict)    # name -> accumulated dense gradient
    n_dense_grad: int = 0


class Trainer:
    """Builds data, model, masks and optimizer from a ``TrainConfig`` and runs epochs.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path
        Where ``metrics.jsonl``, ``model.npz`` and ``summary.json`` go (created).
    progress : file-like or None
        Progress lines (stderr by default; None for silence).
    trace_dir : path or None
        If given, every topology update of every layer is written there as a replayable
        case file (``interchange.cases.write_case``): ``step_XXXXXXX/<name>.npz``.
    """

    def __init__(self, config: TrainConfig, out_dir, *, progress=sys.stderr, trace_dir=None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.trace_dir = None if trace_dir is None else Path(trace_dir)
        self.data = run_dataset(config, progress=progress)
        self.rng = np.random.default_rng(config.seed).spawn(2)[1]   # [0] drew the data
        self.model = build_model(config.model, self.data.input_shape, self.data.n_classes,
                                 rng=self.rng, **({} if config.hidden is None
                                                  else {"hidden": config.hidden}))
        self.steps_per_epoch = math.ceil(len(self.data.y_train) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.schedule = dst.UpdateSchedule.from_total(
            self.total_steps, delta=config.delta, alpha=config.alpha,
            t_end_fraction=config.t_end_fraction,
            grad_accumulation_n=config.grad_accumulation_n)
        self.lr_at = CosineLR(config.lr, self.total_steps,
                              warmup_steps=config.warmup_epochs * self.steps_per_epoch)
        shapes = [self.model.params[n].shape for n in self.model.sparse_names]
        if config.method == "dense":
            self.sparsities = [0.0] * len(shapes)
        else:
            self.sparsities = dst.layer_sparsities(shapes, config.density, config.distribution,
                                                   dense_layers=config.dense_layers)
        self.structure = "constant_fan_in" if config.method == "srigl" else "unstructured"
        self.state = RunState()
        if config.method != "dense":
            self.state.masks = sparse_init(self.model, self.sparsities, self.rng, config.init,
                                           structure=self.structure)
        self.state.ever_active = {n: m.copy() for n, m in self._all_masks().items()}
        self.optimizer = SGD(self.model.params, config.lr, momentum=config.momentum,
                             nesterov=config.nesterov, weight_decay=config.weight_decay)
        self.dense_grad_records = 0      # how many steps recorded a dense gradient
        self.engine = None               # the masked engine: self.model and self.optimizer
        if config.engine == "condensed":
            self.engine = CondensedEngine(self.model, self.optimizer, self.state.masks,
                                          condensed_names(self.model, self.sparsities))
        self.metrics = None              # checkpoint.MetricsLog while running

    # ------------------------------------------------------------------ helpers
    def _all_masks(self) -> dict:
        """Masks of every sparse-able weight (all-True for dense layers and dense runs)."""
        return {n: self.state.masks.get(n, np.ones(self.model.params[n].shape, np.bool_))
                for n in self.model.sparse_names}

    def _updated_layers(self):
        """(index, name, sparsity) of the layers a topology update touches (S > 0)."""
        return [(i, n, s) for i, (n, s) in enumerate(zip(self.model.sparse_names,
                                                          self.sparsities)) if s > 0]

    def _say(self, msg: str, end="\n") -> None:
        if self.progress is not None:
            print(msg, end=end, file=self.progress, flush=True)

    # ------------------------------------------------------------------ one step
    def train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One optimizer step (and the topology update it may trigger). Returns (loss, hits)."""
        if self.engine is not None:
            return self._condensed_train_step(x, y)
        cfg, st = self.config, self.state
        logits, cache = self.model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        grads = self.model.backward(dlogits, cache)
        dynamic = cfg.method in DYNAMIC
        if dynamic and cfg.method != "set" and self.schedule.needs_dense_grad(st.step + 1):
            self._record_dense_grad(grads)
        self.optimizer.step(grads, st.masks, lr=self.lr_at(st.step))
        st.step += 1
        if dynamic and self.schedule.is_update(st.step):
            self.topology_update()
        hits = int((logits.argmax(axis=1) == y).sum())
        return loss, hits

    def _condensed_train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """``train_step`` with the condensed engine: the same order (docs/algorithm.md §5); the
        dense gradients are computed only on the steps that record them."""
        cfg, st, engine = self.config, self.state, self.engine
        dense = self.schedule.needs_dense_grad(st.step + 1)
        logits, cache = engine.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        grads, dense_grads = engine.backward(dlogits, cache, dense=dense)
        if dense:
            self._record_dense_grad({**grads, **dense_grads})
        engine.step(grads, st.masks, lr=self.lr_at(st.step))
        st.step += 1
        if self.schedule.is_update(st.step):
            self.topology_update()
        hits = int((logits.argmax(axis=1) == y).sum())
        return loss, hits

    def sync_dense(self) -> None:
        """Make ``model.params`` and the momentum buffers current (the condensed engine keeps
        its sparse weights condensed between calls; a no-op for the masked engine)."""
        if self.engine is not None:
            self.engine.store()

    def _record_dense_grad(self, grads: dict) -> None:
        """Accumulate the dense gradients of the updated layers (docs/algorithm.md §5)."""
        self.dense_grad_records += 1
        for _, name, _ in self._updated_layers():
            if name in self.state.dense_grad:
                self.state.dense_grad[name] += grads[name]
            else:
                self.state.dense_grad[name] = grads[name].copy()
        self.state.n_dense_grad += 1

    def topology_update(self) -> dict:
        """Update every sparse layer's mask at the current step; returns the metrics record."""
        cfg, st = self.config, self.state
        self.sync_dense()
        df = self.schedule.drop_fraction(st.step)
        params, bufs = self.model.params, self.optimizer.momentum_buffers
        layers = []
        last = len(self.model.sparse_names) - 1
        for i, name, s in self._updated_layers():
            old = st.masks[name]
            ablation = cfg.ablation and not (cfg.exempt_last_layer and i == last)
            grad = None
            if cfg.method == "set":
                u = dst.set_update(params[name], old, drop_fraction=df, rng=self.rng,
                                   momentum=bufs[name])
            else:
                grad = st.dense_grad[name] / st.n_dense_grad
                if cfg.method == "rigl":
                    u = dst.rigl_update(params[name], old, grad, drop_fraction=df,
                                        momentum=bufs[name])
                else:
                    u = dst.srigl_update(
                        params[name], old, grad, sparsity=s, drop_fraction=df,
                        gamma_sal=cfg.gamma_sal, ablation_base=cfg.ablation_base,
                        ablation=ablation, momentum=bufs[name])
            if self.trace_dir is not None:
                cases.write_case(
                    cases.trace_path(self.trace_dir, st.step, name), method=cfg.method,
                    weight=params[name], mask=old, grad=grad, momentum=bufs[name],
                    sparsity=s, drop_fraction=df, step=st.step, t_end=self.schedule.t_end,
                    alpha=cfg.alpha, gamma_sal=cfg.gamma_sal, ablation=ablation,
                    ablation_base=cfg.ablation_base, tie_break="stable", result=u,
                    meta={"layer_index": i, "name": name})
            params[name] = u.weight
            bufs[name] = u.momentum
            st.masks[name] = u.mask
            st.ever_active[name] |= u.mask
            old_rows = old.reshape(old.shape[0], -1).any(axis=1)
            new_rows = u.mask.reshape(old.shape[0], -1).any(axis=1)
            layers.append({"name": name, "n_pruned": u.n_pruned, "n_grown": u.n_grown,
                           "n_ablated": int(u.ablated.size),
                           "n_revived": int((new_rows & ~old_rows).sum()),
                           "threshold": u.threshold, "fan_in": u.fan_in})
        st.dense_grad, st.n_dense_grad = {}, 0
        if self.engine is not None:
            self.engine.load(st.masks)
        record = {"kind": "update", "step": st.step, "drop_fraction": df, "layers": layers}
        if self.metrics is not None:
            self.metrics.write(record)
        return record

    # ------------------------------------------------------------------ metrics
    def layer_stats(self) -> list[dict]:
        """Per sparse-able layer: shape, sparsity, fan-in, active and ablated neurons."""
        out = []
        masks = self._all_masks()
        for name, s in zip(self.model.sparse_names, self.sparsities):
            m = masks[name]
            rows = m.reshape(m.shape[0], -1).sum(axis=1)
            active = rows[rows > 0]
            constant = active.size > 0 and (active == active[0]).all()
            out.append({"name": name, "shape": list(m.shape), "sparsity": s,
                        "fan_in": int(active[0]) if constant else -1,
                        "n_active_neurons": int(active.size),
                        "n_ablated": int((rows == 0).sum()),
                        "density": float(m.mean())})
        return out

    def density(self) -> float:
        masks = self._all_masks().values()
        return float(sum(int(m.sum()) for m in masks) / sum(m.size for m in masks))

    def itop_rate(self) -> float:
        ever = self.state.ever_active.values()
        return float(sum(int(m.sum()) for m in ever) / sum(m.size for m in ever))

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000):
        """(mean loss, accuracy) over a dataset, in batches."""
        total_loss, hits = 0.0, 0
        for lo in range(0, len(y), batch_size):
            logits, _ = (self.engine or self.model).forward(x[lo:lo + batch_size],
                                                            train=False)
            loss, _ = softmax_cross_entropy(logits, y[lo:lo + batch_size])
            total_loss += loss * len(logits)
            hits += int((logits.argmax(axis=1) == y[lo:lo + batch_size]).sum())
        return total_loss / len(y), hits / len(y)

    # ------------------------------------------------------------------ the run
    def run(self, *, resume: bool = False, stop_after_epochs: int | None = None) -> dict:
        """Train all epochs (or ``stop_after_epochs`` more), writing the run files.

        Returns the summary (also written to ``summary.json``).
        """
        cfg, st = self.config, self.state
        self.start(resume=resume)
        t_start = time.perf_counter()
        last_epoch = cfg.epochs if stop_after_epochs is None else min(
            cfg.epochs, st.epoch + stop_after_epochs)
        while st.epoch < last_epoch:
            self.run_epoch()
        return self.finish(time.perf_counter() - t_start)

    def start(self, *, resume: bool = False) -> None:
        """Create the output folder and metrics log; restore the checkpoint if resuming."""
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._restore(checkpoint.load_checkpoint(self.out_dir / "model.npz"))
        self.metrics = checkpoint.MetricsLog(self.out_dir / "metrics.jsonl",
                                             resume_step=self.state.step if resume else None)
        self._say(f"{cfg.method} {cfg.model} on {cfg.dataset}: density {cfg.density} "
                  f"({cfg.distribution}), {cfg.epochs} epochs x {self.steps_per_epoch} steps, "
                  f"seed {cfg.seed}")

    def finish(self, seconds: float) -> dict:
        """Write and return ``summary.json`` (``seconds``: wall time of this invocation)."""
        summary = self._summary(seconds)
        checkpoint.write_json(self.out_dir / "summary.json", summary)
        return summary

    def run_epoch(self) -> None:
        """One epoch: shuffled mini-batches, evaluation, metrics record, checkpoint."""
        cfg, st = self.config, self.state
        t0 = time.perf_counter()
        last_note = t0
        order = self.rng.permutation(len(self.data.y_train))
        loss_sum, hits, seen = 0.0, 0, 0
        for b, lo in enumerate(range(0, len(order), cfg.batch_size)):
            idx = order[lo:lo + cfg.batch_size]
            x = np.ascontiguousarray(self.data.x_train[idx])
            loss, h = self.train_step(x, self.data.y_train[idx])
            loss_sum += loss * len(idx)
            hits += h
            seen += len(idx)
            now = time.perf_counter()
            if now - last_note > 2.0:
                done = (b + 1) / self.steps_per_epoch
                eta = (now - t0) / done * (1 - done)
                self._say(f"  epoch {st.epoch + 1}/{cfg.epochs}: {100 * done:3.0f}% "
                          f"loss {loss_sum / seen:.4f} (epoch ETA {eta:.0f} s)")
                last_note = now
        st.epoch += 1
        test_loss, test_acc = self.evaluate(self.data.x_test, self.data.y_test)
        record = {"kind": "epoch", "epoch": st.epoch, "step": st.step,
                  "train_loss": loss_sum / seen, "train_accuracy": hits / seen,
                  "test_loss": test_loss, "test_accuracy": test_acc,
                  "lr": self.lr_at(max(st.step - 1, 0)), "density": self.density(),
                  "itop_rate": self.itop_rate(), "seconds": time.perf_counter() - t0,
                  "layers": [{k: d[k] for k in ("name", "fan_in", "n_active_neurons",
                                                 "n_ablated")} for d in self.layer_stats()]}
        self.metrics.write(record)
        self._save()
        self._say(f"epoch {st.epoch}/{cfg.epochs}  train loss {record['train_loss']:.4f} "
                  f"acc {record['train_accuracy']:.4f}  test loss {test_loss:.4f} "
                  f"acc {test_acc:.4f}  density {record['density']:.4f}  "
                  f"ITOP {record['itop_rate']:.3f}  {record['seconds']:.1f} s")

    def _summary(self, seconds: float) -> dict:
        last = [r for r in checkpoint.read_metrics(self.out_dir / "metrics.jsonl")
                if r["kind"] == "epoch"]
        final = last[-1] if last else {}
        return {"test_accuracy": final.get("test_accuracy"),
                "test_loss": final.get("test_loss"),
                "train_accuracy": final.get("train_accuracy"),
                "density": self.density(),
                "target_density": 1.0 if self.config.method == "dense" else self.config.density,
                "method": self.config.method, "seconds": seconds,
                "epochs": self.state.epoch, "steps": self.state.step,
                "itop_rate": self.itop_rate(), "layers": self.layer_stats(),
                "config": asdict(self.config)}

    # ------------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        st = self.state
        self.sync_dense()
        meta = {"config": asdict(self.config), "step": st.step, "epoch": st.epoch,
                "rng_state": self.rng.bit_generator.state,
                "sparse_names": self.model.sparse_names, "sparsities": self.sparsities,
                "n_dense_grad": st.n_dense_grad,
                "dense_grad_names": list(st.dense_grad)}
        ckpt = checkpoint.Checkpoint(
            params=dict(self.model.params), masks=self._all_masks(),
            momentum=dict(self.optimizer.momentum_buffers), ever_active=st.ever_active,
            meta=meta, dense_grad=st.dense_grad)
        checkpoint.save_checkpoint(self.out_dir / "model.npz", ckpt)

    def _restore(self, ckpt: checkpoint.Checkpoint) -> None:
        saved = TrainConfig.from_dict(ckpt.config)
        if saved != self.config:
            diff = [f.name for f in fields(TrainConfig)
                    if getattr(saved, f.name) != getattr(self.config, f.name)]
            raise ValueError(f"{self.out_dir / 'model.npz'}: the checkpoint's config differs "
                             f"in {diff}; resume with the same arguments")
        st = self.state
        self.model.load_state_dict({n: ckpt.params[n] for n in self.model.params})
        self.optimizer.momentum_buffers = {n: ckpt.momentum[n].copy()
                                           for n in self.model.params}
        st.masks = {n: ckpt.masks[n].copy() for n in st.masks}
        st.ever_active = {n: ckpt.ever_active[n].copy() for n in self.model.sparse_names}
        st.dense_grad = {n: ckpt.dense_grad[n].copy() for n in ckpt.meta["dense_grad_names"]}
        st.n_dense_grad = ckpt.meta["n_dense_grad"]
        st.step, st.epoch = ckpt.meta["step"], ckpt.meta["epoch"]
        self.rng.bit_generator.state = ckpt.meta["rng_state"]
        if self.engine is not None:
            self.engine.load(st.masks)


def run_dataset(config: TrainConfig, *, progress=None) -> data.Dataset:
    """The dataset a run of ``config`` trains and evaluates on.

    The synthetic dataset is drawn by the first generator spawned from ``config.seed`` (the
    second one drives the model and the training); the training set is cut to ``n_train``.

    Parameters
    ----------
    config : TrainConfig
    progress : file-like or None
        Where download progress is printed (``download_printer``).
    """
    data_rng = np.random.default_rng(config.seed).spawn(2)[0]
    report = None if progress is None else download_printer(progress)
    return _subset(data.load_dataset(config.dataset, data_dir=config.data_dir,
                                     progress=report, rng=data_rng), config.n_train)


def download_printer(file) -> data.ProgressCallback:
    """A ``data.ProgressCallback`` writing one self-updating line per downloaded file."""
    def report(p: data.DownloadProgress) -> None:
        got = f"{p.n_bytes / 1e6:.1f}"
        of = (f"/{p.total / 1e6:.1f} MB ({100 * p.n_bytes // max(p.total, 1)}%)"
              if p.total else " MB")
        print(f"\rdownloading {p.url}: {got}{of}", end="\n" if p.done else "", file=file,
              flush=True)
    return report


def _subset(ds: data.Dataset, n_train: int | None) -> data.Dataset:
    """The first ``n_train`` training examples (all if None or larger)."""
    if n_train is None or n_train >= len(ds.y_train):
        return ds
    return data.Dataset(ds.name, ds.x_train[:n_train], ds.y_train[:n_train], ds.x_test,
                        ds.y_test, ds.n_classes)


def train(config: TrainConfig, out_dir, *, resume=False, progress=sys.stderr) -> dict:
    """Run (or resume) one training run; returns its summary."""
    return Trainer(config, out_dir, progress=progress).run(resume=resume)
