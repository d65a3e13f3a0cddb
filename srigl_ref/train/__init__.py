"""Training: the loop (``loop``), its configuration (``config``), the methods
(``methods.REGISTRY``), the engines behind one interface (``engine``, ``condensed_engine``,
``engines.REGISTRY``) and the observers of topology updates (``observers``)."""
from .condensed_engine import CondensedEngine, CondensedTrainLinear, condensed_names
from .config import TrainConfig
from .engine import Engine, MaskedEngine
from .engines import ENGINES
from .loop import (CHANCE_MARGIN, RunState, Trainer, TrainingDiverged, download_printer,
                   run_dataset, train)
from .methods import METHODS, REGISTRY, LayerInput, Method, register

__all__ = ["CHANCE_MARGIN", "CondensedEngine", "CondensedTrainLinear", "ENGINES", "Engine",
           "LayerInput", "METHODS", "MaskedEngine", "Method", "REGISTRY", "RunState",
           "TrainConfig", "Trainer", "TrainingDiverged", "condensed_names", "download_printer",
           "register", "run_dataset", "train"]
