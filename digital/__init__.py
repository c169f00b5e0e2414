"""The digital training side: second-order optimizers (K-FAC, NGD, thermodynamic NGD) whose
linear algebra goes through one pluggable solver interface (:mod:`digital.solvers`), baselines,
models, data and the training loop. Builds on :mod:`thermo`; knows nothing of co-simulation."""

from .kfac import KFAC, KFACConfig
from .solvers import available_solvers, get_solver, register_solver

__all__ = ["KFAC", "KFACConfig", "available_solvers", "get_solver", "register_solver"]
