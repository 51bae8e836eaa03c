"""The shadow's own thread: it scores, in batches, the requests the primaries answered.

One daemon thread per deployment. It waits for a request, then gathers whatever else queued
within `GATHER_SECONDS`, and scores the lot in one call (`ModelRuntime.score_batch`): under
load its per-call cost (pandas', scikit-learn's, or the fast path's) is paid once per batch,
so it holds the GIL in short, rare bursts and the primary's latency barely moves. A daemon,
not a ThreadPoolExecutor (whose threads are joined at exit): a hung shadow never holds the
server's process.

A shadow whose inputs differ from the primary's checks each request's records against its
own signature (fields it does not declare are ignored); a request that fails those checks is
skipped (`ShadowSkipped`), not scored.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gitml.errors import InputError
from gitml.serve.inputs import Columns, InputSchema
from gitml.serve.runtime import ModelRuntime

GATHER_SECONDS = 0.025


class ShadowSkipped(Exception):
    """The shadow cannot take this request (its own input checks refuse it)."""


@dataclass
class ShadowJob:
    """One request for the shadow: the primary's checked columns and its schema."""

    shadow: ModelRuntime
    schema: InputSchema
    columns: Columns
    request_id: str
    received: float
    future: Future[None] = field(default_factory=Future)


class ShadowThread:
    """The daemon thread that scores `ShadowJob`s in batches (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[ShadowJob | None] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="gitml-shadow", daemon=True).start()

    def submit(self, job: ShadowJob) -> Future[None]:
        self._queue.put(job)
        return job.future

    def stop(self) -> None:
        """End the thread after the jobs already given."""
        self._queue.put(None)

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            time.sleep(GATHER_SECONDS)
            jobs, stopping = [first], False
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
            for shadow, group in itertools.groupby(jobs, key=lambda j: j.shadow):
                _score(shadow, list(group))
            if stopping:
                return


def _score(shadow: ModelRuntime, jobs: list[ShadowJob]) -> None:
    ready: list[tuple[ShadowJob, Columns]] = []
    for job in jobs:
        if not job.future.set_running_or_notify_cancel():
            continue
        try:
            ready.append((job, _columns_for(shadow, job)))
        except ShadowSkipped as err:
            job.future.set_exception(err)
    if not ready:
        return
    try:
        results = shadow.score_batch([(j.request_id, c, j.received) for j, c in ready])
    except BaseException as err:  # the shadow's own fault, every job's outcome
        for job, _ in ready:
            job.future.set_exception(err)
        return
    for (job, _), result in zip(ready, results, strict=True):
        if isinstance(result, BaseException):
            job.future.set_exception(result)
        else:
            job.future.set_result(None)


def _columns_for(shadow: ModelRuntime, job: ShadowJob) -> Columns:
    if shadow.schema == job.schema:
        return job.columns
    try:
        return shadow.schema.check_records(
            records_of(job.columns, job.schema),
            unknown_category=shadow.settings.unknown_category,
            extra_fields="accept",
        )
    except InputError as err:
        raise ShadowSkipped(err.message) from err


def records_of(columns: Columns, schema: InputSchema) -> list[dict[str, Any]]:
    """Checked columns back as JSON-like records: categories as received, numbers as floats,
    nulls as None."""
    records: list[dict[str, Any]] = [{} for _ in range(columns.n)]
    for rule in schema.fields:
        if rule.type == "category":
            for record, value in zip(records, columns.raw[rule.name], strict=True):
                record[rule.name] = value
        else:
            for record, number in zip(records, columns.values[rule.name].tolist(), strict=True):
                record[rule.name] = None if math.isnan(number) else number
    return records
