"""The agent interface: one Pyomo block definition serves the best response and the centralised problem.

An agent type says, once, in `build(block, T, dt_h)`:
- its variables and constraints (on the block),
- its own value `block.value` (F_i, to maximise, in $),
- its net exports `block.p[t]` (kW) and `block.q[t]` (kvar), affine in its variables.

The framework compiles that block once into arrays (`AgentModel`) and then
- solves the best response at any prices and envelope without touching Pyomo again;
- hands the same compiled arrays to the centralised problem (`p2pgame.market`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Hashable

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from p2pgame.errors import InputError


@dataclass(frozen=True)
class Capability:
    """The physical range of an agent's net exports per period (an outer box, kW / kvar)."""

    pmin_kw: np.ndarray
    pmax_kw: np.ndarray
    qmin_kvar: np.ndarray
    qmax_kvar: np.ndarray


@dataclass
class Response:
    """An agent's decision at given prices: net exports, own value, payoff and solver status."""

    agent_id: str
    p_kw: np.ndarray
    q_kvar: np.ndarray
    own_value: float
    payoff: float
    status: str
    success: bool
    iterations: int
    x: np.ndarray = field(repr=False)
    decisions: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    # the solver's result with its multipliers (the next solve's warm start); None for a response
    # computed on a parallel executor's worker, where it stays
    solution: object = field(repr=False, default=None)

    def table(self) -> pd.DataFrame:
        """Decisions per period as a DataFrame (one column per decision variable)."""
        cols = {"p_kw": self.p_kw, "q_kvar": self.q_kvar}
        cols.update({k: v for k, v in self.decisions.items() if np.ndim(v) == 1 and len(v) == len(self.p_kw)})
        return pd.DataFrame(cols, index=pd.RangeIndex(len(self.p_kw), name="period"))


class Agent(ABC):
    """A market participant defined by one Pyomo block.

    Subclasses implement `build`; they may override `validate` (checks of their
    own parameters), `capability` (a tight box of their feasible net exports) and
    `der_rating_kw` (used by proportional envelope policies).

    Class attributes a type may set:
    - `kind`: its short name in summaries (default: the class name in lower case);
    - `result_columns`: decision variable -> column of `customers.csv`, unit included
      (`{"g": "pv_used_kw"}`). A column ending in `_kwh` is a stored energy at the end of
      each period (the plots draw every such column as "stored energy", labelled by its
      name). Undeclared variables are written as `<kind>_<variable>`
      (`result_column`), so no type's variable is shown under another type's label;
    - `result_inputs`: attribute holding a per-period input -> its column
      (`{"pv_kw": "pv_available_kw"}`);
    - `spec`: an `AgentSpec` subclass validating its parameters in scenario files
      (default: derived from the constructor, see `p2pgame.agents.registry`).
    """

    kind = "agent"
    result_columns: ClassVar[dict[str, str]] = {}
    result_inputs: ClassVar[dict[str, str]] = {}
    spec: ClassVar[type | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind == "agent":
            cls.kind = cls.__name__.lower()

    @classmethod
    def result_column(cls, variable: str) -> str:
        """The `customers.csv` column of a decision variable: declared, or `<kind>_<variable>`."""
        return cls.result_columns.get(variable, f"{cls.kind}_{variable}")

    def __init__(self, id: str, node: str | None = None):
        if not isinstance(id, str) or not id:
            raise InputError(f"agent id must be a non-empty string, got {id!r}")
        self.id = id
        self.node = None if node is None else str(node)
        self.phases: str | None = None  # phases it connects to on a three-phase feeder, None: all of its node's
        self._models: dict[tuple[int, float], "AgentModel"] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, node={self.node!r})"

    def __getstate__(self) -> dict:
        """Pickle the definition only: compiled models are rebuilt on demand (an `AgentModel` pickles itself)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_models", "_checked")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._models = {}

    @abstractmethod
    def build(self, b: pyo.Block, T: int, dt_h: float) -> None:
        """Declare variables and constraints on `b`; define `b.p[t]`, `b.q[t]` (kW, kvar) and `b.value` ($)."""

    def parameters(self, T: int, dt_h: float) -> dict | None:
        """Its numbers by name (floats, or 1-D arrays), checked; None (the default): it compiles on its own.

        A type that returns them reads them in `build` through `values` and says in `structure`
        what else shapes its model; agents of one type and structure then compile once together
        (`p2pgame.agents.compile_population`), each filling in its own numbers."""
        return None

    def structure(self, T: int, dt_h: float) -> Hashable:
        """Everything besides `parameters` that shapes the model `build` declares: which variables,
        constraints and terms it adds (Python branches) and the values it fixes variables to."""
        return None

    def values(self, b: pyo.Block, T: int, dt_h: float) -> dict:
        """The numbers `build` reads: `parameters(T, dt_h)`, or, while a template of its type is compiled,
        mutable Pyomo Params standing for them (for expressions and bounds only, never Python branches)."""
        slots = getattr(b, "_parameter_slots", None)
        return self.parameters(T, dt_h) if slots is None else slots

    def validate(self, T: int, dt_h: float) -> None:
        """Raise InputError naming this agent and the field when a parameter is unusable."""

    @property
    def der_rating_kw(self) -> float:
        """Size of the agent's controllable resources, for proportional envelope policies."""
        return 0.0

    def phase_shares(self, node_phases: str = "abc") -> np.ndarray:
        """Fixed shares `(3,)` of its net `p` and `q` on phases a, b, c of a three-phase feeder whose node has
        `node_phases`: equal over `phases` (all of the node's when unset). A single-phase feeder ignores them."""
        phases = node_phases if self.phases is None else self.phases
        if not phases or set(phases) - set(node_phases) or len(set(phases)) != len(phases):
            raise InputError(
                f"agent {self.id!r}: phases {phases!r} must be distinct phases of its node {self.node} ({node_phases})"
            )
        return np.array([1.0 / len(phases) if ph in phases else 0.0 for ph in "abc"])

    def reactive_without_trading(self, T: int, dt_h: float) -> np.ndarray:
        """Net reactive export (kvar per period) when reactive power is not traded: unity power factor."""
        return np.zeros(T)

    def capability(self, T: int, dt_h: float) -> Capability:
        """Outer box of the feasible net exports, from the variable bounds (override for a tighter one)."""
        return self.model(T, dt_h).capability_from_bounds()

    def model(self, T: int, dt_h: float) -> "AgentModel":
        """The compiled model of this agent for T periods of dt_h hours (built once, then cached).

        Its state (envelope, warm start) is this agent's own, for `best_response` and `check_box`;
        a game takes its own `fork()` of it, sharing the compiled arrays."""
        key = (int(T), float(dt_h))
        if key not in self._models:
            from p2pgame.agents.model import AgentModel

            self.validate(T, dt_h)
            self._models[key] = AgentModel(self, T, dt_h)
        return self._models[key]

    def best_response(
        self,
        prices,
        envelope=None,
        *,
        dt_h: float = 1.0,
        proximal=None,
        solver: str = "auto",
    ) -> Response:
        """Maximise own value plus market revenue at the given prices, inside the envelope.

        `prices` is a `Prices` or a pair (active $/kWh (T,), reactive $/kvarh (T,) or None);
        `envelope` is a `Box` or None (no envelope). The model is compiled on the first
        call and re-solved from the previous solution afterwards.
        """
        from p2pgame.agents.model import Box, Prices

        prices = Prices.coerce(prices)
        box = Box.unlimited(prices.periods) if envelope is None else envelope
        return self.model(prices.periods, dt_h).best_response(prices, box, proximal=proximal, solver=solver)

    def check_envelope(self, pmin_kw, pmax_kw, qmin_kvar, qmax_kvar, dt_h: float = 1.0) -> None:
        """Raise InputError (customer, period, limit) if no feasible operating point lies inside the box."""
        from p2pgame.agents.model import Box

        box = Box(pmin_kw, pmax_kw, qmin_kvar, qmax_kvar)
        self.model(box.periods, dt_h).check_box(box)


def profile(agent_id: str, field_name: str, value, T: int, *, lower: float | None = None) -> np.ndarray:
    """A per-period parameter as a float array of length T (scalars broadcast), checked finite."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(T, float(arr))
    if arr.ndim != 1 or len(arr) != T:
        raise InputError(f"agent {agent_id!r}: {field_name} has {arr.size} values, expected {T} (one per period)")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"agent {agent_id!r}: {field_name} contains NaN or infinite values")
    if lower is not None and np.any(arr < lower):
        raise InputError(f"agent {agent_id!r}: {field_name} must be >= {lower:g}, got {arr.min():g}")
    return arr


def scalar(agent_id: str, field_name: str, value, *, lower: float | None = None, upper: float | None = None,
           strict_lower: bool = False) -> float:
    """A scalar parameter, checked finite and within bounds, with a message naming agent and field."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"agent {agent_id!r}: {field_name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise InputError(f"agent {agent_id!r}: {field_name} must be finite, got {v}")
    if lower is not None and (v <= lower if strict_lower else v < lower):
        rel = ">" if strict_lower else ">="
        raise InputError(f"agent {agent_id!r}: {field_name} must be {rel} {lower:g}, got {v:g}")
    if upper is not None and v > upper:
        raise InputError(f"agent {agent_id!r}: {field_name} must be <= {upper:g}, got {v:g}")
    return v
