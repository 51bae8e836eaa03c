"""Metrics across workers, as pure pieces: prediction-log counters added up from several logs
and workers' files, and skops' trusted-type lists kept in the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from gitml.model import skops_import
from gitml.serve.predlog import DROP_REASONS, ERROR_KINDS, LogStats
from gitml.serve.telemetry import _all_workers_stats, sum_stats


def _stats(written: int, *, buffered: int = 0, full: int = 0, failing: str | None = None):
    return LogStats(
        written_rows=written,
        dropped_rows={r: (full if r == "buffer_full" else 0) for r in DROP_REASONS},
        errors={k: 0 for k in ERROR_KINDS},
        buffered_rows=buffered,
        failing=failing,
    )


def test_sum_stats_keeps_every_reason_at_zero() -> None:
    total = sum_stats([_stats(3, full=2), _stats(4)])
    assert total.written_rows == 7
    assert total.dropped_rows == {r: (2 if r == "buffer_full" else 0) for r in DROP_REASONS}
    assert total.errors == dict.fromkeys(ERROR_KINDS, 0)  # every kind, for the exposition


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_other_workers_files_are_added_and_a_dead_ones_gauges_dropped(tmp_path: Path) -> None:
    alive, dead = os.getppid(), _dead_pid()
    (tmp_path / f"predlog-{alive}.json").write_text(
        json.dumps(asdict(_stats(10, buffered=2, failing="disk full")))
    )
    (tmp_path / f"predlog-{dead}.json").write_text(json.dumps(asdict(_stats(5, buffered=7))))
    (tmp_path / f"predlog-{os.getpid()}.json").write_text(json.dumps(asdict(_stats(99))))
    (tmp_path / "predlog-oops.json").write_text("{")
    total = _all_workers_stats(tmp_path, [_stats(1, buffered=1)])
    assert total is not None
    assert total.written_rows == 1 + 10 + 5  # this worker's live counts, not its stale file
    assert total.buffered_rows == 1 + 2  # a dead worker buffers nothing
    assert total.failing == "disk full"


def test_trusted_type_cache_round_trips_and_refuses_what_is_not_a_list_of_names(
    tmp_path: Path,
) -> None:
    lists = {"NUMPY_UFUNC_TYPE_NAMES": ["numpy.add"], "SKLEARN_ESTIMATOR_TYPE_NAMES": []}
    path = tmp_path / "trusted.json"
    skops_import._write(path, lists)
    assert skops_import._read(path) == lists
    assert vars(skops_import._module_of(lists))["NUMPY_UFUNC_TYPE_NAMES"] == ["numpy.add"]
    for bad in ('{"NUMPY_UFUNC_TYPE_NAMES": [1]}', '{"other": []}', "[]", "{"):
        path.write_text(bad)
        assert skops_import._read(path) is None
    # a cache that would widen what skops trusts is not used: names outside the library a
    # list is for, and builtin lists other than skops' own
    widened = (
        {"NUMPY_UFUNC_TYPE_NAMES": ["builtins.eval"]},
        {"SKLEARN_ESTIMATOR_TYPE_NAMES": ["os.system"]},
        {
            "PRIMITIVE_TYPE_NAMES": [
                "builtins.int",
                "builtins.float",
                "builtins.str",
                "builtins.bool",
                "builtins.eval",
            ]
        },
        {"OTHER_TYPE_NAMES": ["numpy.add"]},
    )
    for bad_lists in widened:
        path.write_text(json.dumps(bad_lists))
        assert skops_import._read(path) is None, bad_lists
