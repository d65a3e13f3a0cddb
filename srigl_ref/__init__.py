"""srigl-ref: the reference implementation of SRigL in NumPy and Numba.

Public names are those of ``docs/api.md``; see the README for a tour.
"""
from .condensed import CondensedLinear, condense, condensed_matmul
from .dst import (TopologyUpdate, check_constant_fan_in, constant_fan_in, drop_fraction,
                  fan_in, fan_in_budget, layer_sparsities, random_fan_in_mask, rigl_update,
                  set_update, srigl_update, update_steps)

__version__ = "0.1.0"

__all__ = [
    "CondensedLinear", "condense", "condensed_matmul",
    "TopologyUpdate", "check_constant_fan_in", "constant_fan_in", "drop_fraction", "fan_in",
    "fan_in_budget", "layer_sparsities", "random_fan_in_mask", "rigl_update", "set_update",
    "srigl_update", "update_steps",
]
