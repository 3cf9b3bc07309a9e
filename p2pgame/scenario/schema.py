"""The TOML scenario schema (pydantic v2) and its one-line error messages.

Key names are the keyword names of the constructors they feed (`Prosumer`,
`EVCharger`, `UpstreamGrid`, `MarketSettings`), units included (`pv_kw`,
`battery_kwh`, `import_price_per_kwh`). Keys a file leaves out take the
constructor's default, so the schema only checks what a file says: types
(strict: no string-to-number guessing), finiteness, signs, ranges and unknown
keys. Per-period values ("profiles") are a number, an inline array or a CSV
column `{csv = "file.csv", column = "name", scale = 1.0}` relative to the
scenario file; they are resolved while validating, with the validation context
`{"base_dir": Path, "periods": int | None, "csv_cache": dict}`.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

from p2pgame.agents.prosumer import END_RULES
from p2pgame.scenario.model import METHODS, MarketSettings

NO_ENVELOPE = "none"  # doe_policy of a network-blind market (p2pgame.market.NO_ENVELOPE)

CSV_KEYS = ("csv", "column", "scale")


class Spec(BaseModel):
    """Strict, closed tables: unknown keys, NaN/inf and type guessing are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Reject an unknown key with the valid ones (and the nearest spelling) in the message."""
        if isinstance(data, dict):
            valid = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), valid, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key{hint} (valid keys: {valid})",
                        {"key": str(key), "hint": hint, "valid": ", ".join(valid)},
                    )
        return data


NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Efficiency = Annotated[float, Field(gt=0, le=1)]
PerUnit = Annotated[float, Field(gt=0, le=2)]
PeriodIndex = Annotated[int, Field(ge=0)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _csv_column(ref: dict, ctx: dict) -> np.ndarray:
    """The numbers of `ref["column"]` in the CSV file `ref["csv"]` (relative to the scenario file), times `scale`."""
    unknown = [k for k in ref if k not in CSV_KEYS]
    if unknown:
        raise ValueError(f"CSV reference: unknown key {unknown[0]!r} (valid keys: {', '.join(CSV_KEYS)})")
    for key in ("csv", "column"):
        if not isinstance(ref.get(key), str) or not ref[key]:
            raise ValueError(
                f'CSV reference needs {key} = "..." (a string), as in {{csv = "file.csv", column = "name"}}'
            )
    scale = ref.get("scale", 1.0)
    if not _is_number(scale) or not math.isfinite(scale):
        raise ValueError(f"CSV reference: scale must be a finite number, got {scale!r}")
    path = Path(ref["csv"])
    if not path.is_absolute():
        path = Path(ctx.get("base_dir", ".")) / path
    cache = ctx.setdefault("csv_cache", {})
    if path not in cache:
        cache[path] = _read_csv(path, ref["csv"])
    table = cache[path]
    column = ref["column"]
    if column not in table.columns:
        raise ValueError(f"{ref['csv']} has no column {column!r} (columns: {', '.join(map(str, table.columns))})")
    numbers = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{ref['csv']}, column {column!r}, data row {row + 1}: expected a finite number,"
            f" got {table[column].iloc[row]!r}"
        )
    return float(scale) * numbers


def _read_csv(path: Path, shown: str) -> pd.DataFrame:
    """A CSV file as strings; ValueError with what is wrong (missing, folder, binary, empty, malformed)."""
    if not path.exists():
        raise ValueError(f"CSV file {shown} does not exist (looked for {path})")
    if not path.is_file():
        raise ValueError(f"CSV file {shown} is not a file (a folder?)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read CSV file {shown}: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise ValueError(f"CSV file {shown} is a binary file, expected comma-separated text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"CSV file {shown} is not UTF-8 text") from None
    if not text.strip():
        raise ValueError(f"CSV file {shown} is empty, expected a header row and one row per period")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"CSV file {shown} cannot be parsed: {str(exc).strip().splitlines()[0]}") from None


def _profile(value: Any, info: ValidationInfo, lower: float | None) -> float | np.ndarray:
    """A per-period value: a number (same every period), an array of `periods` numbers, or a CSV column."""
    ctx = info.context if info.context is not None else {}
    expected = 'a number, an array of numbers or {csv = "file.csv", column = "name"}'
    if _is_number(value):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        if lower is not None and value < lower:
            raise ValueError(f"must be >= {lower:g}, got {value:g}")
        return float(value)
    if isinstance(value, list):
        for t, item in enumerate(value):
            if not _is_number(item):
                raise ValueError(f"item {t} is {item!r}, expected a number")
        values = np.array(value, dtype=float)
    elif isinstance(value, dict):
        values = _csv_column(value, ctx)
    else:
        raise ValueError(f"expected {expected}, got {value!r}")
    periods = ctx.get("periods")
    if periods is not None and len(values) != periods:
        raise ValueError(f"has {len(values)} values, expected {periods} (one per period of the horizon)")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"value {int(bad[0])} is {values[bad[0]]}, expected a finite number")
    if lower is not None and (values < lower).any():
        t = int(np.argmax(values < lower))
        raise ValueError(f"must be >= {lower:g} in every period, got {values[t]:g} in period {t}")
    return values


def profile(lower: float | None = None):
    """The annotated type of a per-period value (optionally with a lower bound)."""
    return Annotated[Any, PlainValidator(lambda v, info: _profile(v, info, lower))]


Profile = profile()
NonNegativeProfile = profile(0.0)


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
        from p2pgame.network.registry import BUILTIN

        if name is not None and name not in BUILTIN:
            raise ValueError(f"unknown built-in feeder {name!r} (built-in feeders: {', '.join(BUILTIN)})")
        return name


class HorizonSpec(Spec):
    """[horizon]: number of periods and their length."""

    periods: Annotated[int, Field(ge=1, le=100_000)]
    dt_h: Positive = 1.0


class CustomerSpec(Spec):
    """Keys every customer has: its id, its node and its type."""

    id: Annotated[str, Field(min_length=1)]
    node: NodeName


class ProsumerSpec(CustomerSpec):
    """type = "prosumer": the keyword arguments of `p2pgame.agents.prosumer.Prosumer`."""

    type: Literal["prosumer"]
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


class EVSpec(CustomerSpec):
    """type = "ev": the keyword arguments of `p2pgame.agents.ev.EVCharger`."""

    type: Literal["ev"]
    arrival: PeriodIndex
    departure: PeriodIndex
    energy_kwh: NonNegative
    charger_kw: NonNegative
    charger_kva: NonNegative | None = None
    efficiency: Efficiency | None = None
    reactive_cost_per_kvar2h: NonNegative | None = None


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


Customer = Annotated[ProsumerSpec | EVSpec, Field(discriminator="type")]
Upstream = Annotated[TariffSpec | QuadraticSpec | IslandedSpec, Field(discriminator="mode")]

# Union tags that pydantic puts into error locations; they are not keys of the file.
TAGS = {"customers": ("prosumer", "ev"), "upstream": ("tariff", "quadratic", "none")}


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
    """`('customers', 3, 'prosumer', 'battery_kwh')` -> `customers[3].battery_kwh` (union tags dropped)."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "customers" and parts[2] in TAGS["customers"]:
        del parts[2]
    elif len(parts) > 1 and parts[0] == "upstream" and parts[1] in TAGS["upstream"]:
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
        got = f", got {value:g}" if _is_number(value) else ""
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
