"""Batch scoring of a partitioned Parquet dataset on a cluster (`gitml predict --engine dask`).

One task per input file: a worker scores it with `score_file` (the local path's code, rules
and error policies) into its own part, `part-NNNNN.parquet`, numbered by the input files'
sorted order, so the same input gives the same part names. A task writes its part
atomically, so a task Dask re-runs after its worker died overwrites its own part: every row
is in the output exactly once. The parts are written into a temporary sibling of OUTPUT,
which replaces OUTPUT only when every part is there: a failed job leaves the previous
OUTPUT as it was.

Workers never receive the pipeline object from the client. They receive the model's
checked files (`ModelFiles`: path, signature, metadata with its SHA-256), plus its bytes
when the scheduler is remote, and each worker process loads it once through the trusted
loader after checking the hash (`served_on_worker`); a worker that finds another hash
refuses, and the job fails with its message. The output directory must be reachable by
every worker at the same path (one machine, or a shared filesystem).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gitml.errors import DataError, ModelError, os_reason
from gitml.serve.batch import REJECTED_SUFFIX, score_file
from gitml.serve.bundle import (
    METADATA_FILE,
    SIGNATURE_FILE,
    ModelFiles,
    ServedModel,
    check_model_files,
    load_model_files,
)
from gitml.serve.inputs import Policy

if TYPE_CHECKING:
    from gitml.cluster import Engine

PART_PATTERN = "part-{:05d}.parquet"
_STAGING = ".gitml-tmp-"
_GLOB = set("*?[")


@dataclass(frozen=True)
class ModelShipment:
    """What a worker needs to load the model itself: the checked files, and the file's
    bytes when the workers may not see the client's files (a remote scheduler)."""

    files: ModelFiles
    data: bytes | None = None

    @property
    def sha256(self) -> str:
        return self.files.sha256


@dataclass(frozen=True)
class PartJob:
    """One task: score `source` into `target` (a part in the staging directory)."""

    index: int
    source: Path
    target: Path

    def __str__(self) -> str:  # how errors about the task name it
        return str(self.source)


@dataclass(frozen=True)
class PartOptions:
    """The options of `score_file` every part is scored with."""

    threshold: float
    chunk_size: int
    on_error: Literal["fail", "skip"]
    unknown_category: Policy
    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartSummary:
    """What one part's task did (sent back to the client)."""

    index: int
    rows: int
    scored: int
    rejected: int
    unknown_categories: dict[str, int]
    worker_pid: int


@dataclass
class DatasetSummary:
    """What a partitioned run did."""

    parts: int = 0
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    output: Path | None = None
    rejected_files: list[Path] = field(default_factory=list)
    unknown_categories: dict[str, int] = field(default_factory=dict)
    workers: int = 0
    seconds: float = 0.0


def ship_model(files: ModelFiles, *, with_bytes: bool) -> ModelShipment:
    """The shipment of checked model files: with the file's bytes for remote workers."""
    if not with_bytes:
        return ModelShipment(files)
    try:
        data = files.path.read_bytes()
    except OSError as err:
        raise ModelError(f"{files.path}: cannot be read ({os_reason(err)})") from err
    return ModelShipment(files, data)


def find_partitions(source: str | Path) -> list[Path]:
    """The Parquet files of a dataset: a directory (every `*.parquet` below it, sorted, hidden
    and `_`-prefixed entries skipped as Dask, Spark and Arrow write them), a glob, or one file."""
    text = str(source)
    if _GLOB & set(text):
        import glob

        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"the pattern {text!r}"
    else:
        path = Path(source)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.parquet")
                if p.is_file()
                and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
            )
        else:
            raise DataError(f"{path}: input not found (expected a Parquet file, directory or glob)")
        where = str(path)
    if not found:
        raise DataError(f"{where}: no Parquet files to score", hint="name *.parquet files")
    other = [p for p in found if p.suffix != ".parquet"]
    if other:
        raise DataError(
            f"{other[0]}: --engine dask scores Parquet datasets; this is not a .parquet file",
            hint="convert CSV to Parquet, or score it with --engine local",
        )
    return found


def score_dataset(
    engine: Engine,
    shipment: ModelShipment,
    source: str | Path,
    output: str | Path,
    options: PartOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetSummary:
    """Score every Parquet file of `source` into the directory `output`, one part each, on
    `engine`; see the module docstring. Raises the first task's error (with `fail`, the
    InputError naming the partition file, row and column), leaving `output` untouched."""
    started = time.perf_counter()
    files = find_partitions(source)
    target = Path(output)
    _check_output(target, files)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{target.name}.", dir=target.parent))
    os.chmod(staging, 0o755)
    jobs = [PartJob(i, f.resolve(), staging / PART_PATTERN.format(i)) for i, f in enumerate(files)]
    summary = DatasetSummary(parts=len(jobs), output=target, workers=engine.workers)
    finished = 0

    def done(_: int, part: PartSummary) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished, len(jobs))

    try:
        parts = engine.map_ordered(score_partition, jobs, shipment, options, done=done)
        _check_parts(staging, jobs)
        _replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for part in parts:
        summary.rows += part.rows
        summary.scored += part.scored
        summary.rejected += part.rejected
        for name, count in part.unknown_categories.items():
            summary.unknown_categories[name] = summary.unknown_categories.get(name, 0) + count
    summary.rejected_files = sorted(target.glob(f"*{REJECTED_SUFFIX}"))
    summary.seconds = time.perf_counter() - started
    return summary


def score_partition(job: PartJob, shipment: ModelShipment, options: PartOptions) -> PartSummary:
    """The task a worker runs: load the model (once per process), score one file."""
    served = served_on_worker(shipment)
    done = score_file(
        served,
        job.source,
        job.target,
        threshold=options.threshold,
        chunk_size=options.chunk_size,
        on_error=options.on_error,
        unknown_category=options.unknown_category,
        keep=options.keep,
    )
    return PartSummary(
        index=job.index,
        rows=done.rows,
        scored=done.scored,
        rejected=done.rejected,
        unknown_categories=dict(done.unknown_categories),
        worker_pid=os.getpid(),
    )


_LOADED: dict[str, ServedModel] = {}  # per worker process, by the model file's SHA-256


def served_on_worker(shipment: ModelShipment) -> ServedModel:
    """The shipped model, loaded in this process through the trusted loader after its
    SHA-256 was checked; loaded once per process and hash."""
    expected = shipment.sha256
    if expected in _LOADED:
        return _LOADED[expected]
    files = shipment.files
    with tempfile.TemporaryDirectory(prefix="gitml-model-") as tmp:
        path = files.path
        if shipment.data is not None:  # written beside its signature and metadata, as shipped
            import json

            path = Path(tmp) / files.path.name
            path.write_bytes(shipment.data)
            (path.parent / SIGNATURE_FILE).write_text(json.dumps(files.signature))
            (path.parent / METADATA_FILE).write_text(json.dumps(files.metadata))
        try:
            checked = check_model_files(
                path,
                name=files.name,
                version=files.version,
                commit=files.commit,
                metrics=files.metrics,
            )
        except ModelError as err:
            raise ModelError(
                f"Dask worker {_worker_name()} refuses the model: {err.message}", hint=err.hint
            ) from err
        if checked.sha256 != expected:
            raise ModelError(
                f"Dask worker {_worker_name()} refuses the model: {path} has SHA-256 "
                f"{checked.sha256[:12]}... ({METADATA_FILE} beside it agrees), but the client "
                f"verified {expected[:12]}...: the workers do not see the same model file",
                hint="score on workers that share the client's model file, or give a "
                "--scheduler so that the model's bytes are sent to them",
            )
        served = load_model_files(checked)
    _LOADED.clear()  # one model per process: a long-lived worker does not pile them up
    _LOADED[expected] = served
    return served


def _worker_name() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _check_output(target: Path, files: Sequence[Path]) -> None:
    if target.exists() and not target.is_dir():
        raise DataError(
            f"{target}: exists and is not a directory; --engine dask writes a directory of "
            "Parquet parts",
            hint="name a new or existing directory for -o",
        )
    resolved = target.resolve()
    for file in files:
        if resolved == file.resolve() or resolved in file.resolve().parents:
            raise DataError(f"{target}: the output would overwrite the input {file}")


def _check_parts(staging: Path, jobs: Sequence[PartJob]) -> None:
    missing = [j.target.name for j in jobs if not j.target.is_file()]
    if missing:
        raise DataError(
            f"{staging}: parts {missing[:3]} missing after every task reported success",
            hint="the workers must see the output directory at the same path as the client",
        )


def _replace_directory(staging: Path, target: Path) -> None:
    """Put `staging` in `target`'s place; the previous directory goes only once the new one
    is in place (two renames: a crash in between leaves it as a `.gitml-tmp-` sibling)."""
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(staging, target)
    except OSError as err:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)
        raise DataError(f"cannot put the scored parts in {target}: {os_reason(err)}") from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
