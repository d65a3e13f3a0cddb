"""Condensed inference for constant fan-in layers (SPEC section 9)."""
from .format import CondensedLinear, condense
from .matmul import condensed_matmul, condensed_matmul_backward

__all__ = ["CondensedLinear", "condense", "condensed_matmul", "condensed_matmul_backward"]
