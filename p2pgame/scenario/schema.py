"""The TOML scenario schema (pydantic v2) and its one-line error messages.

Key names are the keyword names of the constructors they feed (`Prosumer`,
`EVCharger`, `UpstreamGrid`, `MarketSettings`, a custom agent class), units
included (`pv_kw`, `battery_kwh`, `import_price_per_kwh`). Keys a file leaves out
take the constructor's default, so the schema only checks what a file says: types
(strict: no string-to-number guessing), finiteness, signs, ranges and unknown keys.
Each [[customers]] table is checked against the spec of the agent type its `type`
names (`p2pgame.agents.registry`: the built-in types, "module:Class", "file.py:Class"
or an entry point). Per-period values ("profiles") are a number, an inline array or a
CSV column `{csv = "file.csv", column = "name", scale = 1.0}` relative to the
scenario file (`p2pgame.agents.params`); they are resolved while validating, with the
validation context `{"base_dir": Path, "periods": int | None, "csv_cache": dict}`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

from p2pgame.agents.params import NonNegative, NonNegativeProfile, PerUnit, Positive, Profile, Spec, is_number
from p2pgame.agents.registry import BUILTIN, CLASS_FORMS, RESERVED, AgentType, resolve
from p2pgame.errors import InputError
from p2pgame.scenario.model import METHODS, MarketSettings

NO_ENVELOPE = "none"  # doe_policy of a network-blind market (p2pgame.market.NO_ENVELOPE)


def _node_name(value: Any) -> str:
    """Node names are strings; an integer (`node = 632`) is read as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a node name (string or integer), got {value!r}")
    return value


NodeName = Annotated[str, PlainValidator(_node_name)]


class LoadSpec(Spec):
    """A node's passive load, replacing the feeder file's (consumption positive; kvar net of capacitors)."""

    kw: float
    kvar: float = 0.0


class FeederSpec(Spec):
    """[feeder]: which feeder (exactly one of builtin, dss, pandapower) and how its passive loads and limits are set."""

    builtin: str | None = None
    dss: str | None = None
    pandapower: str | None = None
    load_scale: NonNegative = 1.0
    loads: dict[str, LoadSpec] = Field(default_factory=dict)
    ratings: dict[str, Positive] = Field(default_factory=dict)
    load_profile: NonNegativeProfile | None = None
    v0_pu: PerUnit | None = None
    vmin_pu: PerUnit | None = None
    vmax_pu: PerUnit | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FeederSpec:
        given = [k for k in ("builtin", "dss", "pandapower") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "feeder_source",
                "give exactly one of builtin = \"name\", dss = \"file.dss\" or pandapower = \"net.json\"{got}",
                {"got": f" (got {', '.join(given)})" if given else ""},
            )
        if self.dss is not None and not self.dss.lower().endswith(".dss"):
            raise PydanticCustomError("feeder_source", "dss must name an OpenDSS .dss file, got {v!r}", {"v": self.dss})
        if self.pandapower is not None and not self.pandapower.lower().endswith(".json"):
            raise PydanticCustomError(
                "feeder_source", "pandapower must name a pandapower .json file, got {v!r}", {"v": self.pandapower}
            )
        return self

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, name: str | None) -> str | None:
        from p2pgame.network.registry import BUILTIN, PHASE_FEEDERS

        if name is not None and name not in BUILTIN and name not in PHASE_FEEDERS:
            raise ValueError(
                f"unknown built-in feeder {name!r} (built-in feeders: {', '.join([*BUILTIN, *PHASE_FEEDERS])})"
            )
        return name


class HorizonSpec(Spec):
    """[horizon]: number of periods and their length."""

    periods: Annotated[int, Field(ge=1, le=100_000)]
    dt_h: Positive = 1.0


@dataclasses.dataclass(frozen=True)
class CustomerEntry:
    """A checked [[customers]] table: id, node, its agent type and the parameters the file set."""

    id: str
    node: str
    type: str
    agent: AgentType
    keywords: dict[str, Any]
    phases: str | None = None

    def build(self):
        """The agent: its class called with id, node and the parameters the file set, then its phases."""
        agent = self.agent.cls(id=self.id, node=self.node, **self.keywords)
        if self.phases is not None:
            agent.phases = self.phases
        return agent


@functools.cache
def customer_spec(params: type[Spec]) -> type[Spec]:
    """A whole [[customers]] table of one agent type: id, node and type, then its parameters."""
    return create_model(
        f"{params.__name__}Customer",
        __base__=params,
        id=(Annotated[str, Field(min_length=1)], ...),
        node=(NodeName, ...),
        type=(str, ...),
        phases=(Annotated[str, Field(pattern="^(a|b|c|ab|ac|bc|abc)$")] | None, None),
    )


def _customer(value: Any, info: ValidationInfo) -> CustomerEntry:
    """One [[customers]] table, checked against the spec of the agent type it names."""
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "expected a table")
    if "type" not in value:
        forms = ", ".join(repr(k) for k in BUILTIN)
        raise PydanticCustomError("agent_type", "missing type (one of {forms}, or a class: {classes})",
                                  {"forms": forms, "classes": CLASS_FORMS})
    name = value["type"]
    if not isinstance(name, str) or not name:
        raise PydanticCustomError("agent_type", "type must name an agent type (a string), got {v}", {"v": _shown(name)})
    ctx = info.context if info.context is not None else {}
    try:
        agent = resolve(name, ctx.get("base_dir", Path(".")))
    except InputError as exc:
        raise PydanticCustomError("agent_type", "{message}", {"message": str(exc)}) from None
    spec = customer_spec(agent.spec).model_validate(value, context=info.context)
    keywords = {k: getattr(spec, k) for k in spec.model_fields_set if k not in (*RESERVED, "phases")}
    return CustomerEntry(spec.id, spec.node, name, agent, keywords, spec.phases)


Customer = Annotated[Any, PlainValidator(_customer)]


class TariffSpec(Spec):
    """mode = "tariff": a retailer's import and export prices."""

    mode: Literal["tariff"]
    id: Annotated[str, Field(min_length=1)] | None = None
    import_price_per_kwh: Profile
    export_price_per_kwh: Profile
    reactive_import_price_per_kvarh: Profile | None = None
    reactive_export_price_per_kvarh: Profile | None = None
    capacity_kva: NonNegative | None = None


class QuadraticSpec(Spec):
    """mode = "quadratic": a smooth cost of supply."""

    mode: Literal["quadratic"]
    id: Annotated[str, Field(min_length=1)] | None = None
    alpha_per_kwh: Profile
    beta_per_kw2h: Positive
    alpha_q_per_kvarh: Profile | None = None
    beta_q_per_kvar2h: Positive | None = None
    capacity_kva: NonNegative | None = None


class IslandedSpec(Spec):
    """mode = "none": no upstream trading (an islanded community)."""

    mode: Literal["none"]
    id: Annotated[str, Field(min_length=1)] | None = None


def _check_policy(name: str | None) -> str | None:
    from p2pgame.doe.policies import POLICIES

    valid = [*POLICIES, NO_ENVELOPE]
    if name is not None and name not in valid:
        raise ValueError(f"unknown DOE policy {name!r} (valid: {', '.join(valid)})")
    return name


def _market_spec() -> type[Spec]:
    """[market]: one optional key per field of `MarketSettings` (so the two never drift apart).

    method and doe_policy take their known names, integers are >= 1 (iteration
    budgets), other numbers > 0 (tolerances).
    """
    special = {
        "method": Literal[METHODS],
        "doe_policy": Annotated[str, AfterValidator(_check_policy)],
    }
    by_type = {"bool": bool, "int": Annotated[int, Field(ge=1)], "float": Positive, "str": str}
    fields = {
        f.name: (special.get(f.name, by_type[str(f.type)]) | None, None) for f in dataclasses.fields(MarketSettings)
    }
    return create_model("MarketSpec", __base__=Spec, __doc__="[market]: the fields of MarketSettings.", **fields)


MarketSpec = _market_spec()


Upstream = Annotated[TariffSpec | QuadraticSpec | IslandedSpec, Field(discriminator="mode")]

# Union tags that pydantic puts into error locations; they are not keys of the file.
TAGS = {"upstream": ("tariff", "quadratic", "none")}


class ScenarioSpec(Spec):
    """A whole scenario file."""

    name: Annotated[str, Field(min_length=1)] | None = None
    description: str | None = None
    feeder: FeederSpec
    horizon: HorizonSpec
    customers: Annotated[list[Customer], Field(min_length=1)]
    upstream: Upstream
    market: MarketSpec = Field(default_factory=MarketSpec)


def given(spec: BaseModel, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys the file set, as keyword arguments (constructors supply their own defaults for the rest)."""
    return {k: getattr(spec, k) for k in spec.model_fields_set if k not in exclude}


# --- error messages ---------------------------------------------------------------

EXPECTED = {
    "float_type": "a number",
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}
BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
NO_CUSTOMERS = "no customers: a market needs at least one [[customers]] table"


def field_path(loc: tuple) -> str:
    """`('customers', 3, 'battery_kwh')` -> `customers[3].battery_kwh`, `('upstream', 'tariff', 'id')` -> `upstream.id`
    (union tags dropped)."""
    parts = list(loc)
    if len(parts) > 1 and parts[0] == "upstream" and parts[1] in TAGS["upstream"]:
        del parts[1]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _shown(value: Any) -> str:
    """A value as the file spells it (TOML booleans in lower case), cut to one short phrase."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(error: dict, raw: dict) -> str:
    """One pydantic error as `path: what is wrong` (with the customer's id when the path is inside one)."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    if kind == "unknown_key":
        loc = loc + (ctx["key"],)
    path = field_path(loc) or "top level"
    if len(loc) >= 2 and loc[0] == "customers" and isinstance(loc[1], int):
        customers = raw.get("customers")
        if isinstance(customers, list) and loc[1] < len(customers) and isinstance(customers[loc[1]], dict):
            cid = customers[loc[1]].get("id")
            if isinstance(cid, str):
                path += f" (customer {cid})"
    if kind in ("missing", "too_short") and loc == ("customers",):
        return NO_CUSTOMERS
    if kind == "missing":
        return f"{path}: missing (a required key)"
    if kind in EXPECTED:
        return f"{path}: expected {EXPECTED[kind]}, got {_shown(value)}"
    if kind == "finite_number":
        return f"{path}: expected a finite number, got {value}"
    if kind in BOUNDS:
        rel, key = BOUNDS[kind]
        got = f", got {value:g}" if is_number(value) else ""
        return f"{path}: must be {rel} {ctx[key]:g}{got}"
    if kind == "literal_error":
        return f"{path}: expected {ctx['expected']}, got {_shown(value)}"
    if kind == "union_tag_invalid":
        key = ctx["discriminator"].strip("'")
        return f"{path}: {key} must be one of {ctx['expected_tags']}, got {ctx['tag']!r}"
    if kind == "union_tag_not_found":
        key = ctx["discriminator"].strip("'")
        tags = ", ".join(repr(t) for t in TAGS.get(loc[0], ()))
        return f"{path}: missing {key} (one of {tags})"
    if kind == "string_too_short":
        return f"{path}: expected a non-empty string"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return f"{path}: {message}"
