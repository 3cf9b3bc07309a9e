"""Agent types a scenario file can name: the built-in ones (one entry each) and custom classes.

A [[customers]] table's `type` is one of
- a built-in type, a key of `BUILTIN`: its class and the spec of its parameters;
- `"package.module:ClassName"`: a class imported by module name (installed or on `sys.path`);
- `"path/to/file.py:ClassName"`: a class in a Python file, the path relative to the scenario file;
- the name of an entry point in the group `p2pgame.agents` (a package declares
  `[project.entry-points."p2pgame.agents"] name = "package.module:ClassName"`).

A new built-in agent type is its module plus one entry in `BUILTIN`. A class's parameters
are its `spec` attribute (an `AgentSpec` subclass) when it has one, otherwise the keyword
parameters of its constructor: required where they have no default, checked by pydantic
(strict) where annotated with a type pydantic knows (`float`, `int`, `str`, `bool`,
`Literal[...]`, `Annotated[float, Field(ge=0)]`, ...), and read as per-period profiles
(a number, an array or a CSV column) where unannotated or annotated with a type pydantic
cannot check (`numpy.ndarray`). Every failure is an `InputError` of one line.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, create_model

from p2pgame.agents.base import Agent
from p2pgame.agents.ev import EVCharger
from p2pgame.agents.params import AgentSpec, Efficiency, NonNegative, NonNegativeProfile, PeriodIndex, Profile
from p2pgame.agents.prosumer import END_RULES, Prosumer
from p2pgame.errors import InputError

ENTRY_POINTS = "p2pgame.agents"
RESERVED = ("id", "node", "type")  # keys of every [[customers]] table, not parameters


@dataclass(frozen=True)
class AgentType:
    """An agent class and the spec its parameters are validated with."""

    cls: type[Agent]
    spec: type[AgentSpec]


class ProsumerParams(AgentSpec):
    """type = "prosumer": the keyword arguments of `p2pgame.agents.prosumer.Prosumer`."""

    pv_kw: NonNegativeProfile
    demand_min_kw: NonNegativeProfile
    demand_max_kw: NonNegativeProfile
    utility_a_per_kwh: Profile
    utility_b_per_kw2h: NonNegative
    q_load_kvar: Profile | None = None
    battery_kwh: NonNegative | None = None
    battery_kw: NonNegative | None = None
    soc_min_kwh: NonNegative | None = None
    soc_max_kwh: NonNegative | None = None
    soc0_kwh: NonNegative | None = None
    eta_charge: Efficiency | None = None
    eta_discharge: Efficiency | None = None
    end_rule: Literal[END_RULES] | None = None
    terminal_value_per_kwh: NonNegative | None = None
    wear_cost_per_kwh: NonNegative | None = None
    inverter_kva: NonNegative | None = None
    reactive_cost_per_kvar2h: NonNegative | None = None


class EVParams(AgentSpec):
    """type = "ev": the keyword arguments of `p2pgame.agents.ev.EVCharger`."""

    arrival: PeriodIndex
    departure: PeriodIndex
    energy_kwh: NonNegative
    charger_kw: NonNegative
    charger_kva: NonNegative | None = None
    efficiency: Efficiency | None = None
    reactive_cost_per_kvar2h: NonNegative | None = None


BUILTIN: dict[str, AgentType] = {
    "prosumer": AgentType(Prosumer, ProsumerParams),
    "ev": AgentType(EVCharger, EVParams),
}

CLASS_FORMS = '"package.module:ClassName", "file.py:ClassName" or an entry point of group p2pgame.agents'


def resolve(name: str, base_dir: Path | str = ".") -> AgentType:
    """The agent type a scenario file names (see the module docstring); InputError in one line otherwise."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        where, _, qualname = name.rpartition(":")
        if not where or not qualname:
            raise InputError(f"type {name!r}: expected \"package.module:ClassName\" or \"file.py:ClassName\"")
        module = _import_file(where, Path(base_dir), name) if where.endswith(".py") else _import_module(where, name)
        return agent_type(_attribute(module, qualname, name), name)
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}
    if name not in points:
        known = ", ".join(repr(k) for k in [*BUILTIN, *sorted(points)])
        raise InputError(f"type must be one of {known}, got {name!r} (or a class: {CLASS_FORMS})")
    try:
        loaded = points[name].load()
    except Exception as exc:
        raise InputError(f"type {name!r}: loading entry point {points[name].value!r} raised {one_line(exc)}") from None
    return agent_type(loaded, name)


def agent_type(cls: Any, name: str | None = None) -> AgentType:
    """A class as an agent type, with its parameter spec; InputError unless it is a concrete `Agent` subclass."""
    shown = f"type {name!r}" if name else repr(cls)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        what = f"{getattr(cls, '__module__', '?')}.{cls.__qualname__}" if hasattr(cls, "__qualname__") else repr(cls)
        raise InputError(f"{shown}: {what} is not a subclass of p2pgame.agents.Agent")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise InputError(f"{shown}: {cls.__qualname__} does not implement {missing}()")
    return AgentType(cls, parameters(cls))


@functools.cache
def parameters(cls: type[Agent]) -> type[AgentSpec]:
    """The spec of a class's parameters: its `spec` attribute, or one derived from its constructor."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{cls.__qualname__}: cannot read its constructor's signature: {exc}") from None
    params = signature.parameters
    if not all(k in params for k in ("id", "node")):
        raise InputError(f"{cls.__qualname__}: its constructor must take id and node, as Agent's does")
    spec = getattr(cls, "spec", None)
    if spec is not None:
        if not (isinstance(spec, type) and issubclass(spec, AgentSpec)):
            raise InputError(f"{cls.__qualname__}.spec must be a subclass of p2pgame.agents.AgentSpec, got {spec!r}")
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in spec.model_fields:
            if key in RESERVED:
                raise InputError(f"{cls.__qualname__}.spec: {key!r} is a key of every customer, not a parameter")
            if not takes_any and (key not in params or params[key].kind is inspect.Parameter.POSITIONAL_ONLY):
                raise InputError(f"{cls.__qualname__}.spec: field {key!r} is not a keyword of its constructor")
        return spec
    return _derived_spec(cls, signature)


def _derived_spec(cls: type[Agent], signature: inspect.Signature) -> type[AgentSpec]:
    """A spec with one field per keyword parameter of the constructor (after id and node)."""
    try:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
    except Exception as exc:
        raise InputError(f"{cls.__qualname__}: cannot resolve its constructor's annotations: {one_line(exc)}") from None
    fields = {}
    for key, p in signature.parameters.items():
        if key in ("id", "node") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_ONLY:
            if p.default is p.empty:
                raise InputError(f"{cls.__qualname__}: parameter {key!r} is positional-only; scenario files"
                                 " pass parameters by keyword")
            continue
        if key == "type":
            raise InputError(f"{cls.__qualname__}: parameter 'type' clashes with the customer key type")
        fields[key] = (_checkable(hints.get(key, Any)), ... if p.default is p.empty else None)
    return create_model(f"{cls.__name__}Params", __base__=AgentSpec, __module__=cls.__module__, **fields)


def _checkable(annotation: Any) -> Any:
    """The annotation itself where pydantic can check it, else a per-period profile."""
    if annotation in (Any, object):
        return Profile
    try:
        TypeAdapter(annotation)
    except Exception:
        return Profile
    return annotation


def _import_module(module: str, name: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise InputError(f"type {name!r}: no module named {exc.name!r} (installed, or on PYTHONPATH?)") from None
        raise InputError(f"type {name!r}: importing {module} raised {one_line(exc)}") from None
    except Exception as exc:
        raise InputError(f"type {name!r}: importing {module} raised {one_line(exc)}") from None


def _import_file(shown: str, base_dir: Path, name: str):
    """The module in a Python file (relative to the scenario file), imported once under its file name's stem;
    its folder joins the end of `sys.path`, so that spawned worker processes import it by that name too."""
    path = Path(shown)
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise InputError(f"type {name!r}: {shown} does not exist (looked for {path})")
    module_name = path.stem
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == path:
            return loaded
        raise InputError(f"type {name!r}: a module named {module_name!r} is already imported from"
                         f" {getattr(loaded, '__file__', None) or 'elsewhere'}; rename {path.name}")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"type {name!r}: {shown} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise InputError(f"type {name!r}: importing {shown} raised {one_line(exc)}") from None
    if str(path.parent) not in sys.path:  # agents pickle by module name: worker processes import it from there
        sys.path.append(str(path.parent))
    return module


def _attribute(module, qualname: str, name: str):
    obj = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InputError(f"type {name!r}: {module.__name__} has no {qualname!r}") from None
    return obj


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
