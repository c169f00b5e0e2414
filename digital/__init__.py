"""The digital training side: second-order optimizers (K-FAC, NGD, thermodynamic NGD) whose
linear algebra goes through one pluggable solver interface (:mod:`digital.solvers`), baselines,
models, data and the training loop. Builds on :mod:`thermo`; knows nothing of co-simulation.

One registry per kind (:class:`thermo.registry.Registry`, names in any case): :data:`OPTIMIZERS`,
:data:`SOLVERS` and :data:`TASKS`, the lists that lookups, the CLI's choices and help texts read."""

from .errors import NotAModelError, TrainingDiverged, TrainingInterrupted, TrainingStopped
from .kfac import KFAC, KFACConfig
from .ngd import NGD
from .optimizers import OPTIMIZERS, make_optimizer, register_optimizer
from .solvers import SOLVERS, available_solvers, get_solver, register_solver
from .tasks import TASKS
from .tngd import TNGD
from .train import TrainConfig, TrainResult, sidecar_path, train

__all__ = [
    "KFAC",
    "KFACConfig",
    "NGD",
    "NotAModelError",
    "OPTIMIZERS",
    "SOLVERS",
    "TASKS",
    "TNGD",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "TrainingStopped",
    "available_solvers",
    "get_solver",
    "make_optimizer",
    "register_optimizer",
    "register_solver",
    "sidecar_path",
    "train",
]
