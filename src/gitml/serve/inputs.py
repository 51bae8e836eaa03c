"""The input contract of a served model: check JSON records and table chunks against its signature.

One set of rules (`FieldRule`, built from `models/signature.json`) and one vectorised checker
(`_check_field`) serve both the HTTP API and `gitml predict`. The two front ends only turn
their input into columns first, with the cell coercion that ingest and validate use too
(`gitml.data.coercion`): JSON records value by value (JSON values are Python objects
anyway), table chunks in Arrow and numpy throughout.

Categories are carried as integer codes against the declared category lists and reach the
pipeline as pandas Categoricals with exactly those categories. The pipeline's encoder maps
them to the same codes that evaluate's Categoricals (read from Parquet) give, so the
probabilities are the ones evaluate computes; an unknown category accepted by policy gets
code -1, which the encoder scores like any unseen value (a row of zeros).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gitml.data.coercion import (
    BAD,
    NULL,
    category_cell,
    category_index,
    category_text,
    coerce_categories,
    coerce_numbers,
    number_cell,
)
from gitml.errors import InputError, ModelError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Policy = Literal["reject", "accept"]
_MISSING = object()
_EXPECTED = {"int": "an integer", "float": "a number", "category": "a string"}
_MAX_SHOWN = 80  # characters of an offending value echoed back


@dataclass(frozen=True)
class FieldRule:
    """What one input column must hold, as the signature declares it."""

    name: str
    type: Literal["int", "float", "category"]
    nullable: bool = False
    categories: tuple[str, ...] | None = None
    allowed: tuple[float, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def numeric(self) -> bool:
        return self.type != "category"

    def value_schema(self, unknown_category: Policy = "reject") -> dict[str, Any]:
        """JSON Schema of one value of this input, in its canonical form (every protocol's
        document describes values this way)."""
        spec: dict[str, Any]
        if self.type == "category":
            spec = {"type": "string"}
            if unknown_category == "reject":
                spec["enum"] = list(self.categories or ())
        else:
            spec = {"type": "integer" if self.type == "int" else "number"}
            if self.allowed is not None:
                spec["enum"] = [_plain(v) for v in self.allowed]
            if self.min is not None:
                spec["minimum"] = _plain(self.min)
            if self.max is not None:
                spec["maximum"] = _plain(self.max)
        if self.nullable:
            spec["type"] = [spec["type"], "null"]
            if "enum" in spec:
                spec["enum"] = [*spec["enum"], None]
        return spec


@dataclass(frozen=True)
class Violation:
    """One rule broken by one field in some rows (row positions within the checked batch)."""

    field: str
    rule: str
    reason: str
    rows: np.ndarray


@dataclass
class Columns:
    """Checked input columns, ready to become the pipeline's input frame.

    `values` holds numeric columns as float64 (NaN where null); `codes` holds category
    columns as positions in the declared categories (-1: null or an accepted unknown).
    """

    n: int
    values: dict[str, np.ndarray]
    codes: dict[str, np.ndarray]
    raw: dict[str, Sequence[Any]] = field(default_factory=dict)  # category text, for the log
    unknown: dict[str, int] = field(default_factory=dict)  # accepted unknown categories
    extra_fields: int = 0  # accepted undeclared fields (records policy `accept`)


@dataclass(frozen=True)
class InputSchema:
    """The model's inputs in order, with the rules each must meet."""

    fields: tuple[FieldRule, ...]

    @classmethod
    def from_signature(cls, signature: dict[str, Any]) -> InputSchema:
        """Build the rules from a parsed `signature.json`."""
        try:
            rules = tuple(
                FieldRule(
                    name=str(item["name"]),
                    type=item["type"],
                    nullable=bool(item.get("nullable", False)),
                    categories=tuple(item["categories"]) if "categories" in item else None,
                    allowed=tuple(float(v) for v in item["allowed"]) if "allowed" in item else None,
                    min=float(item["min"]) if item.get("min") is not None else None,
                    max=float(item["max"]) if item.get("max") is not None else None,
                )
                for item in signature["inputs"]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"signature.json: malformed 'inputs' entry ({err!r})") from err
        bad = [r.name for r in rules if r.type not in _EXPECTED]
        bad += [r.name for r in rules if r.type == "category" and not r.categories]
        if bad:
            raise ModelError(f"signature.json: inputs with an unknown type or no categories: {bad}")
        return cls(rules)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.fields]

    # -- JSON records (the HTTP API) -----------------------------------------------------

    def check_records(
        self,
        records: Any,
        *,
        unknown_category: Policy = "reject",
        extra_fields: Policy = "reject",
    ) -> Columns:
        """Check a list of JSON records; return their columns or raise InputError.

        Every problem is reported as `{"record", "field", "rule", "reason", "value"}`,
        ordered by record, then by field in signature order.
        """
        if not isinstance(records, list):
            raise _input_error([_problem(None, "records", "type", "must be a list of records")])
        n = len(records)
        if n == 0:
            raise _input_error([_problem(None, "records", "min_items", "needs at least 1 record")])
        structural: list[dict[str, Any]] = []
        known = {r.name for r in self.fields}
        extra = 0
        for i, record in enumerate(records):
            if type(record) is not dict:
                structural.append(_problem(i, "records", "type", "must be a JSON object", record))
                continue
            if len(record) > len(known) or any(k not in known for k in record):
                undeclared = [k for k in record if k not in known]
                if extra_fields == "reject":
                    structural.extend(
                        _problem(i, str(k), "unknown_field", "is not an input of the model")
                        for k in undeclared
                    )
                extra += len(undeclared)
        columns = Columns(n=n, values={}, codes={}, extra_fields=extra)
        violations: list[Violation] = []
        raw_by_field: dict[str, list[Any]] = {}
        for rule in self.fields:
            name = rule.name
            raw: list[Any] = [r.get(name, _MISSING) if type(r) is dict else None for r in records]
            raw_by_field[name] = raw
            null = np.zeros(n, dtype=bool)
            bad = np.zeros(n, dtype=bool)
            missing = np.zeros(n, dtype=bool)
            if rule.numeric:
                values = np.empty(n, dtype=np.float64)
                for i, v in enumerate(raw):
                    kind = type(v)
                    if kind is float:  # the common case, inline: number_cell(v) is v
                        values[i] = v
                        continue
                    if v is _MISSING:
                        null[i] = True
                        missing[i] = not rule.nullable
                        values[i] = np.nan
                        continue
                    number = number_cell(v)
                    if number is None:
                        null[i] = True
                        values[i] = np.nan
                    elif isinstance(number, float):
                        values[i] = number
                    else:  # NOT_A_NUMBER
                        bad[i] = True
                        values[i] = np.nan
                columns.values[name] = values
                found = _check_field(rule, values=values, null=null, bad=bad, missing=missing)
            else:
                index = category_index(rule.categories or ())
                exact = index.exact
                codes = np.empty(n, dtype=np.int16)
                for i, v in enumerate(raw):
                    if type(v) is str:
                        code = exact.get(v)
                        if code is not None:  # the common case, inline
                            codes[i] = code
                            continue
                    if v is _MISSING:
                        codes[i] = -1
                        null[i] = True
                        missing[i] = not rule.nullable
                        continue
                    codes[i], state, _ = category_cell(v, index)
                    if state == NULL:
                        null[i] = True
                    elif state == BAD:
                        bad[i] = True
                columns.codes[name] = codes
                columns.raw[name] = [_raw_text(v) for v in raw]
                found = _check_field(
                    rule,
                    codes=codes,
                    null=null,
                    bad=bad,
                    missing=missing,
                    unknown_category=unknown_category,
                )
                if unknown_category == "accept":
                    unknown = int(((codes < 0) & ~null & ~bad).sum())
                    if unknown:
                        columns.unknown[name] = unknown
            violations.extend(found)
        if structural or violations:
            problems = structural + [
                _problem(int(i), v.field, v.rule, v.reason, raw_by_field[v.field][int(i)])
                for v in violations
                for i in v.rows
            ]
            problems.sort(key=lambda p: -1 if p["record"] is None else p["record"])
            raise _input_error(problems)
        return columns

    # -- tables (gitml predict) ----------------------------------------------------------

    def check_table(
        self, table: pa.Table, *, unknown_category: Policy = "reject"
    ) -> tuple[Columns, list[Violation]]:
        """Check an Arrow table chunk, vectorised; return its columns and the violations.

        Numeric columns may arrive as numbers or as text (CSV read as text): text that does
        not parse is a `type` violation of that row, not a failure of the chunk. A nullable
        input the table lacks is all null; a required one must be checked for by the caller.
        """
        import pyarrow as pa

        n = table.num_rows
        columns = Columns(n=n, values={}, codes={})
        violations: list[Violation] = []
        for rule in self.fields:
            name = rule.name
            if name not in table.column_names:
                column = pa.nulls(n, pa.string() if rule.type == "category" else pa.float64())
            else:
                column = table[name]
            if rule.numeric:
                numbers = coerce_numbers(column)
                columns.values[name] = numbers.values
                found = _check_field(
                    rule, values=numbers.values, null=numbers.null, bad=numbers.bad
                )
            else:
                cells = coerce_categories(column, rule.categories or ())
                codes, null, bad = cells.codes, cells.null, cells.bad
                columns.codes[name] = codes
                found = _check_field(
                    rule, codes=codes, null=null, bad=bad, unknown_category=unknown_category
                )
                if unknown_category == "accept":
                    unknown = int(((codes < 0) & ~null & ~bad).sum())
                    if unknown:
                        columns.unknown[name] = unknown
            violations.extend(found)
        return columns, violations

    # -- the pipeline's input --------------------------------------------------------------

    def to_frame(self, columns: Columns, *, keep: np.ndarray | None = None) -> pd.DataFrame:
        """The pipeline's input frame: signature order, float64 numbers, declared Categoricals."""
        import pandas as pd

        data: dict[str, Any] = {}
        for rule in self.fields:
            if rule.numeric:
                values = columns.values[rule.name]
                data[rule.name] = values if keep is None else values[keep]
            else:
                codes = columns.codes[rule.name]
                data[rule.name] = pd.Categorical.from_codes(
                    codes if keep is None else codes[keep],
                    dtype=self._dtypes[rule.name],
                    validate=False,
                )
        return pd.DataFrame(data, copy=False)

    @functools.cached_property
    def _dtypes(self) -> dict[str, Any]:
        import pandas as pd

        return {
            r.name: pd.CategoricalDtype(list(r.categories or ()))
            for r in self.fields
            if r.type == "category"
        }

    # -- the published contract ------------------------------------------------------------

    def json_schema(
        self,
        *,
        max_records: int,
        unknown_category: Policy = "reject",
        extra_fields: Policy = "reject",
    ) -> dict[str, Any]:
        """JSON Schema of a predict request body (for the OpenAPI document), same rules."""
        properties: dict[str, Any] = {}
        for rule in self.fields:
            spec = rule.value_schema(unknown_category)
            if rule.type == "category" and unknown_category != "reject":
                spec["examples"] = list(rule.categories or ())
            properties[rule.name] = spec
        record = {
            "type": "object",
            "properties": properties,
            "required": [r.name for r in self.fields if not r.nullable],
            "additionalProperties": extra_fields == "accept",
        }
        return {
            "type": "object",
            "required": ["records"],
            "additionalProperties": False,
            "properties": {
                "records": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": max_records,
                    "items": record,
                }
            },
        }


def _check_field(
    rule: FieldRule,
    *,
    null: np.ndarray,
    bad: np.ndarray,
    values: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    missing: np.ndarray | None = None,
    unknown_category: Policy = "reject",
) -> list[Violation]:
    """Every rule of `rule` over one column; each row breaks at most one rule (the first).

    The rules, in the order they are reported: missing, type, null, then category
    membership, or finite, whole number (int), allowed values, min, max.
    """
    present = ~(null | bad)
    checks: list[tuple[str, np.ndarray]] = []
    if missing is not None:
        checks.append(("missing", missing))
    checks.append(("type", bad))
    if not rule.nullable:
        checks.append(("null", null))
    if rule.type == "category":
        if unknown_category == "reject":
            assert codes is not None
            checks.append(("category", present & (codes < 0)))
    else:
        assert values is not None
        with np.errstate(invalid="ignore"):
            checks.append(("finite", present & ~np.isfinite(values)))
            if rule.type == "int":
                checks.append(("integer", present & (np.floor(values) != values)))
            if rule.allowed is not None:
                checks.append(("allowed", present & ~_isin(values, rule.allowed)))
            if rule.min is not None:
                checks.append(("min", present & (values < rule.min)))
            if rule.max is not None:
                checks.append(("max", present & (values > rule.max)))
    masks = [mask for _, mask in checks]
    if not np.logical_or.reduce(masks).any():  # the common case: one pass, nothing to report
        return []
    reasons = _reasons(rule)
    found: list[Violation] = []
    taken = np.zeros(len(null), dtype=bool)
    for name, mask in checks:
        mask = mask & ~taken
        if mask.any():
            found.append(Violation(rule.name, name, reasons[name], np.flatnonzero(mask)))
            taken |= mask
    return found


def _isin(values: np.ndarray, allowed: tuple[float, ...]) -> np.ndarray:
    if len(allowed) <= 16:  # small sets: comparisons beat np.isin's sort on small inputs
        found = np.zeros(len(values), dtype=bool)
        for value in allowed:
            found |= values == value
        return found
    return np.isin(values, allowed)


@functools.lru_cache(maxsize=1024)
def _reasons(rule: FieldRule) -> dict[str, str]:
    """The message of each rule of `rule`, as the API and batch reports word it."""
    reasons = {
        "missing": "required field is missing",
        "type": f"expected {_EXPECTED[rule.type]}",
        "null": "must not be null",
        "finite": "must be a finite number",
        "integer": "not an integer: must be a whole number",
    }
    if rule.categories is not None:
        reasons["category"] = "must be one of " + ", ".join(repr(c) for c in rule.categories)
    if rule.allowed is not None:
        reasons["allowed"] = "must be one of " + ", ".join(str(_plain(v)) for v in rule.allowed)
    if rule.min is not None:
        reasons["min"] = f"must be >= {_plain(rule.min)}"
    if rule.max is not None:
        reasons["max"] = f"must be <= {_plain(rule.max)}"
    return reasons


def _raw_text(value: Any) -> str | None:
    """A category value as the prediction log keeps it: text as sent, numbers as text."""
    if type(value) is str:
        return value
    text = category_text(value)
    return text if isinstance(text, str) else None


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _shown(value: Any) -> Any:
    if value is None or value is _MISSING or isinstance(value, bool):
        return None if value is _MISSING else value
    if isinstance(value, int):  # JSON numbers beyond 64 bits are echoed as text
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
    return f"<{type(value).__name__}>"


def _problem(
    record: int | None, name: str, rule: str, reason: str, value: Any = _MISSING
) -> dict[str, Any]:
    return {
        "record": record,
        "field": name,
        "rule": rule,
        "reason": reason,
        "value": _shown(value),
    }


def _input_error(problems: list[dict[str, Any]]) -> InputError:
    first = problems[0]
    where = "" if first["record"] is None else f"record {first['record']}: "
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InputError(
        f"{where}field {first['field']!r}: {first['reason']}{more}", problems=problems
    )
