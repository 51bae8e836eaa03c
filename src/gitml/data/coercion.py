"""The one cell coercion: how a value becomes a model input, wherever it enters.

Ingest (the source file), `validate`, `gitml predict` (table chunks) and the HTTP API (JSON
values) all parse cells here, driven by the declared column type, so they never disagree
about what is valid, what is missing and what a value becomes:

- empty and whitespace-only text is missing (null) in every column type; whether a column
  may be missing is the column's `nullable`, checked by the caller's rules;
- int and float columns take numbers and numeric text (`58`, `58.0`, `"58"`, `" 58 "`,
  `"5.8e1"`); booleans and other text are not numbers (a `type` problem). Whole-number and
  range rules are checked afterwards, on the parsed value;
- category columns take text, stripped; integers (`1`, `1.0`) become their decimal text and
  booleans `True`/`False`. An exact match with a declared category wins, else a
  case-insensitive match when only one category matches, else for text like `"1.0"` the
  integer `1`'s text; the declared spelling is the value.

Table columns (Arrow) are coerced vectorised; category columns per distinct value, through
the same function (`category_cell`) that judges one JSON value.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

Kind = Literal["int", "float", "category"]

# Numeric text: decimal numbers with an optional exponent, or nan/inf words (numbers that the
# `finite` rule then refuses). Digits are ASCII only: Python's float() also reads "1_000" and
# other scripts' digits, pyarrow does not; this pattern decides for both.
NUMBER_PATTERN = (
    r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
)
_NUMBER = re.compile(NUMBER_PATTERN)
_WHOLE_WITH_ZEROS = re.compile(r"^[+-]?[0-9]+\.0+$")


class _NotANumber:
    """The value of a cell that holds no number (a `type` problem)."""

    def __repr__(self) -> str:
        return "NOT_A_NUMBER"


NOT_A_NUMBER: Any = _NotANumber()
# category_cell states
VALID, NULL, BAD = 0, 1, 2


def number_cell(value: Any) -> float | _NotANumber | None:
    """One JSON value of an int or float column: its number, None (missing) or NOT_A_NUMBER."""
    kind = type(value)
    if kind is int or kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            return math.inf if value > 0 else -math.inf
    if value is None:
        return None
    if kind is str:
        text = value.strip()
        if not text:
            return None
        if _NUMBER.match(text):
            return float(text)
    return NOT_A_NUMBER  # bool (a bool is not a number), other text, lists, objects


@dataclass(frozen=True)
class Numbers:
    """A coerced numeric column: float64 values (NaN where null or bad) and the two masks."""

    values: np.ndarray
    null: np.ndarray
    bad: np.ndarray


def coerce_numbers(column: pa.Array | pa.ChunkedArray) -> Numbers:
    """An Arrow column of an int or float input, coerced as `number_cell` coerces one value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    n = len(column)
    null = _is_null(column)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return Numbers(_writeable(values), null, np.zeros(n, dtype=bool))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:  # fast path: every cell is plain numeric text, which pyarrow reads as we do
            values = _writeable(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = None
        # pyarrow also reads "nan(...)": NaN text takes the slow path, which names it
        if values is not None and not np.isnan(values[~null]).any():
            return Numbers(values, null, np.zeros(n, dtype=bool))
        text = pc.utf8_trim_whitespace(column)
        blank = np.asarray(pc.equal(text, "").fill_null(False).to_numpy(zero_copy_only=False))
        valid = pc.match_substring_regex(text, NUMBER_PATTERN)
        parsed = pc.cast(pc.if_else(valid, text, None), pa.float64())
        values = _writeable(parsed.to_numpy(zero_copy_only=False))
        null = null | blank
        bad = ~null & ~np.asarray(valid.fill_null(False).to_numpy(zero_copy_only=False))
        values[null | bad] = np.nan
        return Numbers(values, null, bad)
    # booleans, dates, nested values: not numbers
    return Numbers(np.full(n, np.nan), null, ~null)


@functools.lru_cache(maxsize=256)
def category_index(categories: tuple[str, ...]) -> CategoryIndex:
    """The lookup of one declared category list (cached: built once per column)."""
    return CategoryIndex(categories)


class CategoryIndex:
    """Positions of declared categories: exact text first, then an unambiguous case-insensitive
    match (so `" yes "` is `Yes`, but `"a"` is unknown when both `A` and `a` are declared)."""

    def __init__(self, categories: Sequence[str]) -> None:
        self.categories = tuple(categories)
        self.exact = {c: k for k, c in enumerate(self.categories)}
        folded: dict[str, list[int]] = {}
        for k, c in enumerate(self.categories):
            folded.setdefault(c.strip().casefold(), []).append(k)
        self.folded = {key: ks[0] for key, ks in folded.items() if len(ks) == 1}

    def code(self, text: str) -> int:
        """Position of `text` (already stripped, not blank), -1 when it is not declared."""
        found = self.exact.get(text)
        if found is not None:
            return found
        found = self.folded.get(text.casefold())
        if found is not None:
            return found
        if _WHOLE_WITH_ZEROS.match(text):  # "1.0", as CSV writers spell integer codes
            return self.code(str(int(text.split(".")[0])))
        return -1


def category_text(value: Any) -> str | _NotANumber | None:
    """The text a category cell stands for: None when missing, NOT_A_NUMBER when it holds
    neither text nor a whole number nor a boolean."""
    kind = type(value)
    if kind is str:
        text = value.strip()
        return text or None
    if value is None:
        return None
    if kind is bool or isinstance(value, np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return NOT_A_NUMBER


def category_cell(value: Any, index: CategoryIndex) -> tuple[int, int, str | None]:
    """One category value: (code, state, text). `code` is the position in the declared list
    (-1: null, bad or unknown); `state` is VALID, NULL or BAD; `text` is the declared spelling
    when known, else the cell's own text (None when null)."""
    text = category_text(value)
    if text is None:
        return -1, NULL, None
    if text is NOT_A_NUMBER:
        return -1, BAD, str(value)
    code = index.code(text)  # type: ignore[arg-type]
    return code, VALID, index.categories[code] if code >= 0 else text  # type: ignore[return-value]


@dataclass(frozen=True)
class Categories:
    """A coerced category column: codes (int16; -1 null, bad or unknown) and the two masks.

    `texts[positions]` is each cell's text: the declared spelling where the cell matched,
    its own text where it did not, None where it is null.
    """

    codes: np.ndarray
    null: np.ndarray
    bad: np.ndarray
    texts: list[str | None]
    positions: np.ndarray

    def text(self) -> pa.Array:
        """Each cell's text as an Arrow string column (what ingest writes)."""
        import pyarrow as pa

        return pa.array(self.texts, pa.string()).take(pa.array(self.positions))

    def categorical(self, index: Any = None) -> Any:
        """Each cell's text as a pandas Categorical Series (what validate checks)."""
        import pandas as pd

        distinct = sorted({t for t in self.texts if t is not None})
        where = {t: k for k, t in enumerate(distinct)}
        lookup = np.array([-1 if t is None else where[t] for t in self.texts], dtype=np.int32)
        codes = lookup[self.positions] if len(lookup) else np.full(len(self.codes), -1)
        values = pd.Categorical.from_codes(codes, categories=distinct)
        return pd.Series(values, index=index)


def coerce_categories(column: pa.Array | pa.ChunkedArray, categories: Sequence[str]) -> Categories:
    """An Arrow column of a category input, coerced cell by cell as `category_cell` does,
    computed once per distinct value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(column)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    none = np.zeros(n, dtype=np.int64)
    if pa.types.is_null(column.type):
        return Categories(
            np.full(n, -1, dtype=np.int16), np.ones(n, dtype=bool), none.astype(bool), [None], none
        )
    if not pa.types.is_dictionary(column.type):
        try:
            column = pc.dictionary_encode(column)
        except pa.ArrowNotImplementedError:  # nested values: not categories at all
            null = _is_null(column)
            return Categories(np.full(n, -1, dtype=np.int16), null, ~null, [None], none)
    index = category_index(tuple(categories))
    cells = [category_cell(v, index) for v in column.dictionary.to_pylist()]
    # one extra entry for null indices
    codes = np.array([c for c, _, _ in cells] + [-1], dtype=np.int16)
    states = np.array([s for _, s, _ in cells] + [NULL], dtype=np.int8)
    texts = [t for _, _, t in cells] + [None]
    indices = column.indices
    if indices.null_count:  # null cells point at the extra entry (fill_null costs a pass)
        indices = indices.fill_null(len(cells))
    positions = indices.to_numpy(zero_copy_only=False)
    state = states[positions]
    return Categories(codes[positions], state == NULL, state == BAD, texts, positions)


def coerce_number_values(values: Sequence[Any]) -> Numbers:
    """Python values of an int or float input (e.g. a mixed pandas object column), coerced
    one by one with `number_cell`."""
    n = len(values)
    out = np.full(n, np.nan)
    null = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    for i, value in enumerate(values):
        if isinstance(value, float | np.floating) and math.isnan(value):
            value = None  # pandas' missing value in an object column
        number = number_cell(value.item() if isinstance(value, np.generic) else value)
        if number is None:
            null[i] = True
        elif number is NOT_A_NUMBER:
            bad[i] = True
        else:
            out[i] = number
    return Numbers(out, null, bad)


def _is_null(column: Any) -> np.ndarray:
    return np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _writeable(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values if values.flags.writeable else values.copy()
