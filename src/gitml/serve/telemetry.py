"""Prometheus metrics of one server process (prometheus-client, one registry per app).

With `--workers N` every worker process keeps its own counters: a scrape of `/metrics`
reaches one worker and shows that worker's numbers (the `pid` label of `gitml_model_info`
says which). Aggregate across workers in Prometheus with `sum without (pid)`.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gitml.serve.predlog import DROP_REASONS, ERROR_KINDS, LogStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

# generate_latest escapes names the legacy way ("underscores"), which is text format 0.0.4:
# every Prometheus version reads it (prometheus-client's "latest" type says 1.0.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class ServeMetrics:
    """The counters and histograms `GET /metrics` exposes."""

    def __init__(self, *, binary: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
            ["name", "version", "commit", "pid"],
            registry=reg,
        )

    def add_model(self, name: str, version: str, commit: str | None) -> None:
        """Show a served model version in `gitml_model_info`."""
        self._info.labels(name, version, commit or "", str(os.getpid())).set(1)

    def remove_model(self, name: str, version: str, commit: str | None) -> None:
        """Drop a version no longer served (after a reload) from `gitml_model_info`."""
        with contextlib.suppress(KeyError):
            self._info.remove(name, version, commit or "", str(os.getpid()))

    def watch_log(self, stats: Callable[[], list[LogStats]]) -> None:
        """Expose the prediction logs' counters (summed), read from `stats()` at each scrape."""
        self.registry.register(_LogCollector(stats))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _LogCollector:
    """The prediction log's counters; every label value is always present (0 until it counts),
    so alerts can be written before the first failure."""

    def __init__(self, stats: Callable[[], list[LogStats]]) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # names come from collect(); nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        logs = self._stats()
        if not logs:  # the logs start with the app's lifespan
            return
        stats = sum_stats(logs)
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
