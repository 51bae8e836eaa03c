"""The prediction log: every served prediction, appended in row groups to rotating Parquet files.

Rows wait in a buffer of at most `max_buffer_rows`; a writer thread turns `flush_rows` of
them (or whatever waited `flush_seconds`) into one row group. `append` never blocks the
event loop: when the buffer is full, the rows are dropped and counted (the writer is stalled
or too slow, and scoring matters more than its log).

A file is written under a hidden temporary name (`.predictions-<pid>-<n>.parquet.part`) and
gets its final name (`predictions-<UTC time>-<pid>-<n>.parquet`) only once it is complete:
closed, fsynced, then renamed, at rotation or shutdown. Readers (and pyarrow datasets, which
skip dot-files) only ever see whole files. `n` counts the files of every log of the process,
so the versions one server holds, each with its own log, never take each other's names.

A write that fails (disk full, `RLIMIT_FSIZE`, permission denied, read-only file system) is
counted by kind and logged once per episode, not once per row; the file it was writing is
removed and its rows, with those of the failed batch, are counted as dropped. The writer then
retries with a back-off (0.5 s doubling to 10 s). The episode ends, with one more log line,
when a file is complete again or writes have succeeded for 10 s.
`failing()` says why the log is in trouble (a failed write, rows dropped, a write stalled for
`stall_seconds`), for the server's readiness policy. `close(timeout)` flushes what it can
within `timeout`; what it could not write is counted and logged, never renamed as complete.

Columns: request_id, record (index within the request), timestamp (UTC), model_name,
model_version, the model's inputs as received (categories as text), then what was answered
(`gitml.serve.outputs`): score, label (binary); label, score:<class> per class (multiclass);
value (regression).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gitml.errors import ConfigError, DataError, os_reason
from gitml.serve.inputs import Columns, InputSchema

META_COLUMNS = ("request_id", "record", "timestamp", "model_name", "model_version")
BINARY_OUTPUTS: tuple[tuple[str, pa.DataType], ...] = (
    ("score", pa.float64()),
    ("label", pa.string()),
)
DROP_REASONS = ("buffer_full", "write_error", "shutdown")
ERROR_KINDS = ("disk_full", "permission", "io")

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
# a failure episode ends with a complete file, or after this long of successful writes: a
# full disk often takes a few row groups of a new file before it fails again
_RECOVERY_SECONDS = 10.0
_KINDS = {
    errno.ENOSPC: "disk_full",
    errno.EFBIG: "disk_full",  # RLIMIT_FSIZE, or a file system's file size limit
    errno.EDQUOT: "disk_full",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "permission",
}

logger = logging.getLogger(__name__)

# one sequence for every log of the process: the versions one server holds log side by side
# in one directory, and a name (pid and number) must never be taken twice
_FILE_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class LogEntry:
    """One scored request, as the log receives it."""

    request_id: str
    columns: Columns
    outputs: Mapping[str, np.ndarray]  # what was answered, by log column (`outputs`)
    timestamp: float

    @property
    def rows(self) -> int:
        return self.columns.n


@dataclass(frozen=True)
class LogStats:
    """Counters of the prediction log, read by `/metrics`."""

    written_rows: int  # rows in complete (renamed) files
    dropped_rows: dict[str, int]  # by reason: DROP_REASONS
    errors: dict[str, int]  # failed writes, by kind: ERROR_KINDS
    buffered_rows: int
    failing: str | None


class PredictionLog:
    """A bounded, batched, rotating Parquet writer for served predictions."""

    def __init__(
        self,
        directory: Path,
        schema: InputSchema,
        *,
        model_name: str,
        model_version: str,
        outputs: Sequence[tuple[str, pa.DataType]] = BINARY_OUTPUTS,
        flush_rows: int = 1000,
        flush_seconds: float = 5.0,
        max_buffer_rows: int = 50_000,
        rotate_rows: int = 1_000_000,
        rotate_bytes: int = 128 * 1024 * 1024,
        stall_seconds: float = 30.0,
    ) -> None:
        self._outputs = [(name, kind) for name, kind in outputs]
        clash = sorted(set(schema.names) & {*META_COLUMNS, *(n for n, _ in self._outputs)})
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
        self._stall_seconds = stall_seconds
        self._arrow_schema = self._build_schema()
        # shared with the writer thread, under _cond; nobody holds it during I/O
        self._cond = threading.Condition()
        self._buffer: list[LogEntry] = []
        self._buffered = 0
        self._oldest = 0.0
        self._closing = False
        self._abandoned = False  # close() gave up waiting: nothing more gets a final name
        self._in_flight = 0  # rows the writer took and has not yet written or dropped
        self._busy_since: float | None = None
        self._retry_at = 0.0
        self._backoff = _BACKOFF_FIRST
        self._trouble: str | None = None  # why the log is failing; None: healthy
        self._write_failing = False  # in a failure episode (logged once, at its start)
        self._ok_since: float | None = None  # writes have succeeded since, in an episode
        self._files = 0  # complete files
        self._files_at_failure = 0
        self._episode_dropped = 0
        self._written = 0
        self._dropped: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        # the writer thread's own
        self._writer: pq.ParquetWriter | None = None
        self._part: Path | None = None
        self._final: Path | None = None
        self._file_rows = 0
        self._unwritten = 0  # rows of the batch being written that are in no file yet
        self.rows_written = 0  # rows written as row groups (complete files or the open one)
        self._thread = threading.Thread(target=self._run, name="gitml-prediction-log", daemon=True)
        self._thread.start()

    # -- producers ---------------------------------------------------------------------

    def append(self, entry: LogEntry) -> bool:
        """Queue one scored request; never blocks. False: dropped (buffer full, or closed)."""
        rows = entry.rows
        with self._cond:
            if self._closing:
                self._dropped["shutdown"] += rows
                return False
            if self._buffered and self._buffered + rows > self._max_rows:
                self._dropped["buffer_full"] += rows
                self._episode_dropped += rows
                if self._trouble is None:
                    self._trouble = (
                        f"buffer full ({self._max_rows} rows): the writer is stalled or too "
                        "slow, predictions are not being logged"
                    )
                    logger.error("prediction log: %s", self._trouble)
                return False
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(entry)
            self._buffered += rows
            # the writer sleeps without a deadline while the buffer is empty: wake it to set one
            if self._buffered >= self._flush_rows or len(self._buffer) == 1:
                self._cond.notify_all()
            return True

    def failing(self) -> str | None:
        """Why the log is not writing (a failed write, dropped rows, a stalled write); None: ok."""
        with self._cond:
            since = self._ok_since
            if since is not None and time.monotonic() - since >= _RECOVERY_SECONDS:
                return None  # written, and not failed since: over (logged with the next write)
            if self._trouble is not None:
                return self._trouble
            busy = self._busy_since
        if busy is not None and time.monotonic() - busy > self._stall_seconds:
            return f"a write has been stuck for {time.monotonic() - busy:.0f} s"
        return None

    def stats(self) -> LogStats:
        """A consistent snapshot of the counters."""
        failing = self.failing()
        with self._cond:
            return LogStats(
                written_rows=self._written,
                dropped_rows={r: self._dropped[r] for r in DROP_REASONS},
                errors={k: self._errors[k] for k in ERROR_KINDS},
                buffered_rows=self._buffered + self._in_flight,
                failing=failing,
            )

    def close(self, timeout: float | None = None) -> None:
        """Write what is buffered, finish the open file and stop the writer thread.

        Waits at most `timeout` seconds (None: for ever). If the writer is still busy then
        (stuck in a write), the rows it holds are counted as dropped and logged, and its
        temporary file never gets a final name. Never raises: the server is stopping anyway.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return
        self._abandoned = True
        with self._cond:
            lost = self._buffered + self._unwritten + self._file_rows
            self._dropped["shutdown"] += lost
            self._buffer, self._buffered, self._in_flight = [], 0, 0
        logger.error(
            "prediction log: the writer did not finish within %.1f s of shutdown (stuck in a "
            "write?); %d prediction(s) not logged%s",
            timeout,
            lost,
            f"; {self._part} is incomplete and keeps its temporary name" if self._part else "",
        )

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing:
                    now = time.monotonic()
                    if now < self._retry_at:  # backing off after a failed write
                        self._cond.wait(self._retry_at - now)
                    elif self._due(now):
                        break
                    else:
                        timeout = None
                        if self._buffer:
                            timeout = max(0.0, self._oldest + self._flush_seconds - now)
                        self._cond.wait(timeout)
                if self._abandoned:
                    return
                entries, self._buffer = self._buffer, []
                self._in_flight, self._buffered = self._buffered, 0
                closing = self._closing
                self._busy_since = time.monotonic()
                overflows = self._dropped["buffer_full"]
            self._attempt(entries, finish=closing, overflows=overflows)
            with self._cond:
                self._busy_since = None
                self._in_flight = 0
            if closing:
                return

    def _due(self, now: float) -> bool:
        if self._buffered >= self._flush_rows:
            return True
        return bool(self._buffer) and now - self._oldest >= self._flush_seconds

    def _attempt(self, entries: list[LogEntry], *, finish: bool, overflows: int) -> None:
        """Write `entries` (and finish the file when `finish`); count and log a failure.
        `overflows`: rows dropped for a full buffer when the writer took `entries`."""
        self._unwritten = sum(e.rows for e in entries)
        try:
            if entries:
                self._write(entries)
            if finish:
                self._finish_file()
        except Exception as err:  # OSError mostly; pyarrow's own errors too
            self._failed(err)
            return
        with self._cond:
            if self._abandoned:
                return
            if self._write_failing:
                now = time.monotonic()
                self._ok_since = now if self._ok_since is None else self._ok_since
                durable = self._files > self._files_at_failure
                if not durable and now - self._ok_since < _RECOVERY_SECONDS:
                    return  # the fault may come back with the file's next bytes: not over yet
            elif self._trouble is None and not self._episode_dropped:
                return
            elif self._dropped["buffer_full"] > overflows:
                return  # still overflowing while this was written: the writer is too slow
            trouble, dropped = self._trouble, self._episode_dropped
            self._trouble, self._episode_dropped, self._ok_since = None, 0, None
            self._write_failing, self._backoff = False, _BACKOFF_FIRST
        logger.warning(
            "prediction log: writing again; %d prediction(s) were dropped (%s)", dropped, trouble
        )

    def _failed(self, err: Exception) -> None:
        path = self._part or self.directory
        lost = self._unwritten + self._discard_file()
        kind = _KINDS.get(getattr(err, "errno", None) or 0, "io")
        reason = os_reason(err)
        with self._cond:
            self._errors[kind] += 1
            self._dropped["write_error"] += lost
            self._episode_dropped += lost
            first, self._write_failing = not self._write_failing, True
            self._ok_since, self._files_at_failure = None, self._files
            self._trouble = f"cannot write {path}: {reason}"
            self._retry_at = time.monotonic() + self._backoff
            backoff, self._backoff = self._backoff, min(2 * self._backoff, _BACKOFF_MAX)
        if first:
            logger.error(
                "prediction log: cannot write %s: %s; %d prediction(s) dropped; predictions go "
                "on unlogged, retrying in %.1f s (then every %.0f s at most)",
                path,
                reason,
                lost,
                backoff,
                _BACKOFF_MAX,
            )

    def _write(self, entries: list[LogEntry]) -> None:
        table = self._table(entries)
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                self._open_file()
            assert self._writer is not None and self._part is not None
            room = self._rotate_rows - self._file_rows
            part = table.slice(offset, room)
            self._writer.write_table(part)
            self._file_rows += part.num_rows
            self._unwritten -= part.num_rows  # now the open file's to lose
            self.rows_written += part.num_rows
            offset += part.num_rows
            full = self._file_rows >= self._rotate_rows
            if full or self._part.stat().st_size >= self._rotate_bytes:
                self._finish_file()

    def _open_file(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        pid, seq = os.getpid(), f"{next(_FILE_NUMBERS):05d}"
        self._final = self.directory / f"predictions-{stamp}-{pid}-{seq}.parquet"
        self._part = self.directory / f".predictions-{pid}-{seq}.parquet.part"
        self._file_rows = 0
        self._writer = pq.ParquetWriter(self._part, self._arrow_schema)

    def _finish_file(self) -> None:
        """Close, fsync and rename the open file: only then is it complete."""
        if self._writer is None or self._part is None or self._final is None:
            return
        self._writer.close()
        fd = os.open(self._part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._abandoned:  # close() stopped waiting and counted these rows as lost
            return
        os.replace(self._part, self._final)
        with self._cond:
            self._written += self._file_rows
            self._files += 1
        self._writer, self._part, self._final, self._file_rows = None, None, None, 0

    def _discard_file(self) -> int:
        """Drop the open file after a failed write; the number of rows it held."""
        writer, part, rows = self._writer, self._part, self._file_rows
        self._writer, self._part, self._final, self._file_rows = None, None, None, 0
        if writer is not None:
            try:
                writer.close()
            except Exception:  # the file is being thrown away: its footer does not matter
                logger.debug("prediction log: closing a failed file", exc_info=True)
        if part is not None:
            try:
                part.unlink(missing_ok=True)
            except OSError:  # stays under its hidden temporary name, never a final one
                logger.debug("prediction log: cannot remove %s", part, exc_info=True)
        return rows

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
        fields += [pa.field(name, kind) for name, kind in self._outputs]
        return pa.schema(fields)

    def _table(self, entries: list[LogEntry]) -> pa.Table:
        sizes = [e.rows for e in entries]
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
        for name, kind in self._outputs:
            data[name] = pa.concat_arrays([_arrow(e.outputs[name], kind) for e in entries])
        return pa.table(data, schema=self._arrow_schema)


def _arrow(values: Any, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array) and values.type == kind:
        return values
    return pa.array(values, kind)
