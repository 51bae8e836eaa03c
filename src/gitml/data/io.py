"""Read data sources and write outputs atomically (temporary file, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from gitml.errors import DataError

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


def write_table(target: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write a DataFrame to Parquet atomically, keeping its index (the source row numbers)."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=True, engine="pyarrow")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a Parquet file written by `write_table`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found", hint="run the upstream stage (dvc repro)")
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except Exception as err:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from err


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


def read_source(path: str | os.PathLike[str], *, fmt: str = "auto") -> pd.DataFrame:
    """Read a source data file (CSV, optionally gzip/bz2/xz/zstd-compressed, or Parquet).

    CSV is parsed strictly with pyarrow: a row with too few or too many fields, a binary or
    truncated file, or an empty file is refused with the file and line, instead of being
    padded with missing values as a lenient reader would.
    """
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
    kind = detect_format(path, fmt)
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
    else:
        frame = _read_csv(path)
    if frame.columns.empty:
        raise DataError(f"{path}: no columns found (is the header line missing?)")
    frame.index = pd.RangeIndex(len(frame), name="row")
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            table = pacsv.read_csv(
                stream,
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
            )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        detail = str(err).strip().splitlines()[0]
        if "Empty CSV file" in detail:
            raise DataError(f"{path}: the file has no header line and no rows") from err
        raise DataError(
            f"{path}: not a well-formed CSV file: {detail}",
            hint="a truncated download or a garbled file; restore the original file",
        ) from err
    return table.to_pandas()
