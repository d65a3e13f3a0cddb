"""The training engines by name (``TrainConfig.engine``): each builds itself for a run with
``for_run(model, optimizer, masks, sparsities)`` and implements ``engine.Engine``."""
from __future__ import annotations

from .condensed_engine import CondensedEngine
from .engine import Engine, MaskedEngine

REGISTRY: dict[str, type[Engine]] = {"masked": MaskedEngine, "condensed": CondensedEngine}
ENGINES = tuple(REGISTRY)
