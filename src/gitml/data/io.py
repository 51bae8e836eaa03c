"""Read data sources and write outputs atomically (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import ConfigError, DataError

if TYPE_CHECKING:  # pandas and pyarrow load only where a stage needs them
    import pandas as pd
    import pyarrow as pa

_TMP_PREFIX = ".gitml-tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    A crash or SIGKILL leaves at most a `.gitml-tmp-*` file (git-ignored), never a
    half-written target; stale temporaries of the same target are removed on the next write.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{_TMP_PREFIX}{target.name}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get normal modes
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Yield staging paths for `targets`; replace all of them in one atomic step on success.

    For outputs that only make sense together (a model, its signature and its metadata):
    after a crash or SIGKILL at any instant, readers see either all the old files or all
    the new ones, never a mix. The targets must share one directory, which is replaced as a
    whole: its new version is staged (the block writes the targets, every other entry is
    hard-linked across, e.g. DVC's .gitignore) and swapped with the old one by a single
    rename. Staging happens in the project's `.dvc/tmp/` (or a git-ignored `.gitml-tmp-*`
    sibling when there is no DVC project), so a leftover is invisible to `git status` and
    `dvc status`; leftovers are removed on the next call.
    """
    paths = [Path(t) for t in targets]
    directory = _shared_directory(paths)
    root = _staging_root(directory)
    tag = hashlib.sha256(str(directory).encode()).hexdigest()[:8]
    prefix = f"{_TMP_PREFIX}{directory.name}-{tag}."
    for stale in root.glob(f"{prefix}*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        names = {p.name for p in paths}
        if directory.is_dir():
            os.chmod(staging, stat.S_IMODE(directory.stat().st_mode))
            _link_entries(directory, staging, skip=names)
        else:
            os.chmod(staging, 0o777 & ~_umask())
        yield [staging / p.name for p in paths]
        missing = sorted(n for n in names if not (staging / n).is_file())
        if missing:
            raise DataError(f"{directory}: {', '.join(missing)} not written; nothing replaced")
        for name in names:
            _fsync(staging / name)
        _fsync(staging)
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, directory)
        elif not _rename_exchange(staging, directory):
            # no atomic exchange on this platform or file system (renameat2 is Linux-only):
            # replace the files one by one, which a kill between two renames can split
            for name in sorted(names):
                os.replace(staging / name, directory / name)
        _fsync(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap: the old directory


def _shared_directory(paths: list[Path]) -> Path:
    parents = sorted({str(p.parent.resolve()) for p in paths})
    if len(parents) != 1 or len({p.name for p in paths}) != len(paths):
        raise ConfigError(
            "files replaced together must be distinct files in one directory; got "
            + ", ".join(map(str, paths)),
            hint="declare them in the same directory in dvc.yaml (e.g. models/)",
        )
    directory = Path(parents[0])
    here = Path.cwd().resolve()
    holds_project = (directory / ".git").exists() or (directory / ".dvc").exists()
    if holds_project or directory == here or directory in here.parents:
        raise ConfigError(
            f"{directory}: files replaced together need a directory of their own, but this "
            "one holds the project or the working directory",
            hint="write them to a subdirectory (e.g. models/) in dvc.yaml",
        )
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: expected a directory, found a file")
    return directory


def _staging_root(directory: Path) -> Path:
    """The DVC project's `.dvc/tmp/` when on the same file system as `directory`, else its
    parent: a rename cannot cross file systems."""
    parent = directory.parent
    while not parent.exists():
        parent = parent.parent
    for candidate in (parent, *parent.parents):
        if (candidate / ".dvc").is_dir():
            tmp = candidate / ".dvc" / "tmp"
            tmp.mkdir(exist_ok=True)
            if tmp.stat().st_dev == parent.stat().st_dev:
                return tmp
            break
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _link_entries(src: Path, dst: Path, *, skip: set[str]) -> None:
    """Hard-link (or copy, where links fail) every entry of `src` into `dst`, recursively."""
    for entry in src.iterdir():
        if entry.name in skip or entry.name.startswith(_TMP_PREFIX):
            continue
        target = dst / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            target.mkdir()
            shutil.copymode(entry, target)
            _link_entries(entry, target, skip=set())
        else:
            try:
                os.link(entry, target)
            except OSError:  # a file system without hard links
                shutil.copy2(entry, target)


_AT_FDCWD = -100  # Linux <fcntl.h>
_RENAME_EXCHANGE = 2  # Linux <linux/fs.h>


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system
        return False
    raise DataError(f"cannot replace {b} with {a}: {os.strerror(code)}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike[str], payload: bytes) -> None:
    """Write bytes to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to `target` atomically."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as indented JSON (stable key order as given) atomically."""
    write_text(target, json.dumps(data, indent=2, allow_nan=False) + "\n")


ROW_COLUMN = "_row"  # reserved: the source row number of every row, kept through all stages


def write_arrow(target: str | os.PathLike[str], table: pa.Table) -> None:
    """Write an Arrow table to Parquet atomically."""
    import pyarrow.parquet as pq

    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def read_arrow(path: str | os.PathLike[str]) -> pa.Table:
    """Read a Parquet file written by gitml as an Arrow table."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="run the upstream stage (dvc repro)")
    try:
        return pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


def read_table(
    path: str | os.PathLike[str], *, categories: list[str] | None = None
) -> pd.DataFrame:
    """Read a Parquet file written by gitml, indexed by source row number.

    String columns named in `categories` arrive as pandas Categoricals, decoded straight from
    Parquet's dictionary pages: far less time and memory than one Python string per cell.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="run the upstream stage (dvc repro)")
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
    frame = table.to_pandas()
    if ROW_COLUMN in frame.columns:
        frame = frame.set_index(ROW_COLUMN)
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
    if detect_format(path, fmt) == "parquet":
        try:
            table = pq.read_table(path)
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        table = table.drop_columns(
            [c for c in table.column_names if c.startswith("__index_level_")]
        )
    else:
        check_delimiter(path, csv_delimiter(path), expected)
        table = _read_csv(path, text_columns)
    if table.num_columns == 0:
        raise DataError(f"{path}: no columns found (is the header line missing?)")
    if ROW_COLUMN in table.column_names:
        raise DataError(f"{path}: column name {ROW_COLUMN!r} is reserved by gitml; rename it")
    return table


def csv_delimiter(path: Path) -> str:
    """The delimiter gitml reads `path` with: tab for `.tsv` files, else a comma."""
    return "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","


_OTHER_DELIMITERS = {";": "';'", "\t": "tab", "|": "'|'", ",": "','"}


def check_delimiter(path: Path, delimiter: str, expected: Sequence[str]) -> None:
    """Refuse a CSV whose header holds more of the `expected` column names when split on
    another delimiter (`;`, tab, `|`) than on `delimiter`: one clear error instead of one
    "column missing" per column."""
    if not expected:
        return
    import csv

    import pyarrow as pa

    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            first = stream.read(1 << 16).decode("utf-8", errors="replace")
    except (OSError, pa.ArrowException):
        return  # unreadable: the reader reports it
    header = first.splitlines()[0] if first else ""
    wanted = set(expected)

    def found(sep: str) -> list[str]:
        return [c.strip() for c in next(csv.reader([header], delimiter=sep), [])]

    current = found(delimiter)
    best = len(wanted & set(current))
    for other, name in _OTHER_DELIMITERS.items():
        if other == delimiter:
            continue
        names = found(other)
        if len(names) > len(current) and len(wanted & set(names)) > max(best, len(wanted) // 2):
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
        detail = str(err).strip().splitlines()[0]
        if "Empty CSV file" in detail:
            raise DataError(f"{path}: the file has no header line and no rows") from err
        raise DataError(
            f"{path}: not a well-formed CSV file: {detail}",
            hint="a truncated download or a garbled file; restore the original file",
        ) from err


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
