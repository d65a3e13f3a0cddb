"""Interchange with other implementations and tools (docs/interchange.md).

- ``cases``: one topology update as a file (the golden-vector schema); ``write_case`` for
  training traces.
- ``replay``: run our update on a case or a directory of cases and compare.
- ``diagnose``: what differs, in the algorithm's causal order (count, ablation, fan-in,
  keep, cap, grow, weight, momentum).
- ``explain``: the named deviations of ``dst.reference`` that reproduce a case's outputs.
- ``torch_pickle``: read ``torch.save`` zip files without PyTorch through a restricted
  unpickler.
- ``safetensors``: read and write ``.safetensors``.
- ``layers``: the sparse layers of a checkpoint, whatever its format and mask convention.
- ``inspect``: per-layer reports (density, constant fan-in, ablated neurons).
- ``export``: a trained ``model.npz`` as safetensors or a PyTorch-prune-compatible npz.
"""
from .cases import Case, read_case, trace_path, write_case, write_result
from .diagnose import Diagnosis, Mismatch, compare
from .export import export_model
from .inspect import LayerReport, inspect_file, layer_report
from .layers import SparseLayer, load_layers
from .replay import Replay, replay_dir, replay_file, run_case
from .safetensors import read_safetensors, write_safetensors
from .torch_pickle import UnsafePickleError, load_torch

__all__ = [
    "Case", "Diagnosis", "LayerReport", "Mismatch", "Replay", "SparseLayer",
    "UnsafePickleError",
    "compare", "export_model", "inspect_file", "layer_report", "load_layers", "load_torch",
    "read_case", "read_safetensors", "replay_dir", "replay_file", "run_case", "trace_path",
    "write_case", "write_result", "write_safetensors",
]
