"""K-FAC as a ``torch.optim.Optimizer`` over the pluggable solver interface."""

from .config import KFACConfig
from .optimizer import KFAC, KFACWarning

__all__ = ["KFAC", "KFACConfig", "KFACWarning"]
