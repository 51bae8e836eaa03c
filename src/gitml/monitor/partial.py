"""Partial results of a monitoring run: what each chunk or partition of the current data adds.

`run_monitor` reads the current data once and, per row, needs three things: its counts on
its reference's bins (drift and data quality), the row count, and the slim columns that
performance reads (ids, time, version, outputs). Each is computed per chunk
(`count_chunk`) and merged in order (`Partial.add`): counts add up exactly
(`BatchCounts.merge`), slim frames concatenate. So the same statistics come out whether the
chunks are read in this process or the partitions are counted on a Dask cluster
(`count_parts`) and merged here.

Workers never receive a pipeline from the client: when the data lacks the model's outputs,
each worker loads the reference's model itself through the verified loader (its SHA-256
checked first), once per process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import ModelError, os_reason
from gitml.monitor.reference import Reference, Scorer
from gitml.monitor.sketch import BatchCounts, ReferenceProfile, count_batch
from gitml.monitor.sources import CurrentData, SourcePart

if TYPE_CHECKING:
    import pandas as pd

    from gitml.cluster import Engine

ALL = "*"  # every row goes to the one reference


@dataclass(frozen=True)
class ScorerSpec:
    """How a worker loads a reference's model itself: the verified file (or its bytes, for
    a remote scheduler), the SHA-256 it must have, the signature and the threshold."""

    model: Path
    sha256: str
    signature: dict[str, Any]
    threshold: float
    data: bytes | None = None


@dataclass(frozen=True)
class CountPlan:
    """What counting a chunk needs besides the chunk, the same for every chunk: each
    reference's profile and version by key, whether to score and what to keep."""

    profiles: Mapping[str, ReferenceProfile]
    versions: Mapping[str, str]
    outputs: tuple[str, ...]
    needs_scoring: bool
    keep_rows: bool
    ids: bool


@dataclass
class Partial:
    """Rows, counts per reference key and slim frames of some chunks, in order."""

    rows: int = 0
    counts: dict[str, BatchCounts] = field(default_factory=dict)
    slim: list[pd.DataFrame] = field(default_factory=list)

    def add(self, other: Partial) -> None:
        """Append the chunks of `other` (which come after these)."""
        self.rows += other.rows
        for key, counted in other.counts.items():
            have = self.counts.get(key)
            self.counts[key] = counted if have is None else have.merge(counted)
        self.slim.extend(other.slim)


def plan_counting(
    refs: Mapping[str, Reference],
    profiles: Mapping[str, ReferenceProfile],
    outputs: list[str],
    *,
    needs_scoring: bool,
    keep_rows: bool,
    ids: bool,
) -> CountPlan:
    return CountPlan(
        profiles=dict(profiles),
        versions={key: ref.version for key, ref in refs.items()},
        outputs=tuple(outputs),
        needs_scoring=needs_scoring,
        keep_rows=keep_rows,
        ids=ids,
    )


def count_chunk(chunk: pd.DataFrame, plan: CountPlan, scorers: Mapping[str, Scorer]) -> Partial:
    """One chunk's partial result: its rows split by reference key (scored by that key's
    model when the data lacks outputs), counted on that reference's bins."""
    partial = Partial(rows=len(chunk))
    for key, part in _split(chunk, plan.versions):
        if plan.needs_scoring:  # each version's rows by that version's model
            part = scorers[key].score(part)
        partial.counts[key] = count_batch(part, plan.profiles[key])
        if plan.keep_rows:
            partial.slim.append(_slim(part, plan.versions[key], list(plan.outputs), ids=plan.ids))
    return partial


def count_parts(
    engine: Engine,
    source: CurrentData,
    plan: CountPlan,
    refs: Mapping[str, Reference],
) -> Partial:
    """Count every part of `source` on `engine` and merge the partial results in order."""
    specs = {}
    if plan.needs_scoring:
        specs = {key: _spec(ref.scorer, with_bytes=engine.remote) for key, ref in refs.items()}
    total = Partial()
    for partial in engine.map_ordered(count_part, source.parts(), source, plan, specs):
        total.add(partial)
    return total


def count_part(
    part: SourcePart,
    source: CurrentData,
    plan: CountPlan,
    specs: Mapping[str, ScorerSpec],
) -> Partial:
    """The task a worker runs: read one part, count it chunk by chunk."""
    scorers = {key: scorer_on_worker(spec) for key, spec in specs.items()}
    total = Partial()
    for chunk in source.part_chunks(part):
        total.add(count_chunk(chunk, plan, scorers))
    return total


_LOADED: dict[str, Scorer] = {}  # per worker process, by the model file's SHA-256


def scorer_on_worker(spec: ScorerSpec) -> Scorer:
    """The reference's scorer, its model loaded in this process through the verified loader
    (SHA-256 checked before skops reads the file); once per process and hash."""
    if spec.sha256 in _LOADED:
        return _LOADED[spec.sha256]
    from gitml.model.persist import load_verified_model

    where = f"Dask worker {os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="gitml-model-") as tmp:
        path = spec.model
        if spec.data is not None:
            path = Path(tmp) / spec.model.name
            path.write_bytes(spec.data)
        try:
            pipeline = load_verified_model(path, spec.sha256, recorded_in="the client's verified")
        except ModelError as err:
            raise ModelError(f"{where} refuses the model: {err.message}", hint=err.hint) from err
    scorer = Scorer(pipeline, spec.signature, spec.threshold, model=spec.model, sha256=spec.sha256)
    _LOADED[spec.sha256] = scorer
    return scorer


def _spec(scorer: Scorer, *, with_bytes: bool) -> ScorerSpec:
    if scorer.model is None or scorer.sha256 is None:
        raise ModelError("the reference's model has no verified file to send to Dask workers")
    data = None
    if with_bytes:
        try:
            data = scorer.model.read_bytes()
        except OSError as err:
            raise ModelError(f"{scorer.model}: cannot be read ({os_reason(err)})") from err
    return ScorerSpec(scorer.model, scorer.sha256, scorer.signature, scorer.threshold, data)


def _split(chunk: pd.DataFrame, versions: Mapping[str, str]) -> list[tuple[str, pd.DataFrame]]:
    """The chunk's rows by reference key: all of them, or by `model_version` (per-version
    references exist only for data that has the column)."""
    if ALL in versions:
        return [(ALL, chunk)] if len(chunk) else []
    return [
        (str(version), part)
        for version, part in chunk.groupby("model_version", sort=False, observed=True)
        if str(version) in versions and len(part)
    ]


def _slim(part: pd.DataFrame, version: str, outputs: list[str], *, ids: bool) -> pd.DataFrame:
    """The columns performance needs; ids, times and the version filled in when absent.

    Ids only when labels are to be joined; text as categories, so that estimating a 10M-row
    log keeps about 20 bytes a row, not one Python string per row and column.
    """
    import pandas as pd

    slim = pd.DataFrame(index=part.index)
    if ids:
        slim["request_id"] = part.get("request_id", None)
        slim["record"] = part.get("record", 0)
    slim["timestamp"] = (
        part["timestamp"]
        if "timestamp" in part
        else pd.Series(pd.NaT, index=part.index, dtype="datetime64[ns, UTC]")
    )
    slim["model_version"] = pd.Categorical([version] * len(part))
    for name in outputs:
        column = part.get(name, None)
        if isinstance(column, pd.Series) and not pd.api.types.is_numeric_dtype(column):
            column = column.astype("category")
        slim[name] = column
    return slim.reset_index(drop=True)
