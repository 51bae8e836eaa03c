"""Prometheus metrics of a server (prometheus-client): one process's, or all its workers'.

One process (`--workers 1`, and apps built in tests) keeps its metrics in its own registry;
`gitml_model_info` carries the process's `pid`.

With `--workers N` the supervisor points `PROMETHEUS_MULTIPROC_DIR` at a private directory
before the workers start, so every counter and histogram is prometheus-client's
multiprocess kind (one memory-mapped file per worker), and a scrape, whichever worker
answers it, adds up every worker's files (`MultiProcessCollector`): totals, not one
worker's share. `gitml_model_info` has no `pid` label there: one series per served version,
1 while a live worker serves it (`livemax`; files of dead workers are dropped at the
scrape). The prediction log's counters live in the log, not in prometheus-client, so each
worker also writes them to `predlog-<pid>.json` in that directory (at most a second old,
and at exit); a scrape adds up every worker's file, counting the gauges of live workers
only.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gitml.serve.predlog import DROP_REASONS, ERROR_KINDS, LogStats

_LOG_STATS_GLOB = "predlog-*.json"
_PUBLISH_SECONDS = 1.0

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

# generate_latest escapes names the legacy way ("underscores"), which is text format 0.0.4:
# every Prometheus version reads it (prometheus-client's "latest" type says 1.0.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class ServeMetrics:
    """The counters and histograms `GET /metrics` exposes."""

    def __init__(self, *, binary: bool = True) -> None:
        # the registry the metrics are created in; with workers, a scrape reads the files
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = multiprocess_dir()
        reg = self.registry
        self.requests = Counter(
            "gitml_http_requests",
            "HTTP requests answered, by path and status code.",
            ["path", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "gitml_http_request_duration_seconds",
            "Time from request to response, by path.",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.rows = Counter("gitml_rows_scored", "Records scored.", registry=reg)
        # binary only: a probability has fixed buckets; a regression value's scale is the
        # project's own and multiclass has one probability per class (the prediction log
        # keeps every output of every task)
        self.scores: Histogram | None = None
        if binary:
            self.scores = Histogram(
                "gitml_prediction_score",
                "Predicted probability of the positive class.",
                buckets=_SCORE_BUCKETS,
                registry=reg,
            )
        self.batch_rows = Histogram(
            "gitml_scoring_batch_rows",
            "Rows per call into the model (micro-batches gather concurrent requests).",
            buckets=_BATCH_BUCKETS,
            registry=reg,
        )
        self.rejected_records = Counter(
            "gitml_input_problems",
            "Problems found in rejected requests, by field and rule.",
            ["field", "rule"],
            registry=reg,
        )
        self.unknown_categories = Counter(
            "gitml_input_unknown_categories",
            "Values outside the declared categories, accepted by policy, by field.",
            ["field"],
            registry=reg,
        )
        self.extra_fields = Counter(
            "gitml_input_extra_fields",
            "Undeclared fields in records, ignored by policy.",
            registry=reg,
        )
        self.batch_splits = Counter(
            "gitml_scoring_batch_splits",
            "Micro-batches whose scoring failed and were re-scored request by request.",
            registry=reg,
        )
        self.shadow_requests = Counter(
            "gitml_shadow_requests",
            "Requests the shadow model (--shadow) was given, by outcome: ok, failed (it "
            "raised), timeout (over serve.shadow_timeout_s), skipped (its input checks failed, "
            "or serve.shadow_max_pending requests were already waiting for it).",
            ["outcome"],
            registry=reg,
        )
        self.reloads = Counter(
            "gitml_reloads",
            "Reloads on SIGHUP, by outcome: ok (the new versions serve), failed (the old ones "
            "still do; the server log says why).",
            ["outcome"],
            registry=reg,
        )
        self._info = Gauge(
            "gitml_model_info",
            "The served models (always 1 each).",
            ["name", "version", "commit"] + ([] if self.shared_dir else ["pid"]),
            registry=reg,
            multiprocess_mode="livemax",  # with workers: one series per version, not per pid
        )
        self._log_stats: Callable[[], list[LogStats]] | None = None

    def _info_labels(self, name: str, version: str, commit: str | None) -> list[str]:
        labels = [name, version, commit or ""]
        return labels if self.shared_dir else [*labels, str(os.getpid())]

    def add_model(self, name: str, version: str, commit: str | None) -> None:
        """Show a served model version in `gitml_model_info`."""
        self._info.labels(*self._info_labels(name, version, commit)).set(1)

    def remove_model(self, name: str, version: str, commit: str | None) -> None:
        """Drop a version no longer served (after a reload) from `gitml_model_info`."""
        labels = self._info_labels(name, version, commit)
        if self.shared_dir:  # the worker's file keeps the value: 0 hides it from livemax
            self._info.labels(*labels).set(0)
        with contextlib.suppress(KeyError):
            self._info.remove(*labels)

    def watch_log(self, stats: Callable[[], list[LogStats]]) -> None:
        """Expose the prediction logs' counters (summed), read from `stats()` at each scrape;
        with workers, also published for the other workers' scrapes."""
        self._log_stats = stats
        if self.shared_dir is None:
            self.registry.register(_LogCollector(lambda: sum_stats_or_none(stats())))
            return
        _LogPublisher(self.shared_dir, stats).start()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (every worker's, with workers)."""
        shared = self.shared_dir
        if shared is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        _forget_dead_workers(shared)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(shared))
        if self._log_stats is not None:
            mine = self._log_stats()
            registry.register(_LogCollector(lambda: _all_workers_stats(shared, mine)))
        return generate_latest(registry)


def multiprocess_dir() -> Path | None:
    """The directory the workers of one server share their metrics in, or None (one process).

    prometheus-client picks its value store once, when imported: the directory counts only if
    it was set by then (the supervisor sets it before it starts the workers)."""
    from prometheus_client import values

    # prometheus-client's own variable, which `gitml.serve.server.run_workers` sets
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return Path(directory)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid: not our worker
        return False
    return True


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live-gauge files of workers that died (uvicorn restarts them under new pids)."""
    from prometheus_client.multiprocess import mark_process_dead

    dead = set()
    for path in directory.glob("gauge_live*_*.db"):
        number = path.stem.rsplit("_", 1)[-1]
        if number.isdigit() and not _pid_alive(int(number)):
            dead.add(int(number))
    for pid in dead:
        mark_process_dead(pid, str(directory))


class _LogPublisher:
    """Writes this worker's prediction-log counters to `predlog-<pid>.json` in the shared
    directory, once a second when they changed and at exit, for the scrapes other workers
    answer."""

    def __init__(self, directory: Path, stats: Callable[[], list[LogStats]]) -> None:
        self._path = directory / f"predlog-{os.getpid()}.json"
        self._stats = stats
        self._last: bytes | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="gitml-metrics", daemon=True).start()
        atexit.register(self.publish)

    def _run(self) -> None:
        while not self._stop.wait(_PUBLISH_SECONDS):
            self.publish()

    def publish(self) -> None:
        logs = self._stats()
        if not logs:
            return
        payload = json.dumps(asdict(sum_stats(logs))).encode()
        if payload == self._last:
            return
        temporary = self._path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # metrics never fail the server
            temporary.write_bytes(payload)
            os.replace(temporary, self._path)
            self._last = payload


def _all_workers_stats(directory: Path, mine: list[LogStats]) -> LogStats | None:
    """Every worker's prediction-log counters added up: this worker's as they are now, the
    others' from their files (their gauges only while they live)."""
    own = os.getpid()
    logs = list(mine)
    for path in directory.glob(_LOG_STATS_GLOB):
        pid = path.stem.removeprefix("predlog-")
        if not pid.isdigit() or int(pid) == own:
            continue
        try:
            stats = LogStats(**json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError):
            continue  # a file being replaced: the next scrape reads it
        if not _pid_alive(int(pid)):
            stats = replace(stats, buffered_rows=0, failing=None)
        logs.append(stats)
    return sum_stats_or_none(logs)


def sum_stats_or_none(logs: list[LogStats]) -> LogStats | None:
    return sum_stats(logs) if logs else None


class _LogCollector:
    """The prediction log's counters; every label value is always present (0 until it counts),
    so alerts can be written before the first failure."""

    def __init__(self, stats: Callable[[], LogStats | None]) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # names come from collect(); nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        if stats is None:  # the logs start with the app's lifespan
            return
        written = CounterMetricFamily(
            "gitml_prediction_log_rows", "Predictions in complete prediction log files."
        )
        written.add_metric([], stats.written_rows)
        dropped = CounterMetricFamily(
            "gitml_prediction_log_dropped_rows",
            "Predictions that were not logged, by reason (buffer_full, write_error, shutdown).",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], stats.dropped_rows[reason])
        errors = CounterMetricFamily(
            "gitml_prediction_log_errors",
            "Failed prediction log writes, by kind (disk_full, permission, io).",
            labels=["kind"],
        )
        for kind in ERROR_KINDS:
            errors.add_metric([kind], stats.errors[kind])
        buffered = GaugeMetricFamily(
            "gitml_prediction_log_buffered_rows", "Predictions waiting to be written."
        )
        buffered.add_metric([], stats.buffered_rows)
        failing = GaugeMetricFamily(
            "gitml_prediction_log_failing",
            "1 while the prediction log cannot write (see /readyz for the reason), else 0.",
        )
        failing.add_metric([], 0 if stats.failing is None else 1)
        yield from (written, dropped, errors, buffered, failing)


def sum_stats(logs: list[LogStats]) -> LogStats:
    """The counters of several prediction logs (one per served version), added up."""
    if len(logs) == 1:
        return logs[0]
    first = logs[0]
    return replace(
        first,
        written_rows=sum(s.written_rows for s in logs),
        buffered_rows=sum(s.buffered_rows for s in logs),
        # Counter.update keeps the zeros (`sum` of Counters drops them): every reason is shown
        dropped_rows=_add(s.dropped_rows for s in logs),
        errors=_add(s.errors for s in logs),
        failing=next((s.failing for s in logs if s.failing is not None), None),
    )


def _add(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for count in counts:
        total.update(count)
    return dict(total)
