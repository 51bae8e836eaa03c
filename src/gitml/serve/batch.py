"""Batch scoring: CSV or Parquet in, CSV or Parquet out, streamed in chunks with pyarrow.

Each chunk is checked with the API's rules (`InputSchema.check_table`), scored with the
served pipeline and appended to the output, so memory follows the chunk size, not the file.
The output is written to a temporary file and renamed when every chunk is done: a failed
run leaves no output behind.

Output columns: `row` (the input's data row number, counting from 1), `_row` when the input
has it (gitml's source row number), any `keep` columns, then the model's outputs by task
(`gitml.serve.outputs`): `score`, `label` (binary); `label` and `score:<class>` per class
(multiclass); `value` (regression); with an explainer (`gitml predict --explain`), the
explanation columns of `gitml.serve.explanations` last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from gitml.data.chunks import reading, rechunk
from gitml.data.io import ROW_COLUMN, check_delimiter, detect_format, iter_csv_text, read_csv_header
from gitml.errors import DataError, InputError, os_reason
from gitml.files import atomic_path
from gitml.serve.inputs import Columns, InputSchema, Policy, Violation
from gitml.serve.outputs import Served, empty_outputs, output_columns, output_fields

if TYPE_CHECKING:
    import pandas as pd

    from gitml.serve.explanations import BatchExplainer

Progress = Callable[[int, int | None], None]
REJECTED_SUFFIX = ".rejected.csv"


class BatchModel(Served, Protocol):
    """What score_file reads of a model: a `gitml.serve.bundle.ServedModel`, or the stored
    fast path of one (`gitml.serve.fastpath_store.StoredModel`)."""

    @property
    def schema(self) -> InputSchema: ...
    @property
    def features(self) -> list[str]: ...
    @property
    def fast_scorer(self) -> Callable[[Columns], np.ndarray] | None: ...
    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


@dataclass
class BatchSummary:
    """What a batch run did."""

    rows: int = 0
    scored: int = 0
    rejected: int = 0
    output: Path | None = None
    rejected_path: Path | None = None
    unknown_categories: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def rejected_path_for(output: Path) -> Path:
    """Where `--on-error skip` writes the rows it left out: `OUTPUT.rejected.csv`."""
    return output.with_name(output.name + REJECTED_SUFFIX)


def score_file(
    served: BatchModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    threshold: float,
    chunk_size: int = 100_000,
    on_error: Literal["fail", "skip"] = "fail",
    unknown_category: Policy = "reject",
    keep: Sequence[str] = (),
    progress: Progress | None = None,
    explain: BatchExplainer | None = None,
) -> BatchSummary:
    """Score every row of `input_path` into `output_path` (formats from the file names).

    `threshold` makes a binary model's labels; the other tasks do not use it.

    `on_error="fail"` raises InputError at the first bad row (by row number, column, rule
    and value) and writes nothing; `"skip"` scores the good rows and writes each problem of
    the bad ones to `OUTPUT.rejected.csv` (row, column, rule, value, reason).

    Checked chunks are scored by the model's fast path (`served.fast_scorer`, verified
    against the pipeline to 1e-12 with the same refusals) when it has one, else by the
    pipeline; the next chunk is read in a thread meanwhile (Arrow releases the GIL).
    `explain` adds each scored row's explanation columns; a row it cannot explain finitely
    is refused like a row the model cannot score.
    """
    started = time.perf_counter()
    source, target = Path(input_path), Path(output_path)
    if chunk_size < 1:
        raise DataError(f"chunk size must be at least 1 (got {chunk_size})")
    if source.resolve() == target.resolve():
        raise DataError(f"{target}: the output would overwrite the input")
    # a device or a pipe (/dev/stdout) is written in place: nothing can be renamed onto it
    in_place = target.exists() and not target.is_file()
    out_format = _output_format(target, in_place)
    if in_place and on_error == "skip":
        raise DataError(
            f"{target}: not a regular file, so there is no place beside it for rejected rows",
            hint="write to a .csv or .parquet file, or use --on-error fail",
        )
    schema = served.schema
    names, chunks, total = _open_input(source, served, keep, chunk_size)
    fast = served.fast_scorer
    carried = ([ROW_COLUMN] if ROW_COLUMN in names else []) + [k for k in keep if k != ROW_COLUMN]
    summary = BatchSummary(output=target)
    rejects: list[pa.Table] = []
    rejected = rejected_path_for(target)
    with _write_errors(target, rejected) as writing, ExitStack() as stack:
        # a temporary file, renamed when complete: a failure leaves no partial file, and the
        # previous output (if any) as it was
        tmp = target if in_place else stack.enter_context(atomic_path(target))
        writer = None
        out_schema: pa.Schema | None = None
        for table in _read_ahead(chunks):
            offset = summary.rows
            columns, violations = schema.check_table(table, unknown_category=unknown_category)
            good = np.ones(table.num_rows, dtype=bool)
            if violations:
                if on_error == "fail":
                    raise _first_problem(source, table, violations, offset)
                for v in violations:
                    good[v.rows] = False
                rejects.append(_reject_table(table, violations, offset))
            for name, count in columns.unknown.items():
                summary.unknown_categories[name] = summary.unknown_categories.get(name, 0) + count
            scored = _score_good(served, columns, good, fast, explain)
            if isinstance(scored, InputError):  # preprocessing refused some rows
                refused = _refused_by_model(scored, good)
                if on_error == "fail":
                    raise _first_problem(source, table, refused, offset)
                for v in refused:
                    good[v.rows] = False
                rejects.append(_reject_table(table, refused, offset))
                scored = _score_good(served, columns, good, fast, explain)
                if isinstance(scored, InputError):
                    raise scored
            scores, explained = scored
            kept = int(good.sum())
            rows = np.flatnonzero(good) + offset + 1
            out = {"row": _arrow(rows.astype(np.int64), pa.int64())}
            for name in carried:
                out[name] = table[name].filter(_arrow(good)) if kept < len(good) else table[name]
            predicted = output_columns(served, scores, threshold)
            for name, kind in output_fields(served):
                out[name] = _arrow(predicted[name], kind)
            for name, values in explained.items():
                out[name] = _arrow(values, pa.float64())
            result = pa.table(out)
            if writer is None:
                out_schema = result.schema
                file_writer = stack.enter_context(_writer(tmp, out_schema, out_format))
                writer = stack.enter_context(_WriteBehind(file_writer))
            writer.write_table(result if result.schema == out_schema else result.cast(out_schema))
            summary.rows += table.num_rows
            summary.scored += kept
            summary.rejected += table.num_rows - kept
            if progress is not None:
                progress(summary.rows, total)
        if writer is None:  # no rows at all: still a valid, empty output
            empty = pa.schema(
                [("row", pa.int64())]
                + [(c, pa.string()) for c in carried]
                + output_fields(served)
                + [(name, pa.float64()) for name in (explain.fields if explain else [])]
            )
            writer = stack.enter_context(_writer(tmp, empty, out_format))
        writer.close()  # every chunk and the last bytes (Parquet's footer), before any rename
        if summary.rejected:
            # renamed just before the output; if the output then fails, it is removed again
            writing.file = rejected
            _write_rejects(stack.enter_context(atomic_path(rejected)), rejects)
            writing.file, writing.rejects_replaced = target, True
            summary.rejected_path = rejected
    if not summary.rejected and not in_place:
        rejected.unlink(missing_ok=True)  # a stale one from an earlier run
    summary.seconds = time.perf_counter() - started
    return summary


def _open_input(
    path: Path, served: BatchModel, keep: Sequence[str], chunk_size: int
) -> tuple[list[str], Iterator[pa.Table], int | None]:
    """Column names, an iterator of chunks of `chunk_size` rows, and the row count if known."""
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    fmt = detect_format(path)
    schema = served.schema
    categorical = {r.name for r in schema.fields if r.type == "category"}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
            names = file.schema_arrow.names
            wanted = _wanted(path, names, served, keep)
            as_dict = [
                c
                for c in wanted
                if c in categorical and pa.types.is_string(file.schema_arrow.field(c).type)
            ]
            file = pq.ParquetFile(path, read_dictionary=as_dict or None)
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        batches = (
            pa.Table.from_batches([b])
            for b in file.iter_batches(batch_size=chunk_size, columns=wanted)
        )
        return names, reading(path, batches), file.metadata.num_rows
    check_delimiter(path, served.features)
    names = read_csv_header(path)
    wanted = _wanted(path, names, served, keep)
    return names, reading(path, rechunk(iter_csv_text(path, wanted), chunk_size)), None


def _wanted(path: Path, names: list[str], served: BatchModel, keep: Sequence[str]) -> list[str]:
    required = [r.name for r in served.schema.fields if not r.nullable]
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(
            f"{path}: lacks the model's required input columns {missing}",
            hint=f"the model reads {served.features}",
        )
    absent = [k for k in keep if k not in names]
    if absent:
        raise DataError(f"{path}: has no column {absent[0]!r} to keep (columns: {names})")
    extra = dict.fromkeys([*([ROW_COLUMN] if ROW_COLUMN in names else []), *keep])  # --keep _row
    features = [c for c in served.features if c in names]
    return features + [c for c in extra if c not in served.features]


def _score_good(
    served: BatchModel,
    columns: Columns,
    good: np.ndarray,
    fast: Callable[[Columns], np.ndarray] | None,
    explain: BatchExplainer | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]] | InputError:
    """Scores of the `good` rows and their explanation columns ({} without `explain`), or
    the InputError of the rows preprocessing (or explaining) refuses."""
    kept = int(good.sum())
    if not kept:
        empty = {name: np.empty(0) for name in explain.fields} if explain else {}
        return empty_outputs(served), empty
    part = columns if kept == len(good) else _take(columns, good)
    try:
        if fast is not None:
            scores = fast(part)
        else:
            frame = served.schema.to_frame(columns, keep=None if kept == len(good) else good)
            scores = served.predict(frame)
        return scores, explain.columns(part) if explain is not None else {}
    except InputError as err:
        return err


def _take(columns: Columns, keep: np.ndarray) -> Columns:
    return Columns(
        n=int(keep.sum()),
        values={k: v[keep] for k, v in columns.values.items()},
        codes={k: v[keep] for k, v in columns.codes.items()},
    )


_AHEAD = object()  # the reader's end-of-input mark


def _read_ahead(chunks: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`chunks`, the next one read in a thread while the caller works on this one.

    One chunk ahead at most, so memory stays at about two chunks; an error while reading is
    raised in the caller's thread, at the chunk it would have been.
    """
    import queue
    import threading

    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for table in chunks:
                while not stop.is_set():
                    try:
                        ready.put(table, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_AHEAD)
        except BaseException as err:  # handed to the caller, raised there
            ready.put(err)

    reader = threading.Thread(target=read, name="gitml-batch-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _AHEAD:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting to hand over a chunk
            try:
                ready.get_nowait()
            except queue.Empty:
                reader.join(0.05)


def _arrow(values: np.ndarray, kind: pa.DataType | None = None) -> pa.Array:
    """A numpy column as Arrow, from its buffers: booleans (a mask), numbers, or text (labels:
    a few distinct values, encoded once). Not `pa.array`, which imports pandas on first use
    (a third of the start-up once scikit-learn is not needed) and converts text row by row."""
    values = np.ascontiguousarray(values)
    if values.dtype == bool:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    if kind is not None and pa.types.is_string(kind):
        names, codes = np.unique(values, return_inverse=True)
        encoded = [str(name).encode() for name in names]
        offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int32)
        text = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        dictionary = pa.Array.from_buffers(pa.string(), len(encoded), text)
        positions = np.ascontiguousarray(codes.reshape(-1), dtype=np.int32)
        indices = pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(positions)])
        return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()
    assert kind is not None
    values = values.astype(kind.to_pandas_dtype(), copy=False)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def _refused_by_model(err: InputError, good: np.ndarray) -> list[Violation]:
    """The rows (chunk positions) and fields of a scoring InputError, as violations."""
    positions = np.flatnonzero(good)  # the error counts records among the good rows
    by_rule: dict[tuple[str, str, str], list[int]] = {}
    for problem in err.problems:
        key = (str(problem["field"]), str(problem["rule"]), str(problem["reason"]))
        by_rule.setdefault(key, []).append(int(positions[int(problem["record"])]))
    return [
        Violation(field, rule, reason, np.asarray(sorted(set(rows)), dtype=np.int64))
        for (field, rule, reason), rows in by_rule.items()
    ]


class _WriteBehind:
    """A writer's `write_table` on a thread: encoding and compressing a chunk (which release
    the GIL) overlap the checking and scoring of the next one. At most one chunk waits; a
    failed write is raised in the caller's thread, at the next write or at `close`."""

    def __init__(self, writer: Any) -> None:
        import queue
        import threading

        self._writer = writer
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gitml-batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:  # after a failure, drain without writing
                try:
                    self._writer.write_table(table)
                except BaseException as err:
                    self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def write_table(self, table: pa.Table) -> None:
        self._raise()
        self._queue.put(table)

    def close(self) -> None:
        """Wait for every chunk, raise a failed write, then close the file."""
        self._stop()
        self._raise()
        self._writer.close()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()  # on an error elsewhere: the thread ends before the file is closed


def _writer(path: Path, schema: pa.Schema, fmt: str) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(path, schema)


def _first_problem(
    path: Path, table: pa.Table, violations: list[Violation], offset: int
) -> InputError:
    first = min(violations, key=lambda v: int(v.rows[0]))
    row = int(first.rows[0])
    value = _values(table, first.field, np.array([row]))[0]
    bad_rows = len(set().union(*(v.rows.tolist() for v in violations)))
    return InputError(
        f"{path}: row {offset + row + 1}: column {first.field!r}: [{first.rule}] "
        f"{first.reason} (got {value!r}); {bad_rows} bad row(s) in this chunk",
        hint="fix the input, or run with --on-error skip to score the good rows and write "
        "the bad ones to a side file",
        problems=[
            {"row": offset + row + 1, "field": first.field, "rule": first.rule, "value": value}
        ],
    )


def _values(table: pa.Table, name: str, rows: np.ndarray) -> list[str | None]:
    if name not in table.column_names:
        return [None] * len(rows)
    column = table[name].take(pa.array(rows))
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string()).to_pylist()


def _reject_table(table: pa.Table, violations: list[Violation], offset: int) -> pa.Table:
    parts = []
    for v in violations:
        parts.append(
            pa.table(
                {
                    "row": pa.array(v.rows.astype(np.int64) + offset + 1),
                    "column": pa.array([v.field] * len(v.rows), pa.string()),
                    "rule": pa.array([v.rule] * len(v.rows), pa.string()),
                    "value": pa.array(_values(table, v.field, v.rows), pa.string()),
                    "reason": pa.array([v.reason] * len(v.rows), pa.string()),
                }
            )
        )
    return pa.concat_tables(parts).sort_by([("row", "ascending")])


def _write_rejects(path: Path, tables: list[pa.Table]) -> None:
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.concat_tables(tables).sort_by([("row", "ascending")]), path)


def _output_format(target: Path, in_place: bool) -> str:
    """'csv' or 'parquet', from the output's name; a device or pipe without one gets CSV."""
    try:
        return detect_format(target)
    except DataError:
        if in_place:
            return "csv"
        raise DataError(
            f"{target}: cannot tell the output format from the file name",
            hint="name the output *.csv or *.parquet",
        ) from None


@dataclass
class _Writing:
    """What score_file is writing: the file a failed write is about."""

    file: Path
    rejects_replaced: bool = False  # the rejects file is renamed when the block exits


@contextmanager
def _write_errors(output: Path, rejected: Path) -> Iterator[_Writing]:
    """Turn a failed write (disk full, permission denied, a file size limit) into DataError
    naming the file being written."""
    writing = _Writing(output)
    try:
        yield writing
    except OSError as err:
        if writing.rejects_replaced:  # renamed for an output that then failed
            rejected.unlink(missing_ok=True)
        what = "rejected rows" if writing.file == rejected else "predictions"
        raise DataError(f"cannot write {what} to {writing.file}: {os_reason(err)}") from err
