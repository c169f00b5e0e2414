"""The digital training side: second-order optimizers (K-FAC, NGD, thermodynamic NGD) whose
linear algebra goes through one pluggable solver interface (:mod:`digital.solvers`), baselines,
models, data and the training loop. Builds on :mod:`thermo`; knows nothing of co-simulation."""

from .errors import NotAModelError, TrainingDiverged, TrainingInterrupted, TrainingStopped
from .kfac import KFAC, KFACConfig
from .ngd import NGD
from .optimizers import OPTIMIZERS, make_optimizer
from .solvers import available_solvers, get_solver, register_solver
from .tngd import TNGD
from .train import TrainConfig, TrainResult, sidecar_path, train

__all__ = [
    "KFAC",
    "KFACConfig",
    "NGD",
    "NotAModelError",
    "OPTIMIZERS",
    "TNGD",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingStopped",
    "available_solvers",
    "get_solver",
    "make_optimizer",
    "register_solver",
    "sidecar_path",
    "train",
]
