"""DESIGN.md's dependency rules, checked on the source with ``ast``."""
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


EXPERIMENTS = sorted((PKG.parent / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_experiments_import_no_tests(path):
    for name in imports(path):
        assert name.split(".")[0] != "tests", f"{path} imports {name}"


@pytest.mark.parametrize("path", sorted((PKG.parent / "bench").glob("*.py")),
                         ids=lambda p: str(p.relative_to(PKG.parent)))
def test_benchmarks_import_no_experiments(path):
    for name in imports(path):
        assert name.split(".")[0] != "experiments", f"{path} imports {name}"


def test_the_dask_worker_task_imports_only_the_standard_library():
    """It is shipped to workers that have srigl-ref and Dask, not this repository."""
    path = PKG.parent / "experiments" / "worker_task.py"
    for name in imports(path):
        assert name.split(".")[0] in sys.stdlib_module_names | {"distributed"}, \
            f"{path} imports {name}"
