"""Experiments: the sweep over methods, densities, seeds and models, and its report.

Scripts, run from the repository root (``python experiments/sweep.py``,
``python experiments/report.py``); see ``experiments/README.md``.
"""
