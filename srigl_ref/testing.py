"""Differential testing: check another implementation's topology update against srigl-ref.

``check_update(fn)`` runs a user's update function and srigl-ref's on layer states that
hypothesis generates, compares them as ``srigl-ref replay --expect`` does
(``interchange.diagnose``), shrinks the first disagreement to a small layer, names the
stage that differs and the named deviation that reproduces it
(``interchange.explain``). The strategies are public, for property tests of one's own.

Needs hypothesis, an optional dependency: ``pip install 'srigl-ref[testing]'``. See
``docs/cross-validation.md`` for the recipe.

The function under test is called as ``fn(weight, mask, grad, **kwargs)`` with the keywords
it accepts among ``sparsity``, ``drop_fraction``, ``gamma_sal``, ``momentum``, ``ablation``,
``ablation_base`` and ``grown_init`` (srigl-ref uses its defaults for the others). It
returns a mapping or an object with ``mask`` and ``weight`` and, optionally, ``momentum``,
``ablated`` (the ablated neurons) and ``fan_in`` (``k`` after the update), in the layout
and dtype of the inputs (PyTorch's ``[out, in]`` / ``[out, C_in, kh, kw]``; weights zero
outside the mask, float32 stays float32).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_choice, check_int
from .dst import rigl_update, srigl_update
from .dst.topology import TIE_BREAKS
from .interchange.cases import Case
from .interchange.diagnose import Diagnosis, compare
from .interchange.explain import explain

METHODS = ("srigl", "rigl")
KEYWORDS = ("sparsity", "drop_fraction", "gamma_sal", "momentum", "ablation", "ablation_base",
            "grown_init")
REQUIRED = {"srigl": ("sparsity", "drop_fraction"), "rigl": ("drop_fraction",)}
WEAK = 1e-3                   # the scale of a weak row: small |W| or |G| (ablation's prey)


def _hypothesis():
    """The hypothesis package, or a one-line error naming the extra that installs it."""
    try:
        import hypothesis
    except ImportError:
        raise ModuleNotFoundError("srigl_ref.testing needs the hypothesis package: pip "
                                  "install 'srigl-ref[testing]'") from None
    return hypothesis


# ------------------------------------------------------------------ strategies
def weight_shapes(*, max_weights: int = 1024, conv: bool = True):
    """Strategy for weight shapes: Linear ``(out, in)`` or, if ``conv``, ``(out, C_in, kh, kw)``.

    Parameters
    ----------
    max_weights : int >= 1
        Largest ``prod(shape)``. Shapes shrink towards ``(1, 1)``.
    conv : bool
        Also draw 4-d convolution shapes.

    Returns
    -------
    hypothesis strategy of tuple of int
    """
    st = _hypothesis().strategies
    check_int("max_weights", max_weights, low=1)

    @st.composite
    def shapes(draw):
        if conv and draw(st.booleans()):
            kh = draw(st.integers(1, 3))
            kw = draw(st.integers(1, 3))
            c_in = draw(st.integers(1, max(1, min(8, max_weights // (kh * kw)))))
            out = draw(st.integers(1, max(1, min(16, max_weights // (c_in * kh * kw)))))
            return (out, c_in, kh, kw)
        out = draw(st.integers(1, max(1, min(32, max_weights))))
        return (out, draw(st.integers(1, max(1, max_weights // out))))
    return shapes()


def layer_states(method: str = "srigl", *, max_weights: int = 1024, conv: bool = True,
                 ties: bool = False, dtype=np.float32):
    """Strategy for one layer just before a topology update, as keyword arguments.

    Draws a shape (``weight_shapes``), a budget and its sparsity, previously ablated rows
    (SRigL: empty rows, the others at the constant fan-in ``B // (out - a)``; RigL: a
    random mask of the same density), weak rows (``|W|`` or ``|G|`` scaled by 1e-3, so that
    ablation and emptied rows happen), exact zeros among active weights, inactive weights
    stored as ``-0.0`` or ``+0.0``, a momentum buffer, a drop fraction (round values,
    uniform, or just below a count boundary ``j / n_ones``, where rounding conventions
    differ) and ``gamma_sal`` (fractions and absolute counts). Array contents come from a
    ``numpy.random.Generator`` seeded by a drawn seed.

    Parameters
    ----------
    method : {"srigl", "rigl"}
    max_weights : int
        Largest layer size.
    conv : bool
        Also draw convolution shapes.
    ties : bool
        Integer-valued weights and gradients in [-3, 3], so that magnitudes tie and the
        tie-break decides part of the update.
    dtype : numpy.float32 or numpy.float64

    Returns
    -------
    hypothesis strategy of dict
        ``weight``, ``mask``, ``grad``, ``momentum`` (arrays of the weight's shape; the
        mask bool, the others ``dtype``), ``sparsity``, ``drop_fraction`` and, for SRigL,
        ``gamma_sal``.
    """
    st = _hypothesis().strategies
    check_choice("method", method, METHODS)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype == {dtype}, must be float32 or float64")
    fractions = st.one_of(st.sampled_from([0.3, 0.1, 0.25, 0.5, 0.7, 0.9]),
                          st.floats(0.0, 1.0), st.just(None))    # None: a count boundary
    gammas = st.one_of(st.sampled_from([0.3, 0.1, 0.35, 0.5, 0.75, 0.9]),
                       st.floats(0.0, 0.99), st.integers(1, 4).map(float))

    @st.composite
    def states(draw):
        shape = draw(weight_shapes(max_weights=max_weights, conv=conv))
        out, fan = shape[0], math.prod(shape[1:])
        budget = draw(st.integers(out, out * fan))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        max_ablated = max(a for a in range(out) if budget // (out - a) <= fan)
        n_ablated = draw(st.integers(0, max_ablated))
        weak_w, weak_g, zeros = (draw(st.sampled_from([0.0, 0.25, 0.5])) for _ in range(3))
        mask = _initial_mask(rng, method, out, fan, budget, n_ablated)        # [out, F]
        weight = _values(rng, (out, fan), ties, weak_w) * mask
        weight[mask & (rng.random((out, fan)) < zeros)] = 0.0
        if draw(st.booleans()):                         # inactive weights as after w *= m
            weight = np.where(mask, weight, -0.0)
        grad = _values(rng, (out, fan), ties, weak_g)
        momentum = rng.standard_normal((out, fan)) * mask
        df = draw(fractions)
        if df is None:                                  # just below j / n_ones
            n_ones = max(int(mask.sum()), 1)
            df = max(0.0, draw(st.integers(1, n_ones)) / n_ones - 1e-9)
        state = dict(weight=weight.astype(dtype).reshape(shape), mask=mask.reshape(shape),
                     grad=grad.astype(dtype).reshape(shape),
                     momentum=momentum.astype(dtype).reshape(shape),
                     sparsity=_sparsity(budget, out * fan), drop_fraction=float(df))
        if method == "srigl":
            state["gamma_sal"] = draw(gammas)
        return state
    return states()


def _initial_mask(rng, method, out, fan, budget, n_ablated) -> np.ndarray:
    """SRigL: constant fan-in ``B // (out - a)`` outside ``a`` empty rows; RigL: random."""
    if method == "rigl":
        mask = np.zeros(out * fan, np.bool_)
        mask[rng.choice(out * fan, size=budget, replace=False)] = True
        return mask.reshape(out, fan)
    k = budget // (out - n_ablated)
    mask = np.zeros((out, fan), np.bool_)
    ablated = rng.choice(out, size=n_ablated, replace=False)
    for i in np.setdiff1d(np.arange(out), ablated):
        mask[i, rng.choice(fan, size=k, replace=False)] = True
    return mask


def _values(rng, shape, ties, weak_fraction) -> np.ndarray:
    """Normal (or, with ``ties``, integer) values; a ``weak_fraction`` of rows scaled down."""
    a = rng.integers(-3, 4, size=shape).astype(np.float64) if ties else \
        rng.standard_normal(shape)
    a[rng.random(shape[0]) < weak_fraction] *= WEAK
    return a


def _sparsity(budget: int, size: int) -> float:
    """A sparsity ``S`` with ``int(size * (1 - S)) == budget``."""
    return 0.0 if budget == size else 1 - (budget + 0.5) / size


# ------------------------------------------------------------------ the check
@dataclass(frozen=True)
class CheckReport:
    """What ``check_update`` found.

    Attributes
    ----------
    ok : bool
        The function agreed with srigl-ref on every generated state.
    case : dict or None
        The shrunk minimal disagreeing state, keyed like the function's arguments
        (``weight``, ``mask``, ``grad``, and the keywords it accepts); None if ``ok``.
    stage : str or None
        The first stage that differs on ``case`` (``interchange.diagnose.STAGES``), or
        ``"error"`` if the function raised.
    explanation : str
        The named deviations of ``srigl_ref.dst.reference`` that reproduce the function's
        output on ``case`` (``interchange.explain``); empty if ``ok``.
    diagnosis : Diagnosis or None
        The full diagnosis of ``case``.
    method : str
    examples : int
        How many states were run (shrinking included).
    """
    ok: bool
    case: dict | None
    stage: str | None
    explanation: str
    diagnosis: Diagnosis | None
    method: str
    examples: int

    def describe(self) -> str:
        """A few lines for people: the verdict, the minimal case, the diagnosis."""
        if self.ok:
            return (f"xcheck {self.method}: agrees with srigl-ref on all {self.examples} "
                    f"generated layer states")
        lines = [f"xcheck {self.method}: DISAGREES with srigl-ref (after {self.examples} "
                 f"states); minimal case:"]
        for key, value in self.case.items():
            if isinstance(value, np.ndarray):
                lines.append(f"  {key} ({value.dtype}, shape {value.shape}) =")
                lines.extend("    " + row for row in np.array2string(
                    value.reshape(value.shape[0], -1), precision=4,
                    max_line_width=96, threshold=10**6).splitlines())
            else:
                lines.append(f"  {key} = {value!r}")
        if self.diagnosis is not None:
            lines.append("diagnosis ('file' is the function's output):")
            lines.append(self.diagnosis.describe())
        else:
            lines.append(f"stage error: {self.explanation}")
            return "\n".join(lines)
        lines.append(self.explanation)
        return "\n".join(lines)


class _Disagreement(Exception):
    """Raised inside the property so that hypothesis shrinks the state."""


def check_update(fn, method: str = "srigl", max_examples: int = 200, seed: int = 0, *,
                 tie_break: str = "stable", ties: bool = False, max_weights: int = 1024,
                 dtype=np.float32) -> CheckReport:
    """Run ``fn`` and srigl-ref on generated layer states; shrink and explain a disagreement.

    Parameters
    ----------
    fn : callable
        ``fn(weight, mask, grad, *, sparsity, drop_fraction, gamma_sal, momentum, ...)``
        returning a mapping or object with ``mask``, ``weight`` and optionally
        ``momentum``, ``ablated``, ``fan_in`` (module docstring). It must accept
        ``drop_fraction`` (and, for SRigL, ``sparsity``).
    method : {"srigl", "rigl"}
    max_examples : int >= 1
        Generated states (hypothesis' ``max_examples``; shrinking runs more).
    seed : int
        Hypothesis' seed: the same seed gives the same states and report.
    tie_break : {"stable", "torch_cpu"}
        srigl-ref's tie-break (``torch_cpu``: the authors' PyTorch CPU order).
    ties : bool
        Generate tied magnitudes (``layer_states``).
    max_weights : int
        Largest layer generated.
    dtype : numpy.float32 or numpy.float64

    Returns
    -------
    CheckReport

    Raises
    ------
    TypeError
        ``fn`` is not callable or lacks a required keyword.
    ValueError
        Bad arguments, or ``fn`` returned outputs of the wrong shape or dtype.
    ModuleNotFoundError
        hypothesis is not installed.
    """
    hypothesis = _hypothesis()
    check_choice("method", method, METHODS)
    check_choice("tie_break", tie_break, TIE_BREAKS)
    check_int("max_examples", max_examples, low=1)
    check_int("seed", seed)
    accepted = _accepted_keywords(fn, method)
    runs, failures = [0], []
    states = layer_states(method, max_weights=max_weights, ties=ties, dtype=dtype)

    @hypothesis.seed(seed)
    @hypothesis.settings(max_examples=max_examples, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         report_multiple_bugs=False, verbosity=hypothesis.Verbosity.quiet,
                         print_blob=False)
    @hypothesis.given(states)
    def agree(state):
        runs[0] += 1
        found = _check_one(fn, method, state, accepted, tie_break)
        if found is not None:
            failures.append(found)
            raise _Disagreement()

    try:
        agree()
    except _Disagreement:
        case, diagnosis, message, full = failures[-1]       # the shrunk one is replayed last
        if diagnosis is None:
            return CheckReport(False, case, "error", message, None, method, runs[0])
        return CheckReport(False, case, diagnosis.stage, explain(full).text, diagnosis,
                           method, runs[0])
    return CheckReport(True, None, None, "", None, method, runs[0])


def _accepted_keywords(fn, method) -> tuple:
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):                     # builtins without a signature
        return KEYWORDS
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return KEYWORDS
    accepted = tuple(k for k in KEYWORDS if k in params)
    for key in REQUIRED[method]:
        if key not in accepted:
            raise TypeError(f"fn {getattr(fn, '__name__', fn)!r} must accept the keyword "
                            f"{key!r} (a {method} update)")
    return accepted


def _check_one(fn, method, state, accepted, tie_break):
    """None if ``fn`` agrees on ``state``; else ``(case, diagnosis, message, full Case)``."""
    kwargs = {k: state[k] for k in accepted if k in state}
    kwargs.update({k: v for k, v in (("ablation", True), ("ablation_base", "sparse"),
                                     ("grown_init", 0.0)) if k in accepted})
    case = dict(weight=state["weight"], mask=state["mask"], grad=state["grad"], **kwargs)
    ours_kw = {k: kwargs[k] for k in ("drop_fraction", "momentum") if k in kwargs}
    if method == "srigl":
        ours_kw.update(sparsity=state["sparsity"], gamma_sal=kwargs.get("gamma_sal", 0.3))
        update = srigl_update
    else:
        update = rigl_update
    try:
        ours = update(state["weight"], state["mask"], state["grad"], tie_break=tie_break,
                      **ours_kw)
    except ValueError:                                  # not a state srigl-ref accepts
        _hypothesis().reject()
    try:
        theirs = fn(*(np.array(case[k]) for k in ("weight", "mask", "grad")),
                    **{k: (v.copy() if isinstance(v, np.ndarray) else v)
                       for k, v in kwargs.items()})
    except Exception as e:                              # a crash on a valid state
        return case, None, f"fn raised {type(e).__name__}: {e}", None
    full = _as_case(method, state, kwargs, theirs)
    diagnosis = compare(full, ours, tie_break=tie_break)
    return None if diagnosis is None else (case, diagnosis, "", full)


def _as_case(method, state, kwargs, theirs) -> Case:
    """The state and ``fn``'s outputs in the case-file schema (docs/interchange.md)."""
    weight = state["weight"]
    arrays = dict(weight=weight, mask=state["mask"], grad=state["grad"],
                  drop_fraction=np.float64(state["drop_fraction"]))
    if "momentum" in kwargs:
        arrays["momentum"] = state["momentum"]
    if method == "srigl":
        arrays.update(sparsity=np.float64(state["sparsity"]),
                      gamma_sal=np.float64(kwargs.get("gamma_sal", 0.3)),
                      dynamic_ablation=np.bool_(True),
                      use_sparse_const_fan_in_for_ablation=np.bool_(True),
                      ablation_exempt=np.bool_(False))
    arrays["mask_out"] = _output(theirs, "mask", np.bool_, weight.shape)
    arrays["weight_out"] = _output(theirs, "weight", weight.dtype, weight.shape)
    momentum = _output(theirs, "momentum", weight.dtype, weight.shape, required=False)
    if momentum is not None and "momentum" in arrays:
        arrays["momentum_out"] = momentum
    if method == "srigl":
        ablated = _output(theirs, "ablated", None, None, required=False)
        if ablated is not None:
            arrays["ablated"] = np.asarray(ablated, np.int64).ravel()
        fan_in = _output(theirs, "fan_in", None, None, required=False)
        if fan_in is not None:
            arrays["k_out"] = np.int64(fan_in)
    return Case("check_update", method, arrays, {})


def _output(result, name, dtype, shape, *, required=True):
    """``result[name]`` or ``result.name`` as an array of ``dtype`` and ``shape``."""
    value = result.get(name) if hasattr(result, "get") else getattr(result, name, None)
    if value is None:
        if required:
            raise ValueError(f"fn returned {type(result).__name__} without {name!r}; it "
                             f"must return a mapping or object with 'mask' and 'weight'")
        return None
    if hasattr(value, "detach"):                        # a torch tensor
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if shape is not None and value.shape != shape:
        raise ValueError(f"fn returned {name} of shape {value.shape}, must be {shape} (the "
                         f"weight's)")
    if dtype is not None and value.dtype != np.dtype(dtype):
        if dtype is np.bool_ and value.dtype.kind in "biuf" and np.isin(value, (0, 1)).all():
            return value.astype(np.bool_)               # a 0/1 mask
        raise ValueError(f"fn returned {name} of dtype {value.dtype}, must be "
                         f"{np.dtype(dtype)} (compared bitwise with the input's dtype)")
    return value
