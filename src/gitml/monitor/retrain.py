"""Retraining: a labelled production batch added to the training data under DVC, on a branch.

`gitml retrain` joins the labels to the batch by (request id, record), adds the labelled rows
in the source's columns to `data/retrain/<data.name>.parquet` (a DVC-tracked copy of the
training data that the first retrain makes from `data.source` and points `data.source` at),
runs `dvc repro` and commits the result on a new branch, so the review workflow can judge the
retrained model against production like any other pull request.

All of it happens in a temporary Git worktree of a new branch: the user's working tree and
current branch are never touched, whatever fails. A refusal before `dvc repro` removes the
branch; a failing `dvc repro` commits the attempt on the branch and leaves it for inspection.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, cast

from gitml.config.compose import check_params, parse_params, write_params
from gitml.config.data_yaml import point_source
from gitml.config.schema import DataParams, LabelColumns, RetrainPolicy, ValidateParams
from gitml.data.io import ROW_COLUMN, read_source, write_arrow
from gitml.data.typing import apply_declared_types
from gitml.data.validation import validate_frame
from gitml.errors import ConfigError, DataError, ValidationError, VcsError, first_line
from gitml.files import sha256_file, write_text
from gitml.monitor.labelled import KEYS, join_labels, read_labels
from gitml.project import CONF_DIR, Project
from gitml.registry.catalog import gto_stages, load_registry
from gitml.vcs import (
    dirty_paths,
    dvc,
    git,
    pull_data,
    push_data,
    resolve_rev,
    share_dvc_cache,
    share_dvc_remotes,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

RETRAIN_DIR = "data/retrain"
Policy = Literal["append", "window"]


@dataclass(frozen=True)
class Retraining:
    """What one `gitml retrain` did."""

    branch: str
    commit: str  # the retraining commit on `branch`
    base: str  # the commit the branch starts from
    base_branch: str  # the branch the user was on ("HEAD" when detached)
    batch: str
    added: int  # labelled batch rows added to the training data
    unlabelled: int  # batch rows without a label (left out)
    unmatched: int  # labels that match no batch row (ignored)
    dropped: int  # policy window: the oldest rows dropped
    rows: int  # rows of the training data now
    data_path: str  # data/retrain/<name>.parquet
    previous_source: str | None  # data.source before, when this retrain pointed it here
    policy: Policy
    pushed: bool
    production: tuple[str, str] | None  # (tag, commit) of the version production holds


def retrain(
    project: Project,
    *,
    batch: Path | None,
    labels: Path,
    policy: Policy | None = None,
    window_rows: int | None = None,
    branch: str | None = None,
    push: bool = False,
    now: datetime | None = None,
) -> Retraining:
    """Add the labelled rows of `batch` to the training data, retrain and commit on `branch`.

    `batch` None: `monitor.current`. `policy`, `window_rows` and the branch name default to
    `monitor.retrain`. Refusals (a dirty working tree, stale params.yaml, labels matching no
    batch row, a batch without a required column, rows the pipeline's validation rejects)
    leave no branch behind.
    """
    root = project.root
    params = check_params(project)
    settings = params.monitor
    chosen, window = _policy(settings.retrain, policy, window_rows)
    batch = _batch_path(root, batch, settings.current)
    _check_clean(root, exempt=[batch, labels, root / settings.out, root / settings.history])
    data = params.data
    data_path = f"{RETRAIN_DIR}/{data.name}.parquet"
    first = PurePosixPath(data.source) != PurePosixPath(data_path)
    conf_rel = f"{CONF_DIR}/data/{data.name}.yaml"
    if first and not (root / conf_rel).is_file():
        raise ConfigError(
            f"{conf_rel} not found: gitml retrain points data.source of data set "
            f"'{data.name}' at {data_path} in that file",
            hint=f"name the data schema file after its data set ({data.name}.yaml)",
        )
    joined = join_batch_labels(
        _read_batch(batch, data, settings.labels),
        read_labels(labels, target=data.target, columns=settings.labels, task=data.task),
        columns=settings.labels,
        batch_name=batch.name,
        labels_name=labels.name,
    )
    name = branch or f"{settings.retrain.branch_prefix}{(now or datetime.now(UTC)):%Y-%m-%d-%H%M%S}"
    _check_branch(root, name)
    base = resolve_rev(root, "HEAD")
    base_branch = git(root, "rev-parse", "--abbrev-ref", "HEAD").strip()
    temp = Path(tempfile.mkdtemp(prefix="gitml-retrain-"))
    work = temp / "worktree"
    try:
        git(root, "worktree", "add", "--quiet", "-b", name, str(work), base)
    except VcsError:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    keep_branch = False
    try:
        share_dvc_cache(root, work)
        share_dvc_remotes(root, work)
        existing = _read_training_data(work, data)
        added = training_rows(joined.rows, joined.truth, existing.schema, data, where=str(batch))
        combined, dropped = append_rows(existing, added, policy=chosen, window_rows=window)
        check_training_data(combined, data, params.validate_, where=data_path, new=added.num_rows)
        write_arrow(work / data_path, combined)
        dvc(work, "add", data_path)
        if first:
            _point_source(work, conf_rel, data_path, was=data.source)
        keep_branch = True
        summary = _message(
            joined, added.num_rows, dropped, combined.num_rows, data_path, chosen, batch, labels
        )
        summary += [f"Branched from {base_branch} at {base[:12]}."]
        if first:
            summary.insert(2, f"data.source was {data.source}; it is now {data_path}.")
        try:
            dvc(work, "repro")
        except VcsError as err:
            _commit(work, f"retrain attempt (dvc repro failed): {summary[0]}", summary[1:])
            raise DataError(
                f"dvc repro failed on branch {name}: {err.message}",
                hint=f"the attempt (data, conf, params) is committed on {name}, left for "
                f"inspection: `git switch {name} && dvc repro`; delete it with "
                f"`git branch -D {name}`. Your working tree and {base_branch} are as they were",
            ) from err
        commit = _commit(work, summary[0], summary[1:])
        if push:
            _push(root, work, name)
    finally:
        git(root, "worktree", "remove", "--force", str(work))
        shutil.rmtree(temp, ignore_errors=True)
        if not keep_branch:
            git(root, "branch", "-D", name)
    return Retraining(
        branch=name,
        commit=commit,
        base=base,
        base_branch=base_branch,
        batch=str(batch),
        added=added.num_rows,
        unlabelled=joined.unlabelled,
        unmatched=joined.unmatched,
        dropped=dropped,
        rows=combined.num_rows,
        data_path=data_path,
        previous_source=data.source if first else None,
        policy=chosen,
        pushed=push,
        production=_production(root, params.project.model_name),
    )


@dataclass(frozen=True)
class JoinedBatch:
    """The batch rows that have a label, and their labels."""

    rows: pa.Table  # the labelled batch rows, in batch order
    truth: pa.Array  # the label of each, as read from the labels file
    batch_rows: int
    unlabelled: int  # batch rows without a label
    unmatched: int  # labels that match no batch row


def join_batch_labels(
    batch: pa.Table,
    labels: pd.DataFrame,
    *,
    columns: LabelColumns,
    batch_name: str = "the batch",
    labels_name: str = "the labels",
) -> JoinedBatch:
    """Join labels (`labelled.read_labels`: request_id, record, truth) to the batch's rows by
    its (id column, record column); a label without a value does not count. Refuses when no
    label matches a batch row, or when a batch row's key repeats."""
    import pyarrow as pa

    keys = _keys(batch, columns, where=batch_name)
    _check_unique(keys, columns, where=batch_name)
    labelled = labels[labels["truth"].notna()]
    joined, unmatched = join_labels(keys.set_axis(KEYS, axis=1), labelled)
    found = joined["truth"].notna().to_numpy()
    if not found.any():
        raise DataError(
            f"none of the {len(labelled):,} labels in {labels_name} matches a row of "
            f"{batch_name} by ({columns.id_column}, {columns.record_column}): nothing to add"
            + _examples(labelled, keys),
            hint="labels must name the request id and record of a row of this batch "
            "(monitor.labels sets the column names)",
        )
    return JoinedBatch(
        rows=batch.filter(pa.array(found)),
        truth=pa.array(joined["truth"][found].tolist()),
        batch_rows=batch.num_rows,
        unlabelled=int((~found).sum()),
        unmatched=unmatched,
    )


def training_rows(
    rows: pa.Table, truth: pa.Array, schema: pa.Schema, data: DataParams, *, where: str
) -> pa.Table:
    """The labelled rows in the training data's columns and types (`schema`), the target
    from `truth`. A column the rows lack is null where the schema allows it (an undeclared
    column, such as an id, or one declared `nullable`); a declared column that may not be
    null is an error naming it, and so is a value that does not fit the column's type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [
        f.name
        for f in schema
        if f.name != data.target
        and f.name not in rows.column_names
        and f.name in data.columns
        and not data.columns[f.name].nullable
    ]
    if missing:
        raise DataError(
            f"{where}: the batch has no column {', '.join(repr(c) for c in missing)}, which "
            f"the training data has and the schema (conf/data/{data.name}.yaml) declares as "
            "not nullable",
            hint="send the batch with every input column the model was trained on",
        )
    arrays = []
    for field in schema:
        if field.name == data.target:
            values = truth
        elif field.name in rows.column_names:
            values = rows[field.name]
        else:
            values = pa.nulls(rows.num_rows, field.type)
        try:
            arrays.append(pc.cast(values, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
            which = "labels" if field.name == data.target else "batch"
            raise DataError(
                f"{where}: column '{field.name}' of the {which}: a value does not fit the "
                f"training data's type {field.type} ({first_line(err)})"
            ) from err
    return pa.Table.from_arrays(arrays, schema=schema)


def append_rows(
    existing: pa.Table, added: pa.Table, *, policy: Policy, window_rows: int | None
) -> tuple[pa.Table, int]:
    """The training data with `added` after `existing` and, for policy window, only the
    newest `window_rows` rows kept; returns the table and how many old rows were dropped."""
    import pyarrow as pa

    combined = pa.concat_tables([existing, added]).combine_chunks()
    if policy == "append" or window_rows is None or combined.num_rows <= window_rows:
        return combined, 0
    dropped = combined.num_rows - window_rows
    return combined.slice(dropped), dropped


def check_training_data(
    table: pa.Table, data: DataParams, rules: ValidateParams, *, where: str, new: int
) -> None:
    """Refuse training data that the pipeline's `validate` stage would refuse (same typing
    as ingest, same rules); the message says which rows came from the batch."""
    typed = apply_declared_types(table, data)
    report = validate_frame(typed.to_pandas().set_index(ROW_COLUMN), data, rules, source=where)
    if report.ok:
        return
    errors = report.errors
    first_new = table.num_rows - new + 1
    raise ValidationError(
        f"{where} with the batch's labelled rows would fail validation: {len(errors)} data "
        f"rule(s) failed; first: [{errors[0].rule}] {errors[0].message}",
        hint=f"rows {first_new:,} to {table.num_rows:,} are the batch's; fix the batch or its "
        "labels (nothing was changed)",
    )


# -- steps -----------------------------------------------------------------------------------


def _policy(
    config: RetrainPolicy, policy: str | None, window_rows: int | None
) -> tuple[Policy, int | None]:
    chosen = policy or config.policy
    if chosen not in ("append", "window"):
        raise ConfigError(f"--policy must be append or window, got {chosen!r}")
    rows = window_rows if window_rows is not None else config.window_rows
    if chosen == "window" and rows is None:
        raise ConfigError(
            "policy window needs a window size",
            hint="pass --window-rows N or set monitor.retrain.window_rows in conf/monitor/",
        )
    return cast(Policy, chosen), rows


def _batch_path(root: Path, batch: Path | None, current: str | None) -> Path:
    if batch is not None:
        return batch.resolve()
    if current is None:
        raise ConfigError(
            "no batch given: pass --batch PATH, or set monitor.current in conf/monitor/"
        )
    return (root / current).resolve()


def _check_clean(root: Path, *, exempt: list[Path]) -> None:
    """Refuse uncommitted changes, except the batch, the labels and monitoring's outputs
    (what `gitml monitor` just wrote is not training input)."""
    skip = []
    for path in exempt:
        try:
            skip.append(PurePosixPath(path.resolve().relative_to(root.resolve()).as_posix()))
        except ValueError:
            continue
    dirty = [
        p
        for p in dirty_paths(root)
        if not any(PurePosixPath(p) == s or PurePosixPath(p).is_relative_to(s) for s in skip)
    ]
    if dirty:
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise VcsError(
            f"the working tree is not clean: {shown}",
            hint="the retraining branch starts from the last commit: commit or stash these "
            "changes first (nothing was changed)",
        )


def _check_branch(root: Path, name: str) -> None:
    try:
        git(root, "check-ref-format", "--branch", name)
    except VcsError as err:
        raise ConfigError(f"invalid branch name {name!r}") from err
    if git(root, "branch", "--list", name).strip():
        raise VcsError(
            f"branch {name} already exists",
            hint="pass another --branch, or delete it (git branch -D) if it is a failed attempt",
        )


def _read_batch(path: Path, data: DataParams, columns: LabelColumns) -> pa.Table:
    """A batch: a CSV or Parquet file, or a directory of Parquet files (the prediction log),
    with ids and category columns as text, as ingest reads them."""
    import pyarrow.parquet as pq

    if path.is_dir():
        try:
            return pq.read_table(path)
        except Exception as err:  # pyarrow raises several unrelated types
            raise DataError(f"{path}: not a directory of readable Parquet files ({err})") from err
    if not path.exists():
        raise DataError(f"{path}: batch file not found")
    expected = [columns.id_column, columns.record_column, *data.features]
    return read_source(path, expected=expected, text_columns=[columns.id_column, *data.categorical])


def _keys(table: pa.Table, columns: LabelColumns, *, where: str) -> pd.DataFrame:
    """(id, record) of each row: ids as text, records as ints (0 when the column is absent)."""
    import pandas as pd

    ident, record = columns.id_column, columns.record_column
    if ident not in table.column_names:
        raise DataError(
            f"{where}: no '{ident}' column: labels are joined to the batch by "
            f"({ident}, {record}) (found: {', '.join(table.column_names)})",
            hint="set monitor.labels.id_column and record_column in conf/monitor/",
        )
    ids = table[ident].to_pandas()
    if ids.isna().any():
        row = int(ids.isna().to_numpy().argmax()) + 1
        raise DataError(f"{where}: '{ident}' is empty in row {row}")
    keys = pd.DataFrame({ident: ids.astype(str).str.strip()})
    if record in table.column_names:
        numbers = pd.to_numeric(table[record].to_pandas(), errors="coerce")
        bad = numbers.isna() | (numbers != numbers.round())
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(
                f"{where}: '{record}' must be a whole number; row {row + 1} has "
                f"{table[record][row].as_py()!r}"
            )
        keys[record] = numbers.astype("int64")
    else:
        keys[record] = 0
    return keys


def _check_unique(keys: pd.DataFrame, columns: LabelColumns, *, where: str) -> None:
    names = [columns.id_column, columns.record_column]
    repeated = keys.duplicated(subset=names)
    if repeated.any():
        first = keys[repeated].iloc[0]
        raise DataError(
            f"{where}: {int(repeated.sum()):,} rows repeat a ({', '.join(names)}) key; first: "
            f"({first[names[0]]!r}, {int(first[names[1]])})",
            hint="each prediction in a batch has its own (request id, record) key",
        )


def _examples(labels: pd.DataFrame, batch: pd.DataFrame) -> str:
    def shown(frame: pd.DataFrame) -> str:
        rows = frame.head(3).itertuples(index=False)
        return ", ".join(f"({r[0]!r}, {int(r[1])})" for r in rows)

    return f" (labels: {shown(labels) or 'none'}; batch: {shown(batch) or 'none'})"


def _read_training_data(work: Path, data: DataParams) -> pa.Table:
    """The current training data as ingest reads it, restored from DVC when it is tracked."""
    path = work / data.source
    if not path.exists():
        try:
            pull_data(work, data.source)
        except VcsError as err:
            raise DataError(
                f"{data.source}: the training data is not in the DVC cache or remote "
                f"({err.message})",
                hint="run `dvc pull` (or `dvc repro`) in the project first",
            ) from err
    return read_source(
        path, fmt=data.format, expected=list(data.columns), text_columns=data.categorical
    )


def _point_source(work: Path, conf_rel: str, data_path: str, *, was: str) -> None:
    """Point data.source at the DVC-tracked training data and recompose params.yaml."""
    conf = work / conf_rel
    note = f"set by gitml retrain; was {was}"
    write_text(
        conf, point_source(conf.read_text(encoding="utf-8"), data_path, where=conf_rel, note=note)
    )
    text = write_params(Project(work))
    source = parse_params(text, source="params.yaml").data.source
    if source != data_path:
        raise ConfigError(
            f"data.source is {source!r} after {conf_rel} was pointed at {data_path}: another "
            "file in conf/ (an experiment preset?) overrides it",
            hint="remove that override so that data.source comes from conf/data/",
        )


def _message(
    joined: JoinedBatch,
    added: int,
    dropped: int,
    rows: int,
    data_path: str,
    policy: Policy,
    batch: Path,
    labels: Path,
) -> list[str]:
    window = f"; policy window dropped the oldest {dropped:,}" if dropped else f"; policy {policy}"
    return [
        f"retrain: {added:,} labelled rows from {batch.name} added to the training data",
        f"{data_path}: {rows:,} rows now{window}.",
        f"Batch {batch.name} (sha256 {_digest(batch)}): {joined.batch_rows:,} rows, {added:,} "
        f"labelled by {labels.name}; {joined.unmatched:,} labels matched no batch row.",
        "dvc repro retrained the model and its reports on these data.",
    ]


def _digest(path: Path) -> str:
    return sha256_file(path)[:16] if path.is_file() else "of a directory"


def _commit(work: Path, subject: str, body: list[str]) -> str:
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", subject, "-m", "\n".join(body))
    return git(work, "rev-parse", "HEAD").strip()


def _push(root: Path, work: Path, branch: str) -> None:
    hint = (
        f"the branch {branch} is committed locally; push it with `dvc push && git push origin "
        f"{branch}` once the remote is reachable"
    )
    try:
        push_data(work)
        git(root, "push", "--quiet", "origin", branch)
    except VcsError as err:
        raise VcsError(f"push failed: {err.message}", hint=hint) from err


def _production(root: Path, model_name: str) -> tuple[str, str] | None:
    """(tag, commit) of the version in the last `.gto` stage (prod), if one holds it."""
    stages = gto_stages(root) or ["prod"]
    history = load_registry(root).get(model_name)
    version = history.current(stages[-1]) if history else None
    return (version.tag, version.commit) if version else None
