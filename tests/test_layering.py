"""DESIGN.md's dependency rules, checked on the source with ``ast``.

Layers, top down: ``cli`` -> ``train`` (the loop, engines, methods, observers) -> ``data``,
``checkpoint``, ``interchange`` -> ``dst``, ``nn``, ``condensed`` (the core) -> ``_validate``.
"""
import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "srigl_ref"
SOURCES = sorted(PKG.rglob("*.py"))
FORBIDDEN_EVERYWHERE = {"torch", "jax", "tensorflow", "tests", "bench", "experiments"}


def imports(path: Path) -> list[str]:
    """Absolute dotted names a module imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names += [mod] + [f"{mod}.{a.name}" for a in node.names] if not node.module else [mod]
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_forbidden_imports(path):
    for name in imports(path):
        assert name.split(".")[0] not in FORBIDDEN_EVERYWHERE, f"{path} imports {name}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name == "_kernels.py"
                                  or p.name.startswith("_") and "kernels" in p.name],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_kernel_files_import_only_numpy_and_numba(path):
    for name in imports(path):
        # llvmlite: numba's own code generator (installed with it), for LLVM-level kernels
        assert name.split(".")[0] in {"__future__", "numpy", "numba", "llvmlite", "math"}, \
            f"{path} imports {name}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent.name in ("dst", "nn",
                                                                         "condensed")],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_core_does_not_import_upward(path):
    for name in imports(path):
        assert not name.startswith(("srigl_ref.train", "srigl_ref.cli", "srigl_ref.data",
                                    "srigl_ref.checkpoint")), f"{path} imports {name}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent.name == "data"],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_data_imports_only_its_own_modules_and_validation(path):
    """data/ sits below train and cli: of the package it reads only ``_validate``."""
    for name in imports(path):
        if name.startswith("srigl_ref"):
            assert name.startswith(("srigl_ref.data", "srigl_ref._validate")), \
                f"{path} imports {name}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent.name == "data"],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_data_does_not_print(path):
    """Only train and cli print: data reports download progress through a callback."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Name) and node.id == "print"), f"{path} prints"
        assert not (isinstance(node, ast.Attribute) and node.attr in ("stderr", "stdout")), \
            f"{path} writes to sys.{node.attr}"


TRAIN_MAY_IMPORT = ("srigl_ref._validate", "srigl_ref.dst", "srigl_ref.nn",
                    "srigl_ref.condensed", "srigl_ref.data", "srigl_ref.checkpoint",
                    "srigl_ref.interchange", "srigl_ref.train")


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parent.name == "train"],
                         ids=lambda p: str(p.relative_to(PKG)))
def test_train_imports_only_lower_layers(path):
    for name in imports(path):
        if name.startswith("srigl_ref."):      # ``from .. import x`` also lists srigl_ref.x
            assert name.startswith(TRAIN_MAY_IMPORT), f"{path} imports {name}"


def test_training_loop_has_no_branch_on_a_method_or_engine_name():
    """The loop asks the method's registry entry and the engine; it never compares the
    configured method or engine with a name (``config.engine == "condensed"``)."""
    from srigl_ref.train import ENGINES, METHODS
    tree = ast.parse((PKG / "train" / "loop.py").read_text())
    names = set(METHODS) | set(ENGINES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                for sub in ast.walk(operand):
                    assert not (isinstance(sub, ast.Constant) and sub.value in names), \
                        f"loop.py line {node.lineno} compares with {sub.value!r}"
                    assert not (isinstance(sub, ast.Attribute) and sub.attr in ("method",
                                                                                "engine")
                                and isinstance(sub.ctx, ast.Load)
                                and isinstance(sub.value, ast.Attribute)
                                and sub.value.attr == "config"), \
                        f"loop.py line {node.lineno} compares config.{sub.attr}"


EXPERIMENTS = sorted((PKG.parent / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_experiments_import_no_tests(path):
    for name in imports(path):
        assert name.split(".")[0] != "tests", f"{path} imports {name}"


@pytest.mark.parametrize("path", sorted((PKG.parent / "bench").glob("*.py")),
                         ids=lambda p: str(p.relative_to(PKG.parent)))
def test_benchmarks_import_no_experiments_and_no_tests(path):
    for name in imports(path):
        assert name.split(".")[0] not in ("experiments", "tests"), f"{path} imports {name}"


def test_the_dask_worker_task_imports_only_the_standard_library():
    """It is shipped to workers that have srigl-ref and Dask, not this repository."""
    path = PKG.parent / "experiments" / "worker_task.py"
    for name in imports(path):
        assert name.split(".")[0] in sys.stdlib_module_names | {"distributed"}, \
            f"{path} imports {name}"
