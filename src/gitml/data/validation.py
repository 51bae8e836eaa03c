"""Check a data set against its declared schema (pandera) and the data-quality rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from gitml.config.schema import ColumnSpec, DataParams, ValidateParams
from gitml.data.coercion import (
    Numbers,
    category_text,
    coerce_categories,
    coerce_number_values,
    coerce_numbers,
)

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One rule outcome worth reporting: a failure (error), a concern (warning) or a note."""

    level: Level
    rule: str
    column: str | None
    message: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Everything `validate` found, ready to be written as JSON and Markdown."""

    source: str
    rows: int
    columns: list[str]
    checks: int = 0
    findings: list[Finding] = field(default_factory=list)
    target_balance: dict[str, int] = field(default_factory=dict)  # classification
    target_summary: dict[str, Any] = field(default_factory=dict)  # regression: min, mean, max
    null_counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        target = (
            {"target_summary": self.target_summary}
            if self.target_summary
            else {"target_balance": self.target_balance}
        )
        return {
            "status": "passed" if self.ok else "failed",
            "source": self.source,
            "rows": self.rows,
            "columns": len(self.columns),
            "checks": self.checks,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            **target,
            "null_counts": self.null_counts,
            "findings": [asdict(f) for f in self.findings],
        }

    def to_markdown(self) -> str:
        status = "passed" if self.ok else "**failed**"
        lines = [
            "# Data validation",
            "",
            f"`{self.source}`: {self.rows:,} rows, {len(self.columns)} columns, "
            f"{self.checks} checks: {status}, {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings.",
            "",
        ]
        if self.target_balance:
            balance = ", ".join(f"{k}: {v:,}" for k, v in self.target_balance.items())
            lines += [f"Target balance: {balance}.", ""]
        if self.target_summary:
            summary = ", ".join(f"{k} {v:g}" for k, v in self.target_summary.items())
            lines += [f"Target: {summary}.", ""]
        if self.findings:
            lines += [
                "| level | column | rule | rows | message |",
                "| --- | --- | --- | --- | --- |",
            ]
            for f in self.findings:
                message = f.message.replace("|", "\\|")
                lines.append(
                    f"| {f.level} | {f.column or ''} | {f.rule} | {f.count:,} | {message} |"
                )
            lines.append("")
        return "\n".join(lines)


def validate_frame(
    frame: pd.DataFrame,
    data: DataParams,
    rules: ValidateParams,
    *,
    source: str,
    line_offset: int | None = None,
) -> ValidationReport:
    """Run every schema and quality rule over `frame` and collect the findings.

    `frame.index` holds 0-based source row numbers; messages say `row N` counting data rows
    from 1, plus the file line when `line_offset` (header lines before the data) is given.
    """
    checker = _Checker(frame, data, rules, source, line_offset)
    return checker.run()


class _Checker:
    def __init__(
        self,
        frame: pd.DataFrame,
        data: DataParams,
        rules: ValidateParams,
        source: str,
        line_offset: int | None,
    ) -> None:
        self.frame = frame
        self.data = data
        self.rules = rules
        self.line_offset = line_offset
        self.report = ValidationReport(source=source, rows=len(frame), columns=list(frame.columns))

    def run(self) -> ValidationReport:
        if self.report.rows == 0:
            self._add("error", "not_empty", None, "the file has a header but no data rows", 0)
            return self.report
        present = self._check_columns()
        typed, unparsable = self._parse_numeric(present)
        parsed = typed.drop(index=unparsable) if len(unparsable) else typed
        self._check_schema(parsed, present)
        self._check_null_fractions(parsed, present)
        self._check_duplicates()
        self._check_target(typed, present)
        self.report.checks += 1
        if self.report.rows < self.rules.min_rows:
            self._add(
                "error",
                "min_rows",
                None,
                f"needs at least {self.rules.min_rows:,} rows, found {self.report.rows:,}",
                self.report.rows,
            )
        return self.report

    # -- rules ---------------------------------------------------------------------------
    def _check_columns(self) -> list[str]:
        declared = self.data.columns
        present = [c for c in declared if c in self.frame.columns]
        for column in declared:
            self.report.checks += 1
            if column not in self.frame.columns:
                self._add(
                    "error",
                    "column_present",
                    column,
                    f"declared column '{column}' is missing "
                    f"(found columns: {', '.join(map(str, self.frame.columns))})",
                    self.report.rows,
                )
        unknown = [c for c in self.frame.columns if c not in declared]
        self.report.checks += 1
        for column in unknown:
            self._add(
                "error" if self.rules.unknown_columns == "error" else "warning",
                "unknown_column",
                str(column),
                f"column '{column}' is not declared in conf/data/ and will not be used",
                int(self.frame[column].notna().sum()),
            )
        return present

    def _parse_numeric(self, present: list[str]) -> tuple[pd.DataFrame, pd.Index]:
        """Coerce every declared column as ingest and serving do (`gitml.data.coercion`):
        a cell that is not a number is a type error of its own, nan or inf a finite error."""
        changed: dict[str, pd.Series] = {}
        bad_rows: set[int] = set()
        for column in present:
            spec = self.data.columns[column]
            series = self.frame[column]
            if spec.type == "category":
                canonical = _canonical_categories(series, spec)
                if canonical is not series:
                    changed[column] = canonical
                continue
            self.report.checks += 1
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                continue  # numbers already; NaN is pandas' missing value
            numbers = _coerce_numbers(series)
            what = "text" if _holds_text(series) else f"{series.dtype} values"
            with np.errstate(invalid="ignore"):
                infinite = ~numbers.null & ~numbers.bad & ~np.isfinite(numbers.values)
            for rule, mask, message in (
                ("type", numbers.bad, f"must be {spec.type} but holds {what}"),
                ("finite", infinite, "must be a finite number"),
            ):
                if mask.any():
                    self._add_rows("error", rule, column, message, series[mask])
                    bad_rows.update(series.index[mask])
            changed[column] = pd.Series(numbers.values, index=series.index)
        # the frame itself when nothing changed: copies of a large table cost real time
        typed = self.frame.assign(**changed) if changed else self.frame
        return typed, pd.Index(sorted(bad_rows))

    def _check_schema(self, typed: pd.DataFrame, present: list[str]) -> None:
        import pandera.pandas as pa

        schema = pa.DataFrameSchema(
            {
                c: pa.Column(
                    nullable=self.data.columns[c].nullable, checks=_checks(self.data.columns[c])
                )
                for c in present
            },
            strict=False,
        )
        self.report.checks += sum(1 + len(col.checks) for col in schema.columns.values())
        try:
            schema.validate(typed, lazy=True, inplace=True)  # no coercion: spare a copy
        except pa.errors.SchemaErrors as err:
            cases = err.failure_cases
            for (column, check), group in cases.groupby(["column", "check"], sort=False):
                spec = self.data.columns[column]
                rule, message = _describe(check, spec, column == self.data.target)
                values = pd.Series(
                    group["failure_case"].to_numpy(), index=group["index"].to_numpy()
                )
                self._add_rows("error", rule, str(column), message, values)

    def _check_null_fractions(self, typed: pd.DataFrame, present: list[str]) -> None:
        for column in present:
            nulls = int(typed[column].isna().sum())
            self.report.null_counts[column] = nulls
            spec = self.data.columns[column]
            if not spec.nullable or nulls == 0:
                continue
            self.report.checks += 1
            fraction = nulls / len(typed) if len(typed) else 0.0
            limit = 1.0 if spec.max_null_fraction is None else spec.max_null_fraction
            level: Level = "error" if fraction > limit else "info"
            self._add_rows(
                level,
                "max_null_fraction",
                column,
                f"{fraction:.2%} of values are empty (allowed up to {limit:.2%})",
                typed[column][typed[column].isna()],
            )

    def _check_duplicates(self) -> None:
        """Rows equal in every column (missing equals missing) to an earlier row.

        `DataFrame.duplicated` rather than a group-by over every column: the same rows at a
        fraction of the time and memory on millions of rows; the earlier row each shown
        example repeats is then found by comparing that one row with the rows before it.
        """
        self.report.checks += 1
        duplicated = self.frame.duplicated(keep="first").to_numpy()
        count = int(duplicated.sum())
        if not count:
            return
        fraction = count / len(self.frame)
        limit = self.rules.max_duplicate_fraction
        level: Level = "error" if fraction > limit else "warning"
        shown = np.flatnonzero(duplicated)[: self.rules.examples]
        examples = [
            self._example(self.frame.index[i], f"same as row {int(self._first_equal(i)) + 1}")
            for i in shown
        ]
        self._add(
            level,
            "duplicates",
            None,
            f"{count:,} rows ({fraction:.2%}) repeat an earlier row exactly "
            f"(allowed up to {limit:.2%}){self._first(examples)}",
            count,
            examples,
        )

    def _first_equal(self, position: int) -> Any:
        """The index of the first row equal to the row at `position` (which repeats it)."""
        same = np.ones(position, dtype=bool)
        for name in self.frame.columns:
            column = self.frame[name]
            value = column.iloc[position]
            before = column.iloc[:position]
            if pd.isna(value):
                same &= before.isna().to_numpy()
            else:
                same &= (before == value).to_numpy(dtype=bool, na_value=False)
        return self.frame.index[int(np.argmax(same))]

    def _check_target(self, typed: pd.DataFrame, present: list[str]) -> None:
        """Classification: every declared class makes up at least `min_class_fraction` of
        the target. Regression: every target value is a finite number (type and finiteness
        are checked as for any numeric column; this adds missing values, even when the
        column is declared nullable), and the report gives the target's range."""
        target = self.data.target
        if target not in present:
            return
        self.report.checks += 1
        if self.data.task == "regression":
            self._check_regression_target(typed[target])
            return
        counts = typed[target].value_counts()
        self.report.target_balance = {str(k): int(v) for k, v in counts.items()}
        classes = self.data.columns[target].categories or []
        observed = {c: int(counts.get(c, 0)) for c in classes}
        total = sum(observed.values())
        if not total:
            return
        rarest = min(observed, key=observed.__getitem__)
        fraction = observed[rarest] / total
        if fraction < self.rules.min_class_fraction:
            self._add(
                "error",
                "class_balance",
                target,
                f"class {rarest!r} makes up {fraction:.2%} of the target "
                f"(at least {self.rules.min_class_fraction:.2%} required); counts: {observed}",
                observed[rarest],
            )

    def _check_regression_target(self, column: pd.Series) -> None:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(values)
        if finite.any():
            shown = values[finite]
            self.report.target_summary = {
                "min": _jsonable(shown.min()),
                "mean": _jsonable(round(float(shown.mean()), 6)),
                "max": _jsonable(shown.max()),
            }
        # a text or infinite cell is a type/finite error of its own, an empty one in a
        # column not declared nullable a target_present error: named once, there
        missing = column.isna().to_numpy() & self.data.columns[column.name].nullable
        if missing.any():
            self._add_rows(
                "error",
                "target_present",
                str(column.name),
                "is empty (a regression target needs a number in every row)",
                column[missing],
            )

    # -- reporting ------------------------------------------------------------------------
    def _add(
        self,
        level: Level,
        rule: str,
        column: str | None,
        message: str,
        count: int,
        examples: list[dict[str, Any]] | None = None,
    ) -> None:
        self.report.findings.append(Finding(level, rule, column, message, count, examples or []))

    def _add_rows(self, level: Level, rule: str, column: str, what: str, values: pd.Series) -> None:
        count = len(values)
        examples = [self._example(i, v) for i, v in list(values.items())[: self.rules.examples]]
        noun = "row" if count == 1 else "rows"
        self._add(
            level,
            rule,
            column,
            f"column '{column}' {what}: {count:,} {noun}{self._first(examples)}",
            count,
            examples,
        )

    def _example(self, index: Any, value: Any) -> dict[str, Any]:
        row = int(index) + 1
        example: dict[str, Any] = {"row": row, "value": _jsonable(value)}
        if self.line_offset is not None:
            example["line"] = row + self.line_offset
        return example

    @staticmethod
    def _first(examples: list[dict[str, Any]]) -> str:
        if not examples:
            return ""
        first = examples[0]
        where = f"row {first['row']}" + (f", line {first['line']}" if "line" in first else "")
        return f" (first: {where}, {first['value']!r})"


def _canonical_categories(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    """The declared spelling of each category cell (unknowns keep their own text), empty
    cells missing: what ingest writes and serving matches."""
    import pyarrow as pa

    try:
        column = pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):  # mixed Python types
        column = pa.array([_python(v) for v in series], pa.string())
    cells = coerce_categories(column, spec.categories or [])
    if isinstance(series.dtype, pd.CategoricalDtype) and all(
        t == c for c, t in zip(series.cat.categories, cells.texts, strict=False)
    ):
        return series  # already canonical (the ingested data): spare a copy
    return cells.categorical(index=series.index)


def _coerce_numbers(series: pd.Series) -> Numbers:
    import pyarrow as pa

    try:
        return coerce_numbers(pa.array(series, from_pandas=True))
    except (pa.ArrowException, TypeError, ValueError):  # mixed Python types
        return coerce_number_values(series.tolist())


def _holds_text(series: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(series):
        return True
    return series.dtype == object and any(isinstance(v, str) for v in series)


def _python(value: Any) -> Any:
    text = category_text(value)
    return text if isinstance(text, str) else (None if text is None else str(value))


def _checks(spec: ColumnSpec) -> list[Any]:
    import pandera.pandas as pa

    checks = []
    if spec.categories is not None:
        allowed = list(spec.categories)
        checks.append(pa.Check(lambda s: s.isin(allowed), name="categories"))
    if spec.allowed is not None:
        values = list(spec.allowed)
        checks.append(pa.Check(lambda s: s.isin(values), name="allowed_values"))
    if spec.type == "int":
        checks.append(pa.Check(lambda s: s == np.floor(s), name="integer"))
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min, name="min"))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max, name="max"))
    return checks


def _describe(check: str, spec: ColumnSpec, is_target: bool) -> tuple[str, str]:
    """Rule name and message for a pandera check name."""
    if check == "not_nullable":
        return (
            ("target_present", "is empty (every row needs a target)")
            if is_target
            else (
                "null",
                "is empty (or whitespace) but not declared nullable",
            )
        )
    if check == "categories":
        return "categories", f"has values outside the declared categories {spec.categories}"
    if check == "allowed_values":
        allowed = [int(v) if float(v).is_integer() else v for v in spec.allowed or []]
        return "allowed_values", f"has values outside the allowed {allowed}"
    if check == "integer":
        return "integer", "holds numbers that are not an integer"
    if check.startswith("min") or check.startswith("greater_than"):
        return "min", f"must be >= {spec.min:g}"
    if check.startswith("max") or check.startswith("less_than"):
        return "max", f"must be <= {spec.max:g}"
    return check, f"fails {check}"


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int | float | str | bool) else str(value)
