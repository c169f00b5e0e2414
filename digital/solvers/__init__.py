"""Pluggable linear-algebra backends for second-order training.

>>> from digital.solvers import get_solver
>>> solver = get_solver("exact")          # or "cg", or "thermo" (hardware="published", ...)
>>> out = solver.solve(A, B, damping=1e-3)
>>> out.x, out.diagnostics.residual, out.diagnostics.analog_time_s

``SOLVERS`` is the registry of backends (names in any case; ``SOLVERS.help()`` for help texts).
"""

from .base import InverseOutput, LinearSolver, MatVec, SolveOutput, SolverDiagnostics
from .cg import ConjugateGradientSolver, SolverWarning
from .exact import ExactSolver
from .registry import SOLVERS, available_solvers, get_solver, register_solver
from .thermo_backend import ThermoSolver

__all__ = [
    "ConjugateGradientSolver",
    "ExactSolver",
    "InverseOutput",
    "LinearSolver",
    "MatVec",
    "SOLVERS",
    "SolveOutput",
    "SolverDiagnostics",
    "SolverWarning",
    "ThermoSolver",
    "available_solvers",
    "get_solver",
    "register_solver",
]
