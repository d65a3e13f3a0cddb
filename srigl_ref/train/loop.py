"""The training loop (docs/algorithm.md §5): one code path for every method and engine.

One optimizer step, in this order (docs/algorithm.md §5)::

    forward -> loss -> backward (dense gradients of the sparse weights when recorded)
    if this step precedes an update: accumulate the dense gradients of the sparse weights
    SGD step with the masked gradient; momentum *= M and W *= M
    step += 1
    if step is an update step: per sparse layer, the method's update (``methods.REGISTRY``)
    on the post-step weights with the mean accumulated dense gradient; the momentum buffer
    is masked with the new mask; then every observer sees the update

The loop never branches on the method or the engine: the method's registry entry says
whether it records dense gradients and how it updates a layer; the engine
(``engine.Engine``: masked or condensed) computes the step and keeps the dense view
(``model.params``, ``optimizer.momentum_buffers``) current around topology updates and
checkpoints. Observers (``observers.py``) write the metrics record and the trace.

``train`` only orchestrates: the math lives in ``dst`` and ``nn``; files are written
through ``checkpoint``. It prints progress (stderr) and nothing else. A non-finite loss
stops the run with ``TrainingDiverged`` (``summary.json`` says ``"status": "diverged"``, the
last epoch's checkpoint is kept); a run that ends within ``CHANCE_MARGIN`` of chance
accuracy finishes with ``"status": "at_chance"``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .. import checkpoint, data, dst
from ..nn.losses import softmax_cross_entropy
from ..nn.models import build_model, sparse_init
from ..nn.optim import SGD, CosineLR
from . import engines, methods
from .config import TrainConfig
from .methods import LayerInput
from .observers import MetricsObserver, TraceObserver, UpdateEvent, update_record

#: A run whose final test accuracy is within this of ``1 / n_classes`` is "at_chance".
CHANCE_MARGIN = 0.02


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is one line naming step, epoch and lr.

    Attributes
    ----------
    step, epoch : int
        The optimizer step (from 1) and the epoch (from 1) whose loss was not finite.
    """

    def __init__(self, message: str, *, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch


@dataclass
class RunState:
    """What changes during a run (everything a checkpoint must restore)."""
    step: int = 0
    epoch: int = 0
    masks: dict = field(default_factory=dict)         # name -> bool mask (sparse layers)
    ever_active: dict = field(default_factory=dict)   # name -> bool, for the ITOP rate
    initial_masks: dict = field(default_factory=dict)  # name -> bool mask at initialisation
    dense_grad: dict = field(default_factory=dict)    # name -> accumulated dense gradient
    n_dense_grad: int = 0


class Trainer:
    """Builds data, model, masks, optimizer and engine from a ``TrainConfig`` and runs epochs.

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

    Raises
    ------
    ValueError
        The dataset holds NaN or infinite inputs (checked once, here, where data enters).
    """

    def __init__(self, config: TrainConfig, out_dir, *, progress=sys.stderr, trace_dir=None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.method = methods.REGISTRY[config.method]
        self.data = run_dataset(config, progress=progress)
        _check_finite(self.data)
        self.rng = np.random.default_rng(config.seed).spawn(2)[1]   # [0] drew the data
        self.architecture = {"name": config.model, "input_shape": list(self.data.input_shape),
                             "n_classes": self.data.n_classes,
                             "kwargs": {} if config.hidden is None
                             else {"hidden": list(config.hidden)}}
        arch = self.architecture
        self.model = build_model(arch["name"], self.data.input_shape, arch["n_classes"],
                                 rng=self.rng, init=config.init, **arch["kwargs"])
        self.steps_per_epoch = math.ceil(len(self.data.y_train) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.schedule = dst.UpdateSchedule.from_total(
            self.total_steps, delta=config.delta, alpha=config.alpha,
            t_end_fraction=config.t_end_fraction,
            grad_accumulation_n=config.grad_accumulation_n)
        self.lr_at = CosineLR(config.lr, self.total_steps,
                              warmup_steps=config.warmup_epochs * self.steps_per_epoch)
        shapes = [self.model.params[n].shape for n in self.model.sparse_names]
        if self.method.sparse:
            self.sparsities = dst.layer_sparsities(shapes, config.density, config.distribution,
                                                   dense_layers=config.dense_layers)
        else:
            self.sparsities = [0.0] * len(shapes)
        self.structure = self.method.structure
        self.state = RunState()
        if self.method.sparse:
            self.state.masks = sparse_init(self.model, self.sparsities, self.rng,
                                           config.sparse_init, dense_init=config.init,
                                           structure=self.structure)
        self.state.ever_active = {n: m.copy() for n, m in self._all_masks().items()}
        self.state.initial_masks = {n: m.copy() for n, m in self._all_masks().items()}
        self.optimizer = SGD(self.model.params, config.lr, momentum=config.momentum,
                             nesterov=config.nesterov, weight_decay=config.weight_decay)
        self.dense_grad_records = 0      # how many steps recorded a dense gradient
        self.engine = engines.REGISTRY[config.engine].for_run(
            self.model, self.optimizer, self.state.masks, self.sparsities)
        self.observers = [] if trace_dir is None else [TraceObserver(trace_dir, config)]
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
        """One optimizer step (and the topology update it may trigger). Returns (loss, hits).

        Raises
        ------
        TrainingDiverged
            The loss (or the logits it is computed from) is not finite.
        """
        cfg, st, engine = self.config, self.state, self.engine
        dense = self.method.needs_grad and self.schedule.needs_dense_grad(st.step + 1)
        logits, cache = engine.forward(x)
        if not np.isfinite(logits).all():
            self._diverged(f"the loss is {math.nan} at step {st.step + 1}", st.step)
        loss, dlogits = softmax_cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if not math.isfinite(loss):
            self._diverged(f"the loss is {loss} at step {st.step + 1}", st.step)
        grads, dense_grads = engine.backward(dlogits, cache, dense=dense)
        if dense:
            self._record_dense_grad(dense_grads)
        engine.step(grads, st.masks, lr=self.lr_at(st.step))
        st.step += 1
        if self.method.dynamic and self.schedule.is_update(st.step):
            self.topology_update()
        hits = int((logits.argmax(axis=1) == y).sum())
        return loss, hits

    def _diverged(self, what: str, step: int) -> None:
        """Raise ``TrainingDiverged`` for ``what`` went wrong at optimizer step ``step + 1``
        of the current epoch (``step``: the steps done before it, for its learning rate)."""
        epoch = self.state.epoch + 1
        raise TrainingDiverged(
            f"training diverged: {what} (epoch {epoch} of {self.config.epochs}); the "
            f"learning rate is likely too high (lr == {self.lr_at(step):g} at that step, "
            f"--lr {self.config.lr:g})", step=step + 1, epoch=epoch)

    def _check_weights_finite(self) -> None:
        """Diverged if the last step left a non-finite parameter although its loss was
        finite (caught before a topology update or an evaluation reads it). Reads
        ``model.params``: call after ``engine.store()``."""
        bad = [n for n, p in self.model.params.items() if not np.isfinite(p).all()]
        if bad:
            step = self.state.step
            self._diverged(f"{bad[0]} is not finite after step {step}", step - 1)

    def sync_dense(self) -> None:
        """Make ``model.params`` and the momentum buffers current (``Engine.store``)."""
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
        self.engine.store()
        self._check_weights_finite()
        params, bufs = self.model.params, self.optimizer.momentum_buffers
        last = len(self.model.sparse_names) - 1
        event = UpdateEvent(st.step, self.schedule.drop_fraction(st.step),
                            self.schedule.t_end, [])
        for i, name, s in self._updated_layers():
            layer = LayerInput(
                index=i, name=name, weight=params[name], mask=st.masks[name],
                grad=(st.dense_grad[name] / st.n_dense_grad if self.method.needs_grad
                      else None),
                momentum=bufs[name], sparsity=s, drop_fraction=event.drop_fraction,
                ablation=cfg.ablation and not (cfg.exempt_last_layer and i == last),
                rng=self.rng)
            u = self.method.update(layer, cfg)
            params[name] = u.weight
            bufs[name] = u.momentum
            st.masks[name] = u.mask
            st.ever_active[name] |= u.mask
            event.layers.append((layer, u))
        st.dense_grad, st.n_dense_grad = {}, 0
        self.engine.load(st.masks)
        for observe in self.observers:
            observe(event)
        return update_record(event)

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
        """(mean loss, accuracy) over a dataset, in batches (``Engine.evaluate``)."""
        return self.engine.evaluate(x, y, batch_size)

    # ------------------------------------------------------------------ the run
    def run(self, *, resume: bool = False, stop_after_epochs: int | None = None) -> dict:
        """Train all epochs (or ``stop_after_epochs`` more), writing the run files.

        Returns the summary (also written to ``summary.json``).

        Raises
        ------
        TrainingDiverged
            After writing ``summary.json`` with ``"status": "diverged"``; ``model.npz``
            keeps the last completed epoch.
        """
        cfg, st = self.config, self.state
        self.start(resume=resume)
        t_start = time.perf_counter()
        last_epoch = cfg.epochs if stop_after_epochs is None else min(
            cfg.epochs, st.epoch + stop_after_epochs)
        try:
            # overflow to inf and NaN are caught as a non-finite loss, not warned about
            with np.errstate(over="ignore", invalid="ignore"):
                while st.epoch < last_epoch:
                    self.run_epoch()
        except TrainingDiverged as e:
            self.finish(time.perf_counter() - t_start, diverged=e)
            raise
        return self.finish(time.perf_counter() - t_start)

    def start(self, *, resume: bool = False) -> None:
        """Create the output folder and metrics log; restore the checkpoint if resuming."""
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._restore(checkpoint.load_checkpoint(self.out_dir / "model.npz"))
        self.metrics = checkpoint.MetricsLog(self.out_dir / "metrics.jsonl",
                                             resume_step=self.state.step if resume else None)
        self.observers = [o for o in self.observers if not isinstance(o, MetricsObserver)]
        self.observers.insert(0, MetricsObserver(self.metrics))
        self._say(f"{cfg.method} {cfg.model} on {cfg.dataset}: density {cfg.density} "
                  f"({cfg.distribution}), {cfg.epochs} epochs x {self.steps_per_epoch} steps, "
                  f"seed {cfg.seed}")

    def finish(self, seconds: float, *, diverged: TrainingDiverged | None = None) -> dict:
        """Write and return ``summary.json`` (``seconds``: wall time of this invocation;
        ``diverged``: the error that stopped the run, if one did)."""
        summary = self._summary(seconds, diverged)
        checkpoint.write_json(self.out_dir / "summary.json", summary)
        return summary

    def run_epoch(self) -> None:
        """One epoch: shuffled mini-batches, evaluation, metrics record, checkpoint."""
        cfg, st = self.config, self.state
        t0 = time.perf_counter()
        last_note = t0
        loss_sum, hits, seen = 0.0, 0, 0
        batches = data.batches(self.data.x_train, self.data.y_train, cfg.batch_size,
                               rng=self.rng)
        for b, (x, y) in enumerate(batches):
            loss, h = self.train_step(x, y)
            loss_sum += loss * len(y)
            hits += h
            seen += len(y)
            now = time.perf_counter()
            if now - last_note > 2.0:
                done = (b + 1) / self.steps_per_epoch
                eta = (now - t0) / done * (1 - done)
                self._say(f"  epoch {st.epoch + 1}/{cfg.epochs}: {100 * done:3.0f}% "
                          f"loss {loss_sum / seen:.4f} (epoch ETA {eta:.0f} s)")
                last_note = now
        self.engine.store()             # the dense view, for the check and the checkpoint
        self._check_weights_finite()
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

    def _summary(self, seconds: float, diverged: TrainingDiverged | None = None) -> dict:
        last = [r for r in checkpoint.read_metrics(self.out_dir / "metrics.jsonl")
                if r["kind"] == "epoch"]
        final = last[-1] if last else {}
        summary = {"test_accuracy": final.get("test_accuracy"),
                   "test_loss": final.get("test_loss"),
                   "train_accuracy": final.get("train_accuracy"),
                   "density": self.density(),
                   "target_density": self.config.density if self.method.sparse else 1.0,
                   "method": self.config.method, "seconds": seconds,
                   "epochs": self.state.epoch, "steps": self.state.step,
                   "itop_rate": self.itop_rate(), "layers": self.layer_stats(),
                   "config": asdict(self.config)}
        summary.update(_status(summary["test_accuracy"], self.data.n_classes, diverged))
        return summary

    # ------------------------------------------------------------------ checkpoints
    def _save(self) -> None:
        """Write ``model.npz`` from the dense view (``engine.store()`` done by the caller)."""
        st = self.state
        meta = {"config": asdict(self.config), "step": st.step, "epoch": st.epoch,
                "rng_state": self.rng.bit_generator.state,
                "sparse_names": self.model.sparse_names, "sparsities": self.sparsities,
                "n_dense_grad": st.n_dense_grad,
                "dense_grad_names": list(st.dense_grad),
                "architecture": self.architecture}
        ckpt = checkpoint.Checkpoint(
            params=self.model.state_dict(), masks=self._all_masks(),
            momentum=dict(self.optimizer.momentum_buffers), ever_active=st.ever_active,
            meta=meta, dense_grad=st.dense_grad, initial_masks=st.initial_masks)
        checkpoint.save_checkpoint(self.out_dir / "model.npz", ckpt)

    def _restore(self, ckpt: checkpoint.Checkpoint) -> None:
        saved = TrainConfig.from_dict(ckpt.config)
        if saved != self.config:
            diff = [f.name for f in fields(TrainConfig)
                    if getattr(saved, f.name) != getattr(self.config, f.name)]
            raise ValueError(f"{self.out_dir / 'model.npz'}: the checkpoint's config differs "
                             f"in {diff}; resume with the same arguments")
        st = self.state
        self.model.load_state_dict({n: ckpt.params[n] for n in self.model.state_dict()})
        self.optimizer.momentum_buffers = {n: ckpt.momentum[n].copy()
                                           for n in self.model.params}
        st.masks = {n: ckpt.masks[n].copy() for n in st.masks}
        st.ever_active = {n: ckpt.ever_active[n].copy() for n in self.model.sparse_names}
        st.initial_masks = {n: ckpt.initial_masks.get(n, m).copy()
                            for n, m in st.initial_masks.items()}
        st.dense_grad = {n: ckpt.dense_grad[n].copy() for n in ckpt.meta["dense_grad_names"]}
        st.n_dense_grad = ckpt.meta["n_dense_grad"]
        st.step, st.epoch = ckpt.meta["step"], ckpt.meta["epoch"]
        self.rng.bit_generator.state = ckpt.meta["rng_state"]
        self.engine.load(st.masks)


def _status(test_accuracy, n_classes: int, diverged: TrainingDiverged | None) -> dict:
    """The summary's ``status`` (and ``message`` unless "ok")."""
    if diverged is not None:
        return {"status": "diverged", "message": str(diverged)}
    chance = 1.0 / n_classes
    if test_accuracy is not None and abs(test_accuracy - chance) <= CHANCE_MARGIN + 1e-12:
        return {"status": "at_chance",
                "message": f"test accuracy {test_accuracy:.4f} is within "
                           f"{100 * CHANCE_MARGIN:g} points of chance (1/{n_classes}): the "
                           f"run did not learn"}
    return {"status": "ok"}


def _check_finite(ds: data.Dataset) -> None:
    """Inputs must be finite: checked once where data enters, not at every step."""
    for split in ("x_train", "x_test"):
        x = getattr(ds, split)
        if not np.isfinite(x).all():
            raise ValueError(f"dataset {ds.name!r}: {split} holds "
                             f"{int((~np.isfinite(x)).sum())} NaN or infinite value(s), "
                             f"must be finite")


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
