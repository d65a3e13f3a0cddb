"""Hypothesis profiles and shared fixtures.

``dev`` (default): no deadline (a first Numba call compiles for ~1 s), 50 examples.
``ci`` (selected when the ``CI`` environment variable is set): Hypothesis' built-in CI
profile with 200 examples per property and no deadline.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=50,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("ci"), deadline=None,
                          max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def rng():
    """A fresh, seeded Generator per test (no global seeding anywhere)."""
    return np.random.default_rng(12345)
