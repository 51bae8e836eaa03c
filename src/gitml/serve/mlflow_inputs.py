"""MLflow scoring-protocol request bodies (`POST /invocations`) turned into JSON records.

MLflow's clients send a pandas DataFrame as JSON, under exactly one of four keys, or as CSV:

- `{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}`: rows as
  lists, named by `columns` (`index` is checked for length, then ignored);
- `{"dataframe_records": [{...}, ...]}`: one object per row;
- `{"instances": ...}` or `{"inputs": ...}`: a list of row objects, or `{column: [values]}`;
- `text/csv`: a header row, then one line per row.

This module only turns each form into the list of records that `/v1/predict` takes (or
refuses it with a `Refusal` naming what is wrong), so every value then meets the one input
contract (`ServeContext.check`). Two things are the protocol's own:
- pandas writes a missing number as JSON `NaN` (`json.dumps` of a DataFrame's values), so a
  NaN in an MLflow body is a missing value (null), as pandas reads it back; `Infinity` is
  still a number, refused by the `finite` rule;
- CSV cells are text: `"29.85"` is read as `gitml predict` reads a CSV file, and an empty cell
  is null.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from typing import Any

from gitml.serve.errors import Refusal
from gitml.serve.request_body import parse_json, too_many_records

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
MEDIA_TYPES = (JSON_MEDIA_TYPE, CSV_MEDIA_TYPE)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = "params"
_SPLIT_KEYS = ("columns", "data", "index")


def media_type_of(content_type: str | None) -> str:
    """The body's media type, `application/json` or `text/csv`, or a 415 refusal.

    As MLflow's server: `charset` is the only parameter taken, and only `utf-8`."""
    if content_type is None:
        raise _unsupported("no Content-Type")
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    if media_type not in MEDIA_TYPES:
        raise _unsupported(f"Content-Type {content_type[:100]!r}")
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key == "charset" and value in ("utf-8", "utf8"):
            continue
        if key == "charset":
            reason = f"charset {value[:40]!r} is not supported; send UTF-8 (charset=utf-8)"
        else:
            reason = f"Content-Type parameter {key[:40]!r} is not supported (only charset=utf-8)"
        raise Refusal(415, "content-type", "media_type", reason, headers=_ACCEPT)
    return media_type


def parse_invocation(body: bytes, media_type: str, *, max_records: int) -> list[Any]:
    """The records of an `/invocations` body of `media_type` (from `media_type_of`).

    Raises `Refusal`: 400 for a body that is not one of the protocol's forms, 413 for more
    than `max_records` rows."""
    if media_type == CSV_MEDIA_TYPE:
        return parse_csv(body, max_records=max_records)
    return records_of(parse_json(body), max_records=max_records, nan_is_null=b"NaN" in body)


def records_of(payload: Any, *, max_records: int, nan_is_null: bool = True) -> list[Any]:
    """The records of a parsed JSON body. `nan_is_null`: whether to look for NaN values
    (only a body that spells `NaN` can hold one)."""
    if not isinstance(payload, dict):
        raise _bad(
            "body",
            "type",
            f"expected a JSON object with exactly one of {_FORMATS_TEXT} (got {_kind(payload)})",
        )
    given = [key for key in payload if key in FORMATS]
    unknown = [key for key in payload if key not in FORMATS and key != PARAMS]
    if unknown:
        raise _bad(
            _shown(unknown[0]),
            "unknown_field",
            f"{_shown(unknown[0])!r} is not a field of an MLflow scoring request; "
            f"send exactly one of {_FORMATS_TEXT} (and optionally {PARAMS!r})",
        )
    if len(given) != 1:
        found = "none of them" if not given else " and ".join(repr(k) for k in given)
        raise _bad("body", "format", f"send exactly one of {_FORMATS_TEXT} (got {found})")
    _check_params(payload.get(PARAMS))
    key = given[0]
    value = payload[key]
    if key == "dataframe_split":
        records = _split_records(value, max_records)
    elif key == "dataframe_records":
        if not isinstance(value, list):
            raise _bad(key, "type", f"must be a list of records (got {_kind(value)})")
        records = _objects(key, _bounded(value, max_records))
    elif isinstance(value, dict):
        records = _column_records(key, value, max_records)
    elif isinstance(value, list):
        records = _objects(key, _bounded(value, max_records))
    else:
        raise _bad(
            key,
            "type",
            f"must be a list of records or an object of column -> list of values "
            f"(got {_kind(value)})",
        )
    if nan_is_null:
        _null_nans(records)
    return records


def parse_csv(body: bytes, *, max_records: int) -> list[dict[str, str]]:
    """CSV records: a header row naming the columns, then one row per line; every cell text
    (coerced later by the input rules, as `gitml predict` coerces a CSV file's cells).

    A UTF-8 byte-order mark is dropped; blank lines are skipped, as pandas skips them."""
    if not body.strip():
        raise _bad("body", "csv", "empty body; expected a header row and one row per record")
    try:
        text = codecs.decode(body, "utf-8-sig")
    except UnicodeDecodeError as err:
        raise _bad(
            "body", "unicode", f"invalid UTF-8 at byte {err.start}: CSV must be UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []  # (line where the row ends, cells)
    try:
        for row in reader:
            if not row:
                continue
            if header is None:
                header = row
                continue
            if len(rows) == max_records:
                raise too_many_records(f"more than {max_records}", max_records)
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise _bad("body", "csv", f"malformed CSV at line {reader.line_num}: {err}") from None
    names = header or []
    _check_columns(names, field="header")
    records = []
    for i, (line, row) in enumerate(rows):
        if len(row) != len(names):
            raise _bad(
                "body",
                "ragged",
                f"CSV line {line} (record {i}) has {_count(len(row), 'cell')}; the header "
                f"names {_count(len(names), 'column')}",
                record=i,
            )
        records.append(dict(zip(names, row, strict=True)))
    return records


def _split_records(split: Any, max_records: int) -> list[dict[str, Any]]:
    key = "dataframe_split"
    if not isinstance(split, dict):
        raise _bad(
            key,
            "type",
            f'must be an object {{"columns": [...], "data": [[...]]}} (got {_kind(split)})',
        )
    unknown = [k for k in split if k not in _SPLIT_KEYS]
    if unknown:
        raise _bad(
            f"{key}.{_shown(unknown[0])}",
            "unknown_field",
            "is not a field of dataframe_split (columns, data, index)",
        )
    for name in ("columns", "data"):
        if name not in split:
            raise _bad(f"{key}.{name}", "missing", "required field is missing")
        if not isinstance(split[name], list):
            raise _bad(f"{key}.{name}", "type", f"must be a list (got {_kind(split[name])})")
    columns, data = split["columns"], split["data"]
    _check_columns(columns, field=f"{key}.columns")
    rows = _bounded(data, max_records)
    index = split.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(rows)):
        raise _bad(
            f"{key}.index",
            "length",
            f"must be a list of one label per row of data ({len(rows)})",
        )
    records = []
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise _bad(
                f"{key}.data",
                "type",
                f"row {i} must be a list of values (got {_kind(row)})",
                record=i,
            )
        if len(row) != len(columns):
            raise _bad(
                f"{key}.data",
                "ragged",
                f"row {i} has {_count(len(row), 'value')}; columns names "
                f"{_count(len(columns), 'column')}",
                record=i,
            )
        records.append(dict(zip(columns, row, strict=True)))
    return records


def _column_records(key: str, columns: dict[str, Any], max_records: int) -> list[dict[str, Any]]:
    """Records of `{column: [values]}`: one per position, every list of the same length."""
    if not columns:
        raise _bad(key, "min_items", "needs at least one column")
    lengths = {}
    for name, values in columns.items():
        if not isinstance(values, list):
            raise _bad(
                f"{key}.{_shown(name)}",
                "type",
                f"must be a list of values, one per record (got {_kind(values)})",
            )
        lengths[name] = len(values)
    first, n = next(iter(lengths.items()))
    uneven = next((name for name, m in lengths.items() if m != n), None)
    if uneven is not None:
        raise _bad(
            f"{key}.{_shown(uneven)}",
            "ragged",
            f"has {lengths[uneven]} values; {_shown(first)!r} has {n}: every column needs "
            "one value per record",
        )
    if n > max_records:
        raise too_many_records(n, max_records)
    names = list(columns)
    lists = [columns[name] for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


def _check_params(params: Any) -> None:
    """gitml's models take no inference parameters: an empty `params` is accepted, any
    parameter refused (MLflow ignores unknown ones with a warning in its log; a client that
    means to change the answer should be told it does not)."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise _bad(PARAMS, "type", f"must be an object of parameters (got {_kind(params)})")
    if params:
        name = _shown(next(iter(params)))
        raise _bad(
            f"{PARAMS}.{name}",
            "unknown_param",
            f"the model takes no parameters (got {name!r}); send no params or an empty object",
        )


def _check_columns(columns: list[Any], *, field: str) -> None:
    if not columns:
        raise _bad(field, "min_items", "needs at least one column name")
    seen: set[str] = set()
    for name in columns:
        if not isinstance(name, str):
            raise _bad(field, "type", f"column names must be strings (got {_kind(name)})")
        if name in seen:
            raise _bad(field, "duplicate", f"column {_shown(name)!r} is named twice")
        seen.add(name)


def _bounded(rows: list[Any], max_records: int) -> list[Any]:
    if len(rows) > max_records:
        raise too_many_records(len(rows), max_records)
    return rows


def _objects(key: str, rows: list[Any]) -> list[Any]:
    """`rows`, each an object naming its inputs (a list of lists has no column names)."""
    for i, row in enumerate(rows):
        if type(row) is not dict:
            raise _bad(
                f"{key}[{i}]",
                "type",
                f"must be an object of input name -> value (got {_kind(row)})",
                record=i,
            )
    return rows


def _null_nans(records: list[Any]) -> None:
    """pandas' missing numbers (JSON NaN) as null, in place."""
    for record in records:
        if type(record) is dict:
            for name, value in record.items():
                if type(value) is float and math.isnan(value):
                    record[name] = None


_FORMATS_TEXT = ", ".join(repr(f) for f in FORMATS)
_ACCEPT = {"accept": ", ".join(MEDIA_TYPES)}


def _bad(field: str, rule: str, reason: str, *, record: int | None = None) -> Refusal:
    refusal = Refusal(400, field, rule, reason)
    refusal.problem["record"] = record
    return refusal


def _unsupported(what: str) -> Refusal:
    return Refusal(
        415,
        "content-type",
        "media_type",
        f"{what}: this server takes {JSON_MEDIA_TYPE} and {CSV_MEDIA_TYPE}",
        headers=_ACCEPT,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _shown(name: Any) -> str:
    text = str(name)
    return text if len(text) <= 80 else text[:80] + "..."
