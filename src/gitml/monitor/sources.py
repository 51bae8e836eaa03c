"""The current data of a monitoring run: a batch file, prediction-log files, a DVC-tracked path.

Every source is read as a stream of pandas chunks of one shape (the *batch frame* of
`gitml.monitor`): the signature's inputs as received, the model's outputs when the source
has them, and `request_id`, `record`, `timestamp`, `model_version` when it has those. No
source is ever read whole: CSV in blocks of text (the one coercion decides what a number is),
Parquet in record batches, log files one row group at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gitml.data.chunks import reading, rechunk
from gitml.errors import DataError, VcsError, first_line

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

LOG_PATTERN = "predictions-*.parquet"  # complete log files; dot-files are still being written
META = ("request_id", "record", "timestamp", "model_name", "model_version")
CHUNK_ROWS = 100_000

Kind = Literal["file", "log"]


@dataclass(frozen=True)
class Window:
    """`--since`/`--until` as UTC times (either may be open)."""

    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> str:
        if self.since is None and self.until is None:
            return "all rows"
        start = self.since.isoformat() if self.since else "the first row"
        end = self.until.isoformat() if self.until else "the last row"
        return f"{start} to {end}"


@dataclass(frozen=True)
class SourcePart:
    """A file of the current data, or a run of its row groups (None: the whole file)."""

    path: Path
    row_groups: tuple[int, ...] | None = None

    def __str__(self) -> str:  # how errors about the part name it
        if self.row_groups is None:
            return str(self.path)
        return f"{self.path} (row groups {self.row_groups[0]}-{self.row_groups[-1]})"


@dataclass(frozen=True)
class CurrentData:
    """What `--current` names, checked and ready to stream."""

    path: Path
    kind: Kind
    files: list[Path]
    columns: list[str]  # the columns read (inputs, outputs and meta columns present)
    window: Window = field(default_factory=Window)
    chunk_rows: int = CHUNK_ROWS

    @property
    def has_versions(self) -> bool:
        return "model_version" in self.columns

    def has_outputs(self, outputs: Sequence[str]) -> bool:
        return all(c in self.columns for c in outputs)

    def describe(self) -> str:
        if self.kind == "log":
            return f"{self.path} ({len(self.files)} log files, {self.window.describe()})"
        return str(self.path)

    def versions(self) -> list[str]:
        """The model versions that served the rows (in the window, for log files), in order."""
        import pyarrow.compute as pc

        found: dict[str, None] = {}
        for path in self.files:
            for column in reading(path, self._version_columns(path)):
                found.update(dict.fromkeys(str(v) for v in pc.unique(column).to_pylist() if v))
        return list(found)

    def _version_columns(self, path: Path) -> Iterator[Any]:
        if _format(path) == "csv":
            from gitml.data.io import iter_csv_text

            for batch in iter_csv_text(path, ["model_version"]):
                yield batch.column(0)
            return
        import pyarrow.parquet as pq

        log = self.kind == "log"
        wanted = ["model_version", "timestamp"] if log else ["model_version"]
        for batch in pq.ParquetFile(path).iter_batches(batch_size=self.chunk_rows, columns=wanted):
            yield (_in_window(batch, self.window) if log else batch).column(0)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The rows, in chunks of at most `chunk_rows` (the window applied to log files)."""
        for path in self.files:
            yield from reading(path, self._file_chunks(path))

    def parts(self) -> list[SourcePart]:
        """The rows cut into independent parts, in order, for a cluster's tasks: each CSV
        file whole; Parquet files by runs of row groups of about `chunk_rows` rows."""
        import pyarrow.parquet as pq

        parts: list[SourcePart] = []
        for path in self.files:
            if _format(path) == "csv":
                parts.append(SourcePart(path))
                continue
            try:
                meta = pq.ParquetFile(path).metadata
            except Exception as err:  # pyarrow raises several unrelated types for bad files
                raise DataError(f"{path}: not a readable Parquet file ({first_line(err)})") from err
            run: list[int] = []
            rows = 0
            for k in range(meta.num_row_groups):
                run.append(k)
                rows += meta.row_group(k).num_rows
                if rows >= self.chunk_rows:
                    parts.append(SourcePart(path, tuple(run)))
                    run, rows = [], 0
            if run or not parts or parts[-1].path != path:
                parts.append(SourcePart(path, tuple(run)))
        return parts

    def part_chunks(self, part: SourcePart) -> Iterator[pd.DataFrame]:
        """The rows of one part, in chunks of at most `chunk_rows`, as `chunks` reads them."""
        return reading(part.path, self._file_chunks(part.path, part.row_groups))

    def _file_chunks(
        self, path: Path, row_groups: tuple[int, ...] | None = None
    ) -> Iterator[pd.DataFrame]:
        if _format(path) == "csv":
            from gitml.data.io import iter_csv_text

            for batch in rechunk(iter_csv_text(path, self.columns), self.chunk_rows):
                yield _typed_meta(batch.to_pandas())
            return
        import pyarrow.parquet as pq

        file = pq.ParquetFile(path)
        present = [c for c in self.columns if c in file.schema_arrow.names]
        groups = None if row_groups is None else list(row_groups)
        batches = file.iter_batches(batch_size=self.chunk_rows, row_groups=groups, columns=present)
        for batch in batches:
            batch = _in_window(batch, self.window) if self.kind == "log" else batch
            if batch.num_rows:
                yield _typed_meta(batch.to_pandas())


def parse_time(text: str, option: str) -> datetime:
    """An ISO date or time given on the command line, as UTC (a naive time is UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise DataError(
            f"{option} {text!r}: not an ISO date or time",
            hint="e.g. 2026-11-30 or 2026-11-30T12:00:00Z (UTC)",
        ) from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def open_current(
    path: Path,
    *,
    root: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    model_name: str,
    window: Window,
) -> CurrentData:
    """Check `path` (pulling it from DVC when it is tracked but absent) and say how to read it.

    A directory is a prediction log: its `predictions-*.parquet` files, filtered to `window`
    on `timestamp`; every file must have been written for `model_name`. A file is a batch
    (CSV or Parquet). Raises DataError naming the path and what was found.
    """
    path = _materialise(path, root)
    if path.is_dir():
        return _open_log(path, inputs, outputs, model_name, window)
    if window.since is not None or window.until is not None:
        raise DataError(
            f"{path}: --since/--until select prediction-log rows by time; a batch file is "
            "monitored whole",
            hint="pass the prediction-log directory, or drop --since/--until",
        )
    names = _file_columns(path)
    wanted = [c for c in [*inputs, *outputs, *META] if c in names]
    if not any(c in names for c in inputs):
        raise DataError(
            f"{path}: none of the model's input columns found (columns: {names[:12]})",
            hint=f"the model reads {list(inputs)}",
        )
    return CurrentData(path, "file", [path], wanted, window)


def _materialise(path: Path, root: Path) -> Path:
    """`path` itself, or after `dvc pull` when DVC tracks it and it is missing."""
    if path.exists():
        return path
    from gitml.vcs import pull_data

    absolute = path if path.is_absolute() else Path.cwd() / path
    try:
        relative = absolute.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise DataError(f"{path}: not found") from None
    if not _tracked(root, relative):
        raise DataError(f"{path}: not found (and DVC does not track it)")
    try:
        pull_data(root, relative)
    except VcsError as err:
        raise DataError(
            f"{path}: tracked by DVC but not in the workspace, and `dvc pull` failed: "
            f"{err.message}",
            hint=f"run `dvc pull {relative}` (check `dvc remote list` and credentials)",
        ) from err
    if not path.exists():
        raise DataError(
            f"{path}: tracked by DVC but `dvc pull` did not bring it",
            hint=f"run `dvc pull {relative}` and check its output",
        )
    return path


def _tracked(root: Path, relative: str) -> bool:
    if (root / f"{relative}.dvc").is_file():
        return True
    from gitml.vcs import read_lock

    lock = root / "dvc.lock"
    if not lock.is_file():
        return False
    try:
        outs = read_lock(lock).outs()
    except DataError:
        return False
    return any(o.path == relative or relative.startswith(f"{o.path}/") for o in outs)


def _open_log(
    directory: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    model_name: str,
    window: Window,
) -> CurrentData:
    import pyarrow.parquet as pq

    files = sorted(directory.glob(LOG_PATTERN))
    if not files:
        hidden = sorted(p.name for p in directory.glob(".predictions-*"))
        found = f"only files still being written ({', '.join(hidden[:3])})" if hidden else "none"
        raise DataError(
            f"{directory}: no prediction-log files ({LOG_PATTERN}); found {found}",
            hint="point --current at serve.prediction_log.dir of a server that logged",
        )
    names: list[str] = []
    for file in files:
        try:
            meta = pq.ParquetFile(file)
            schema = meta.schema_arrow
            missing = [c for c in META if c not in schema.names]
            if missing:
                raise DataError(
                    f"{file}: not a prediction-log file: it lacks the columns {missing}"
                )
            served = _model_names(meta)
        except DataError:
            raise
        except Exception as err:  # pyarrow raises several unrelated types for bad files
            raise DataError(f"{file}: not a readable Parquet file ({first_line(err)})") from err
        other = sorted(served - {model_name})
        if other:
            raise DataError(
                f"{file}: written by model {other[0]!r}, but this project's model is "
                f"{model_name!r}",
                hint="monitor each model's log in its own project",
            )
        names += [n for n in schema.names if n not in names]
    wanted = [c for c in [*inputs, *outputs, *META] if c in names]
    return CurrentData(directory, "log", files, wanted, window)


def _model_names(file: object) -> set[str]:
    import pyarrow.compute as pc

    found: set[str] = set()
    for k in range(file.num_row_groups):  # type: ignore[attr-defined]
        column = file.read_row_group(k, columns=["model_name"]).column(0)  # type: ignore[attr-defined]
        found |= {str(v) for v in pc.unique(column).to_pylist() if v is not None}
    return found


def _file_columns(path: Path) -> list[str]:
    fmt = _format(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes)")
    try:
        if fmt == "csv":
            from gitml.data.io import read_csv_header

            return read_csv_header(path)
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path}: not a readable Parquet file ({first_line(err)})") from err


def _format(path: Path) -> str:
    from gitml.data.io import detect_format

    try:
        return detect_format(path)
    except DataError:
        raise DataError(
            f"{path}: not a CSV or Parquet file (by its name)",
            hint="name it .csv, .csv.gz or .parquet",
        ) from None


def _in_window(batch: pa.RecordBatch, window: Window) -> pa.RecordBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    if window.since is None and window.until is None:
        return batch
    stamps = batch.column(batch.schema.get_field_index("timestamp"))
    tests = []
    if window.since is not None:
        tests.append(pc.greater_equal(stamps, pa.scalar(window.since, stamps.type)))
    if window.until is not None:
        tests.append(pc.less(stamps, pa.scalar(window.until, stamps.type)))
    keep = tests[0] if len(tests) == 1 else pc.and_(*tests)
    return batch.filter(pc.fill_null(keep, False))


def _typed_meta(frame: pd.DataFrame) -> pd.DataFrame:
    """Meta and output columns in the frame's types (CSV text made numbers and times)."""
    import pandas as pd

    if "timestamp" in frame.columns:
        stamps = frame["timestamp"]
        if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
            stamps = pd.to_datetime(stamps, utc=True, errors="coerce")
        frame["timestamp"] = stamps.astype("datetime64[ns, UTC]")
    if "record" in frame.columns:
        frame["record"] = pd.to_numeric(frame["record"], errors="coerce").fillna(0).astype("int64")
    if "request_id" in frame.columns:
        frame["request_id"] = frame["request_id"].astype("string").astype(object)
    for column in frame.columns:
        if column in ("score", "value") or str(column).startswith("score:"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame
