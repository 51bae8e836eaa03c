"""The prediction log: every served prediction, appended in row groups to rotating Parquet files.

Rows wait in a buffer of at most `max_buffer_rows`; a writer thread turns `flush_rows` of
them (or whatever waited `flush_seconds`) into one row group. When the buffer is full,
`append` blocks until the writer catches up: memory stays bounded and nothing accepted is
dropped. A file is written as `*.parquet.part` and renamed to `*.parquet` when it is
complete (rotation or shutdown), so readers only ever see whole files. `close()` flushes
everything and is called on server shutdown.

Columns: request_id, record (index within the request), timestamp (UTC), model_name,
model_version, the model's inputs as received (categories as text), score, label.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gitml.errors import ConfigError, DataError
from gitml.serve.inputs import Columns, InputSchema

META_COLUMNS = ("request_id", "record", "timestamp", "model_name", "model_version")
OUTPUT_COLUMNS = ("score", "label")


@dataclass(frozen=True)
class LogEntry:
    """One scored request, as the log receives it."""

    request_id: str
    columns: Columns
    scores: np.ndarray
    labels: np.ndarray
    timestamp: float


class PredictionLog:
    """A bounded, batched, rotating Parquet writer for served predictions."""

    def __init__(
        self,
        directory: Path,
        schema: InputSchema,
        *,
        model_name: str,
        model_version: str,
        flush_rows: int = 1000,
        flush_seconds: float = 5.0,
        max_buffer_rows: int = 50_000,
        rotate_rows: int = 1_000_000,
        rotate_bytes: int = 128 * 1024 * 1024,
    ) -> None:
        clash = sorted(set(schema.names) & {*META_COLUMNS, *OUTPUT_COLUMNS})
        if clash:
            raise ConfigError(
                f"the prediction log cannot hold inputs named {clash}: the names are reserved "
                "for its own columns",
                hint="disable serve.prediction_log, or rename the columns in conf/data/",
            )
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"{self.directory}: cannot create the prediction log ({err})") from err
        self._schema = schema
        self._model = (model_name, model_version)
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_rows = max_buffer_rows
        self._rotate_rows = rotate_rows
        self._rotate_bytes = rotate_bytes
        self._arrow_schema = self._build_schema()
        self._buffer: list[LogEntry] = []
        self._buffered = 0
        self._oldest = 0.0
        self._cond = threading.Condition()
        self._closing = False
        self._writer: pq.ParquetWriter | None = None
        self._part: Path | None = None
        self._file_rows = 0
        self._sequence = 0
        self.rows_written = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="gitml-prediction-log", daemon=True)
        self._thread.start()

    # -- producers ---------------------------------------------------------------------

    def append(self, entry: LogEntry) -> None:
        """Queue one scored request; blocks while the buffer is full (back-pressure)."""
        rows = len(entry.scores)
        with self._cond:
            while self._buffered and self._buffered + rows > self._max_rows and not self._closing:
                self._cond.wait()
            if self._closing:
                raise DataError("the prediction log is closed")
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(entry)
            self._buffered += rows
            # the writer sleeps without a deadline while the buffer is empty: wake it to set one
            if self._buffered >= self._flush_rows or len(self._buffer) == 1:
                self._cond.notify_all()

    def close(self) -> None:
        """Write everything buffered, finish the open file and stop the writer thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise DataError(f"the prediction log failed: {self.error}") from self.error

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closing and not self._due():
                        timeout = None
                        if self._buffer:
                            due = self._oldest + self._flush_seconds
                            timeout = max(0.0, due - time.monotonic())
                        self._cond.wait(timeout=timeout)
                    entries, self._buffer, self._buffered = self._buffer, [], 0
                    closing = self._closing
                    self._cond.notify_all()  # producers waiting for room
                if entries:
                    self._write(entries)
                if closing:
                    break
        except Exception as err:  # kept for close() to raise; the server keeps answering
            self.error = err
            with self._cond:
                self._buffer, self._buffered = [], 0
                self._cond.notify_all()
        finally:
            self._finish_file()

    def _due(self) -> bool:
        if self._buffered >= self._flush_rows:
            return True
        return bool(self._buffer) and time.monotonic() - self._oldest >= self._flush_seconds

    def _write(self, entries: list[LogEntry]) -> None:
        table = self._table(entries)
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open_file()
            room = self._rotate_rows - self._file_rows
            part = table.slice(offset, room)
            assert self._writer is not None and self._part is not None
            self._writer.write_table(part)
            self._file_rows += part.num_rows
            self.rows_written += part.num_rows
            offset += part.num_rows
            full = self._file_rows >= self._rotate_rows
            if full or self._part.stat().st_size >= self._rotate_bytes:
                self._finish_file()

    def _open_file(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._sequence += 1
        name = f"predictions-{stamp}-{os.getpid()}-{self._sequence:05d}.parquet"
        self._part = self.directory / f"{name}.part"
        self._writer = pq.ParquetWriter(self._part, self._arrow_schema)
        self._file_rows = 0

    def _finish_file(self) -> None:
        if self._writer is None or self._part is None:
            return
        self._writer.close()
        os.replace(self._part, self._part.with_suffix(""))
        self._writer, self._part = None, None

    def _build_schema(self) -> pa.Schema:
        fields = [
            pa.field("request_id", pa.string()),
            pa.field("record", pa.int32()),
            pa.field("timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
        ]
        for rule in self._schema.fields:
            kind = {"int": pa.float64(), "float": pa.float64(), "category": pa.string()}
            fields.append(pa.field(rule.name, kind[rule.type]))
        fields += [pa.field("score", pa.float64()), pa.field("label", pa.string())]
        return pa.schema(fields)

    def _table(self, entries: list[LogEntry]) -> pa.Table:
        sizes = [len(e.scores) for e in entries]
        n = sum(sizes)
        data: dict[str, Any] = {
            "request_id": pa.array(np.repeat([e.request_id for e in entries], sizes)),
            "record": pa.array(np.concatenate([np.arange(k, dtype=np.int32) for k in sizes])),
            "timestamp": pa.array(
                np.repeat(np.array([e.timestamp for e in entries]) * 1e6, sizes).astype("int64"),
                pa.timestamp("us", tz="UTC"),
            ),
            "model_name": pa.array([self._model[0]] * n),
            "model_version": pa.array([self._model[1]] * n),
        }
        for rule in self._schema.fields:
            if rule.numeric:
                values = np.concatenate([e.columns.values[rule.name] for e in entries])
                data[rule.name] = pa.array(values, from_pandas=True)  # NaN (null) -> null
            else:
                data[rule.name] = pa.array(
                    [v for e in entries for v in e.columns.raw[rule.name]], pa.string()
                )
        data["score"] = pa.array(np.concatenate([e.scores for e in entries]))
        data["label"] = pa.array(np.concatenate([e.labels for e in entries]).astype(str))
        return pa.table(data, schema=self._arrow_schema)
