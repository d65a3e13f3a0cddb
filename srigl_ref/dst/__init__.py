"""SRigL and its baselines: sparsities, schedule, masks, ablation and topology updates."""
from .masks import check_constant_fan_in, fan_in, random_fan_in_mask, random_mask
from .schedule import UpdateSchedule, drop_fraction, update_steps
from .sparsity import constant_fan_in, fan_in_budget, layer_sparsities
from .topology import TopologyUpdate, rigl_update, set_update, srigl_update

__all__ = [
    "TopologyUpdate", "UpdateSchedule", "check_constant_fan_in", "constant_fan_in",
    "drop_fraction", "fan_in", "fan_in_budget", "layer_sparsities", "random_fan_in_mask",
    "random_mask", "rigl_update", "set_update", "srigl_update", "update_steps",
]
