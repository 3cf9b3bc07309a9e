"""p2pgame: competitive equilibria of P2P active and reactive power markets under dynamic operating envelopes."""

from p2pgame.errors import ConvergenceError, InputError, SolverError

__all__ = ["InputError", "SolverError", "ConvergenceError"]
__version__ = "0.1.0"
