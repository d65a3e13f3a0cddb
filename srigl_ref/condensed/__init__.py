"""Condensed inference for constant fan-in layers (docs/algorithm.md §9)."""
from .format import CondensedLinear, condense
from .matmul import condensed_matmul, condensed_matmul_backward
from .model import CondensedModel, LayerReport, condense_model
from .storage import from_checkpoint, load_condensed, model_from_checkpoint

__all__ = ["CondensedLinear", "condense", "condensed_matmul", "condensed_matmul_backward",
           "CondensedModel", "LayerReport", "condense_model", "from_checkpoint",
           "load_condensed", "model_from_checkpoint"]
