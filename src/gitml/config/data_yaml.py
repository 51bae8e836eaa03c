"""Render an inferred data schema as a commented `conf/data/<name>.yaml` (values in, text out)."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import yaml

from gitml.config.schema import DataParams, validate_model
from gitml.errors import ConfigError

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_WIDTH = 100  # the line length beyond which a category list is written one item per line


@dataclass(frozen=True)
class DraftColumn:
    """One column as inferred: its `ColumnSpec` fields, what was seen, and why it is excluded.

    `spec` None: the column cannot be declared (free text, dates), so it is left out of
    `columns` and only named in a comment; `excluded` set: listed under `drop`.
    """

    name: str
    spec: dict[str, Any] | None
    seen: str
    excluded: str | None = None


@dataclass(frozen=True)
class SchemaDraft:
    """An inferred data schema: the fields `DataParams` takes plus what to say about them."""

    name: str
    source: str
    target: str
    positive_class: str | None
    task: str  # as printed: "binary (positive class ...)", "multiclass (...)", "regression (...)"
    rows: int
    columns: list[DraftColumn]
    slices: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """The task's name (gitml.tasks): binary, multiclass or regression."""
        return self.task.split(" ")[0]

    @property
    def drop(self) -> list[str]:
        return [c.name for c in self.columns if c.excluded and c.spec is not None]


def render_data_yaml(draft: SchemaDraft) -> str:
    """The commented YAML of `draft`, checked to load back as the `DataParams` it declares.

    The same draft always gives the same bytes: no timestamps, no absolute paths.
    """
    out = [
        f"# Inferred by `gitml schema infer` from {draft.source} ({draft.rows:,} rows).",
        "# A draft meant to be read and edited: check the ranges, categories and exclusions.",
    ]
    for policy in draft.policies:
        out += textwrap.wrap(
            policy,
            _WIDTH - 2,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        )
    out += [
        f"name: {_scalar(draft.name)}",
        f"source: {_scalar(draft.source)}",
        "format: auto",
        f"# inferred from the target: {draft.task}",
        f"task: {draft.kind}",
        f"target: {_scalar(draft.target)}",
        *([f"positive_class: {_scalar(draft.positive_class)}"] if draft.positive_class else []),
        f"drop: {_flow_list(draft.drop)}",
        "# slice candidates: low-cardinality categorical columns (metrics are reported per group)",
    ]
    slices = f"slices: {_flow_list(draft.slices)}"
    out += (
        [slices]
        if len(slices) <= _WIDTH
        else ["slices:", *(f"  - {_scalar(c)}" for c in draft.slices)]
    )
    out.append("columns:")
    undeclared = []
    for column in draft.columns:
        if column.spec is None:
            undeclared.append(column)
            continue
        why = f"; excluded (drop): {column.excluded}" if column.excluded else ""
        out.append(f"  # {column.seen}{why}")
        out += _column_lines(column.name, column.spec)
    if undeclared:
        out.append("# Not declared, so not used (validate warns about them as unknown columns):")
        out += [f"#   {_scalar(c.name)}: {c.seen}; {c.excluded}" for c in undeclared]
    text = "\n".join(out) + "\n"
    check_data_yaml(text, source=f"conf/data/{draft.name}.yaml")
    return text


def check_data_yaml(text: str, *, source: str) -> DataParams:
    """Parse `conf/data/<name>.yaml` text as `DataParams`; every problem names its key path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    return validate_model(DataParams, raw, source=source, what="data schema")


def _column_lines(name: str, spec: dict[str, Any]) -> list[str]:
    items = [f"{key}: {_value(value)}" for key, value in spec.items()]
    line = f"  {_scalar(name)}: {{{', '.join(items)}}}"
    if len(line) <= _WIDTH or not spec.get("categories"):
        return [line]
    lines = [f"  {_scalar(name)}:"]
    for key, value in spec.items():
        if key == "categories":
            lines.append("    categories:")
            lines += [f"      - {_scalar(v)}" for v in value]
        else:
            lines.append(f"    {key}: {_value(value)}")
    return lines


def _value(value: Any) -> str:
    return _flow_list(value) if isinstance(value, list) else _scalar(value)


def _flow_list(values: list[Any]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


def _scalar(value: Any) -> str:
    """A YAML scalar that loads back as `value`: text that YAML would read as something else
    (`Yes`, `1`, `null`, names with spaces, colons or brackets) is double-quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


_TOP_KEY = r"^{key}:[ \t]*(?P<value>[^#\n]*?)[ \t]*(?P<comment>#[^\n]*)?$"


def point_source(text: str, source: str, *, where: str, note: str = "") -> str:
    """`conf/data/<name>.yaml` text with its top-level `source:` set to `source` (followed by
    `# note` when given) and `format: auto` (the new file's suffix says its format).

    A line edit, so the file's comments and layout stay as the user wrote them; the result
    is checked to load back as `DataParams` with that source. `where` names the file.
    """
    pattern = re.compile(_TOP_KEY.format(key="source"), re.MULTILINE)
    if len(pattern.findall(text)) != 1:
        raise ConfigError(
            f"{where}: expected one top-level `source:` line to point at {source}",
            hint="write `source: PATH` on a line of its own at the top level of the file",
        )
    comment = f"  # {note}" if note else ""
    text = pattern.sub(lambda m: f"source: {_scalar(source)}{comment}", text)
    declared = check_data_yaml(text, source=where)
    if declared.format != "auto":  # only a rewritten `format:` line needs a second check
        fmt = re.compile(_TOP_KEY.format(key="format"), re.MULTILINE)
        text = fmt.sub("format: auto", text, count=1)
        declared = check_data_yaml(text, source=where)
    if declared.source != source or declared.format != "auto":
        raise ConfigError(f"{where}: could not point `source:` at {source}")
    return text
