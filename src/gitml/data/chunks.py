"""Tables read in chunks: record batches regrouped to a fixed size, read errors as DataError."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gitml.errors import DataError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")


def rechunk(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Tables of exactly `size` rows (the last one shorter) from record batches of any size."""
    import pyarrow as pa

    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending = rest.to_batches() if rest.num_rows else []
            rows -= size
    if rows:
        yield pa.Table.from_batches(pending)


def reading(path: Path, chunks: Iterator[T]) -> Iterator[T]:
    """The chunks of `path`, with pyarrow's read errors (a ragged CSV line, a corrupt page) as
    a DataError naming the file."""
    import pyarrow as pa

    try:
        yield from chunks
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot be read: {first_line(err)}") from err
