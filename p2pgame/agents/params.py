"""The types an agent's parameters are written in, in a scenario file (pydantic v2).

`AgentSpec` is the base of a parameter spec: a strict, closed table (unknown keys,
NaN/inf and string-to-number guessing are errors). Its fields are keyword arguments
of the agent's constructor, with units in their names. Per-period values
("profiles") are a number, an inline array or a CSV column
`{csv = "file.csv", column = "name", scale = 1.0}` relative to the scenario file;
they are resolved while validating, with the validation context
`{"base_dir": Path, "periods": int | None, "csv_cache": dict}`.

The scenario schema (`p2pgame.scenario.schema`) builds on the same types, which live
here so that agent modules can declare their specs without importing the scenario
package.
"""

from __future__ import annotations

import difflib
import io
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

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


class AgentSpec(Spec):
    """The parameters of one agent type in a [[customers]] table (without `id`, `node` and `type`).

    Fields are the keyword arguments of the agent's constructor; a field the file
    leaves out is not passed, so the constructor's default applies.
    """


NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Efficiency = Annotated[float, Field(gt=0, le=1)]
PerUnit = Annotated[float, Field(gt=0, le=2)]
PeriodIndex = Annotated[int, Field(ge=0)]


def is_number(value: Any) -> bool:
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
    if not is_number(scale) or not math.isfinite(scale):
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
    if is_number(value):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        if lower is not None and value < lower:
            raise ValueError(f"must be >= {lower:g}, got {value:g}")
        return float(value)
    if isinstance(value, list):
        for t, item in enumerate(value):
            if not is_number(item):
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
