"""Read data sources and gitml's Parquet tables; write tables atomically (`gitml.files`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gitml.errors import DataError, first_line
from gitml.files import atomic_path

if TYPE_CHECKING:  # pandas and pyarrow load only where a stage needs them
    import pandas as pd
    import pyarrow as pa

ROW_COLUMN = "_row"  # reserved: the source row number of every row, kept through all stages
# pyarrow's default row group (rows): the streaming writer cuts its groups at the same rows
GROUP_ROWS = 1024 * 1024


def write_arrow(target: str | os.PathLike[str], table: pa.Table) -> None:
    """Write an Arrow table to Parquet atomically."""
    with write_arrow_stream(target, table.schema) as append:
        append(table)


@contextlib.contextmanager
def write_arrow_stream(
    target: str | os.PathLike[str], schema: pa.Schema, *, group_rows: int = GROUP_ROWS
) -> Iterator[Callable[[pa.Table], None]]:
    """Yield `append(table)`: the appended rows become `target`, atomically, when the block ends.

    Rows are regrouped into row groups of exactly `group_rows` (the last one shorter), each
    one contiguous array per column, so the file is the same bytes however the rows were cut
    into pieces: streaming a table in batches writes what writing it whole writes. Memory
    holds one row group, not the table.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pending: list[pa.Table] = []
    rows = written = 0

    def flush(writer: pq.ParquetWriter, size: int) -> None:
        nonlocal pending, rows, written
        table = pa.concat_tables(pending)
        writer.write_table(table.slice(0, size).combine_chunks(), row_group_size=size)
        rest = table.slice(size)
        pending, rows = ([rest] if rest.num_rows else []), rows - size
        written += size

    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:

        def append(table: pa.Table) -> None:
            nonlocal rows
            if table.num_rows:
                pending.append(table)
                rows += table.num_rows
            while rows >= group_rows:
                flush(writer, group_rows)

        yield append
        if rows:
            flush(writer, rows)
        elif not written:  # as pyarrow writes an empty table
            writer.write_table(schema.empty_table())


def read_arrow(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet file written by gitml as an Arrow table (only `columns`, if given)."""
    import pyarrow.parquet as pq

    path = _existing(path)
    try:
        return pq.read_table(path, columns=None if columns is None else list(columns))
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def read_arrow_schema(path: str | os.PathLike[str]) -> pa.Schema:
    """The Arrow schema of a Parquet file written by gitml, read from its footer alone."""
    import pyarrow.parquet as pq

    path = _existing(path)
    try:
        return pq.read_schema(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def iter_arrow(path: str | os.PathLike[str]) -> Iterator[pa.Table]:
    """The row groups of a Parquet file written by gitml, in order, one table each: a whole
    table's worth of rows without holding more than one group."""
    import pyarrow.parquet as pq

    path = _existing(path)
    try:
        file = pq.ParquetFile(path)
        for group in range(file.num_row_groups):
            yield file.read_row_group(group)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="run the upstream stage (dvc repro)")
    return path


def read_table(
    path: str | os.PathLike[str], *, categories: list[str] | None = None
) -> pd.DataFrame:
    """Read a Parquet file written by gitml, indexed by source row number.

    String columns named in `categories` arrive as pandas Categoricals, decoded straight from
    Parquet's dictionary pages: far less time and memory than one Python string per cell.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _existing(path)
    try:
        schema = pq.read_schema(path)
        as_dict = [
            c
            for c in categories or []
            if c in schema.names and pa.types.is_string(schema.field(c).type)
        ]
        table = pq.read_table(path, read_dictionary=as_dict or None)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    rows = None
    if ROW_COLUMN in table.column_names:  # the index, set without a copy of the frame
        rows = table[ROW_COLUMN].to_numpy()
        table = table.drop_columns([ROW_COLUMN])
    # one array per column (no consolidation into 2-D blocks), each Arrow buffer released
    # as it is converted: the table and the frame are never both whole in memory
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    if rows is not None:
        frame.index = pd.Index(rows, name=ROW_COLUMN)
    return frame


def detect_format(path: Path, declared: str = "auto") -> str:
    """Return 'csv' or 'parquet' for `path`, from `declared` or the file name."""
    if declared != "auto":
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".tsv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise DataError(
        f"{path}: cannot tell the format from the file name",
        hint="set data.format to 'csv' or 'parquet' in conf/data/",
    )


def read_source(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    expected: Sequence[str] = (),
    text_columns: Sequence[str] = (),
) -> pa.Table:
    """Read a source data file (CSV, optionally gzip/bz2/xz/zstd-compressed, or Parquet).

    CSV is parsed strictly with pyarrow (multi-threaded): a row with too few or too many
    fields, a binary or truncated file, or an empty file is refused with the file and line,
    instead of being padded with missing values as a lenient reader would. Only empty cells
    are missing values (`NA` or `null` are text, as they are to `gitml predict` and the API).
    A CSV whose header splits into the `expected` columns on another delimiter is refused
    with one error that names the delimiter. CSV columns in `text_columns` (categories) are
    read as text, as `gitml predict` reads them: "01" stays "01", not the number 1.
    """
    import pyarrow.parquet as pq

    path = _source_file(path)
    if detect_format(path, fmt) == "parquet":
        try:
            table = pq.read_table(path)
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        table = table.drop_columns(
            [c for c in table.column_names if c.startswith("__index_level_")]
        )
    else:
        check_delimiter(path, expected)
        table = _read_csv(path, text_columns)
    _check_source_columns(path, table.column_names)
    return table


def iter_source(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    expected: Sequence[str] = (),
    block_size: int = 16 << 20,
) -> Iterator[pa.Table]:
    """Stream a source data file as `read_source` reads it, a block at a time: memory holds
    one block, not the table.

    Parquet arrives one row group at a time, with its own types. Every CSV column arrives
    as text (only empty cells are missing; with no type guessed from a first block that a
    later block could contradict): the one coercion (`gitml.data.coercion`) then decides
    what is a number, as `apply_declared_types` does.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = _source_file(path)
    if detect_format(path, fmt) == "parquet":
        try:
            file = pq.ParquetFile(path)
            names = file.schema_arrow.names
            index = [c for c in names if c.startswith("__index_level_")]
            names = [c for c in names if c not in index]
            _check_source_columns(path, names)
            for group in range(file.num_row_groups):
                yield file.read_row_group(group, columns=names)
            if not file.num_row_groups:  # no rows: the columns, for `validate` to report
                yield file.schema_arrow.empty_table().select(names)
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        return
    check_delimiter(path, expected)
    try:
        names = read_csv_header(path)
    except DataError as err:  # worded as `read_source` words a file it cannot parse
        raise _csv_error(path, err.__cause__ or err) from err
    _check_source_columns(path, names)
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in names}, strings_can_be_null=False
    )
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=block_size),
                parse_options=pacsv.ParseOptions(delimiter=csv_delimiter(path)),
                convert_options=convert,
            )
            empty = True
            for batch in reader:
                empty = False
                yield pa.Table.from_batches([batch])
            if empty:  # a header and no rows: the columns, for `validate` to report
                yield pa.schema([(c, pa.string()) for c in names]).empty_table()
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        raise _csv_error(path, err) from err


def _csv_error(path: Path, err: BaseException) -> DataError:
    detail = first_line(err)
    if "Empty CSV file" in detail:
        return DataError(f"{path}: the file has no header line and no rows")
    return DataError(
        f"{path}: not a well-formed CSV file: {detail}",
        hint="a truncated download or a garbled file; restore the original file",
    )


def _source_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: source data file not found",
            hint="check data.source in conf/data/ (a path relative to the project root)",
        )
    if path.stat().st_size == 0:
        raise DataError(
            f"{path}: the file is empty (0 bytes)", hint="point data.source at real data"
        )
    return path


def _check_source_columns(path: Path, names: Sequence[str]) -> None:
    if not names:
        raise DataError(f"{path}: no columns found (is the header line missing?)")
    if ROW_COLUMN in names:
        raise DataError(f"{path}: column name {ROW_COLUMN!r} is reserved by gitml; rename it")


def csv_delimiter(path: Path) -> str:
    """The delimiter gitml reads `path` with: tab for `.tsv` files, else a comma."""
    return "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","


_OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'", ",": "','"}


def check_delimiter(path: Path, expected: Sequence[str] | None) -> None:
    """Refuse a CSV whose header holds more of the `expected` column names when split on
    another delimiter (`;`, tab, `|`) than on its own (`csv_delimiter`): one clear error
    instead of one "column missing" per column. With `expected` None (no schema yet, as in
    schema inference): refuse a header that is one column on its own delimiter and several
    on another."""
    if expected is not None and not expected:
        return
    delimiter = csv_delimiter(path)
    import csv

    import pyarrow as pa

    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            first = stream.read(1 << 16).decode("utf-8", errors="replace")
    except (OSError, pa.ArrowException):
        return  # unreadable: the reader reports it
    header = first.splitlines()[0] if first else ""
    wanted = set(expected or ())

    def found(sep: str) -> list[str]:
        return [c.strip() for c in next(csv.reader([header], delimiter=sep), [])]

    current = found(delimiter)
    best = len(wanted & set(current))
    for other, name in _OTHER_DELIMITERS.items():
        if other == delimiter:
            continue
        names = found(other)
        if expected is None:  # only a header of readable text that splits into real names
            other_fits = (
                len(current) == 1
                and len(names) > 1
                and "\ufffd" not in header
                and all(n and n.isprintable() for n in names)
            )
        else:
            other_fits = len(names) > len(current) and len(wanted & set(names)) > max(
                best, len(wanted) // 2
            )
        if other_fits:
            if other == "\t":
                fix = "name the file *.tsv (read as tab-separated), or convert it to CSV"
            elif other == ",":
                fix = "name the file *.csv (read as comma-separated)"
            else:
                fix = f"convert it to comma-separated CSV (or Parquet): gitml does not read {name}"
            raise DataError(
                f"{path}: looks {name}-separated: its header has {len(names)} columns when "
                f"split on {name} ({', '.join(names[:4])}, ...) but {len(current)} when split "
                f"on {_OTHER_DELIMITERS[delimiter]}, the delimiter gitml reads it with",
                hint=fix,
            )


def read_csv_header(path: Path) -> list[str]:
    """A CSV file's column names (compressed or not), read from its first block."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=1 << 16),
                parse_options=pacsv.ParseOptions(delimiter=csv_delimiter(path)),
            )
            return reader.schema.names
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        detail = first_line(err)
        if "Empty CSV file" in detail:
            raise DataError(f"{path}: the file has no header line and no rows") from err
        raise DataError(f"{path}: not a readable CSV file: {detail}") from err


def iter_csv_text(
    path: Path, columns: Sequence[str], *, block_size: int = 4 << 20
) -> Iterator[pa.RecordBatch]:
    """Stream `columns` of a CSV file, every one as text, in blocks of about `block_size`.

    Text, so that the one coercion (not pyarrow's guess) decides what is a number: a cell
    that is not a number becomes a problem of its row, not a failure of the whole block.
    Only empty cells are missing values.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in columns},
        include_columns=list(columns),
        null_values=[""],
        strings_can_be_null=True,
    )
    with pa.input_stream(str(path), compression="detect") as stream:
        yield from pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=csv_delimiter(path)),
            convert_options=convert,
        )


def _read_csv(path: Path, text_columns: Sequence[str] = ()) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            return pacsv.read_csv(
                stream,
                parse_options=pacsv.ParseOptions(delimiter=csv_delimiter(path)),
                # only empty cells are missing (text cells: ""), as `gitml.data.coercion` says
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=False,
                    null_values=[""],
                    # no booleans from "0"/"1" or "True": a bool is not a number to gitml
                    true_values=[],
                    false_values=[],
                    column_types={c: pa.string() for c in text_columns},
                ),
            )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        raise _csv_error(path, err) from err
