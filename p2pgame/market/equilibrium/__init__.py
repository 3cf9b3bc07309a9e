"""Equilibrium methods as peers: each is one file defining a `Method` and one entry in `REGISTRY`.

`market.solve`, the CLI's `--method` and the scenario's method list read the registry. The Nash
methods share the proximal machinery of `proximal` (state, Newton price steps, cycle and stall
checks, centre moves) and differ in their `PriceRule`; a new method (for example ADMM, whose
x-update is the proximal response) is a file and a line below.
"""

from __future__ import annotations

from p2pgame.errors import InputError
from p2pgame.market.equilibrium.base import Equilibrium, Method, NashMethod
from p2pgame.market.equilibrium.centralized import Centralized
from p2pgame.market.equilibrium.gauss_seidel import GaussSeidel
from p2pgame.market.equilibrium.jacobi import Jacobi
from p2pgame.market.equilibrium.lmp import Locational

REGISTRY: dict[str, Method] = {m.name: m for m in (Jacobi(), GaussSeidel(), Centralized(), Locational())}
METHODS = tuple(REGISTRY)

__all__ = ["Equilibrium", "Method", "NashMethod", "REGISTRY", "METHODS", "method"]


def method(name: str) -> Method:
    """The registered method called `name` (InputError naming the choices otherwise)."""
    if name not in REGISTRY:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {name!r}")
    return REGISTRY[name]
