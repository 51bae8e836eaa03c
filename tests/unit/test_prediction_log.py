"""The prediction log: batched, rotated Parquet files; bounded buffer; nothing lost on close."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gitml.errors import ConfigError
from gitml.serve import predlog
from gitml.serve.inputs import InputSchema
from gitml.serve.predlog import LogEntry, PredictionLog
from tests.unit.test_serve_inputs import GOOD

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = InputSchema.from_signature(json.loads((ROOT / "models/signature.json").read_text()))


def _entry(request: int, rows: int) -> LogEntry:
    columns = SCHEMA.check_records([GOOD | {"tenure": request % 100}] * rows)
    scores = np.linspace(0, 1, rows)
    labels = np.where(scores >= 0.5, "Yes", "No")
    return LogEntry(f"req-{request}", columns, {"score": scores, "label": labels}, time.time())


def _log(directory: Path, **options: int | float) -> PredictionLog:
    return PredictionLog(directory, SCHEMA, model_name="m", model_version="v1", **options)


def test_rows_are_batched_rotated_and_all_flushed_on_close(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=300, rotate_rows=1000, max_buffer_rows=2500)
    for request in range(25):
        log.append(_entry(request, 100))
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.suffix for f in files] == [".parquet"] * 3  # no temporary file left behind
    tables = [pq.read_table(f) for f in files]
    assert [t.num_rows for t in tables] == [1000, 1000, 500]
    rows = [row for t in tables for row in t.to_pylist()]
    assert [r["request_id"] for r in rows[::100]] == [f"req-{i}" for i in range(25)]
    assert rows[0]["record"] == 0 and rows[99]["record"] == 99
    assert rows[150]["tenure"] == 1 and rows[150]["contract"] == "One year"
    assert rows[0]["model_version"] == "v1" and rows[0]["label"] == "No"
    assert tables[0].schema.field("timestamp").type.tz == "UTC"


def test_a_full_buffer_drops_and_counts_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stuck in I/O (a FIFO nobody reads at the name of its first file): appends
    return at once, rows beyond the buffer are counted as dropped, close() gives up after its
    timeout, and the stuck file never gets a final name."""
    # file numbers run across every log of the process: this log's first file is number 1
    monkeypatch.setattr(predlog, "_FILE_NUMBERS", itertools.count(1))
    stuck = tmp_path / f".predictions-{os.getpid()}-00001.parquet.part"
    os.mkfifo(stuck)
    try:
        log = _log(tmp_path, flush_rows=10, max_buffer_rows=100, flush_seconds=60, stall_seconds=1)
        started = time.monotonic()
        accepted = [log.append(_entry(request, 10)) for request in range(50)]
        assert time.monotonic() - started < 1  # 50 appends; none waited for the writer
        assert 10 <= sum(accepted) <= 20  # the writer's first batch, then the buffer's 100 rows
        stats = log.stats()
        assert stats.dropped_rows["buffer_full"] == 500 - 10 * sum(accepted)
        assert stats.failing is not None and "buffer full" in stats.failing
        started = time.monotonic()
        log.close(timeout=0.5)
        assert time.monotonic() - started < 2
        stats = log.stats()
        assert stats.dropped_rows["shutdown"] == 10 * sum(accepted)
        assert stats.written_rows == 0 and not list(tmp_path.glob("*.parquet"))
    finally:  # let the writer thread go: its open() returns, its first write fails
        os.close(os.open(stuck, os.O_RDONLY | os.O_NONBLOCK))


def test_a_failed_write_is_counted_logged_once_and_the_writer_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's directory disappears (a real ENOENT), then comes back."""
    directory = tmp_path / "logs"
    log = _log(directory, flush_rows=10, flush_seconds=0.05)
    directory.rmdir()
    sent = 0

    def retried() -> bool:  # the writer retries, backing off, when it has rows again
        nonlocal sent
        sent += log.append(_entry(sent, 10))
        return log.stats().errors["io"] >= 2

    _wait(retried, "two failed attempts")
    assert "cannot write" in (log.failing() or "")
    episode = [r for r in caplog.records if f"cannot write {directory}" in r.getMessage()]
    assert len(episode) == 1  # once per episode, not per attempt or row
    directory.mkdir()
    for request in range(3):
        assert log.append(_entry(1000 + request, 10))
    log.close()  # the file is complete: the episode is over
    stats = log.stats()
    assert stats.failing is None
    assert any("writing again" in r.getMessage() for r in caplog.records)
    files = list(directory.iterdir())
    assert all(f.name.startswith("predictions-") and f.suffix == ".parquet" for f in files)
    logged = pq.read_table(files)
    assert logged.num_rows == stats.written_rows
    assert {"req-1000", "req-1001", "req-1002"} <= set(logged["request_id"].to_pylist())
    assert sum(stats.dropped_rows.values()) + logged.num_rows == 10 * sent + 30


def _wait(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def test_old_rows_are_written_after_flush_seconds(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=1000, flush_seconds=0.2)
    log.append(_entry(0, 3))
    deadline = time.monotonic() + 10
    while log.rows_written < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.rows_written == 3
    log.close()


def test_reserved_column_names_are_refused(tmp_path: Path) -> None:
    signature = {"inputs": [{"name": "score", "type": "float", "nullable": False}]}
    with pytest.raises(ConfigError, match="reserved"):
        PredictionLog(
            tmp_path,
            InputSchema.from_signature(signature),
            model_name="m",
            model_version="v",
        )
