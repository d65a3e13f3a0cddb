"""``tie_break="torch_cpu"`` reproduces the authors' PyTorch CPU results bit for bit.

Every golden case, tie-free and with ties (tests/golden/README.md): mask, weight (bytes, so
signed zeros count), momentum (bytes), ablated order, fan-in and threshold. With ties the
outcome is the order of torch 2.0.1's unstable CPU sort/topk (SPEC-torch-ties.md).
"""
import numpy as np
import pytest

import srigl_ref
from tests.dst.test_golden import RIGL, SRIGL, check_exact, srigl_kwargs


@pytest.mark.parametrize("path", SRIGL, ids=lambda p: p.stem)
def test_srigl_torch_cpu_matches_official(path):
    d = np.load(path)
    check_exact(d, srigl_ref.srigl_update(d["weight"], d["mask"], d["grad"], **srigl_kwargs(d),
                                          tie_break="torch_cpu"))


@pytest.mark.parametrize("path", RIGL, ids=lambda p: p.stem)
def test_rigl_torch_cpu_matches_official(path):
    d = np.load(path)
    check_exact(d, srigl_ref.rigl_update(d["weight"], d["mask"], d["grad"],
                                         drop_fraction=d["drop_fraction"].item(),
                                         momentum=d["momentum"], tie_break="torch_cpu"))
