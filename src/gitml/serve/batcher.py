"""Micro-batching: requests that arrive while the model is busy are scored in one call.

One scoring thread owns the model. The event loop queues each checked request; the thread
takes everything queued (up to `max_rows`), builds one frame, calls the pipeline once and
hands each request its slice of the scores. At concurrency 1 a request is scored at once
(no added wait unless `wait_ms` > 0); under load, one `predict_proba` call pays pandas' and
scikit-learn's fixed per-call cost for many requests. The frame and the scoring function
are the same as for one request: per-row results do not depend on the batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gitml.serve.inputs import Columns

ScoreFn = Callable[[Columns], np.ndarray]
AfterFn = Callable[[list["Job"], np.ndarray], None]

_STOP = object()


@dataclass
class Job:
    """One request waiting for its scores."""

    columns: Columns
    request_id: str
    future: asyncio.Future[np.ndarray]
    received: float = field(default_factory=time.time)


class MicroBatcher:
    """Scores queued requests together in one worker thread."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_rows: int = 2048,
        wait_ms: float = 0.0,
        after: AfterFn | None = None,
    ) -> None:
        self._score = score
        self._max_rows = max_rows
        self._wait = wait_ms / 1000
        self._after = after
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the scoring thread; call from the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="gitml-scorer", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def submit(self, columns: Columns, request_id: str) -> np.ndarray:
        """Scores for `columns`, computed in the scoring thread (possibly with others)."""
        assert self._loop is not None, "start() the batcher first"
        job = Job(columns, request_id, self._loop.create_future())
        self._queue.put(job)
        return await job.future

    def stop(self) -> None:
        """Score what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        pending: Any = None
        while True:
            first = pending if pending is not None else self._queue.get()
            pending = None
            if first is _STOP:
                return
            jobs, rows = [first], first.columns.n
            deadline = time.monotonic() + self._wait
            stop = False
            while rows < self._max_rows:
                try:
                    remaining = deadline - time.monotonic()
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else (self._queue.get_nowait())
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if rows + item.columns.n > self._max_rows:
                    pending = item  # first of the next batch
                    break
                jobs.append(item)
                rows += item.columns.n
            self._process(jobs)
            if stop:
                self._queue.put(_STOP)

    def _process(self, jobs: list[Job]) -> None:
        assert self._loop is not None
        try:
            merged = jobs[0].columns if len(jobs) == 1 else merge_columns([j.columns for j in jobs])
            scores = self._score(merged)
            if self._after is not None:
                self._after(jobs, scores)
            outcome: list[Any] = []
            start = 0
            for job in jobs:
                outcome.append(scores[start : start + job.columns.n])
                start += job.columns.n
        except Exception as err:  # delivered to every waiting request; the thread lives on
            outcome = [err] * len(jobs)
        self._loop.call_soon_threadsafe(_deliver, jobs, outcome)


def _deliver(jobs: list[Job], outcome: list[Any]) -> None:
    for job, result in zip(jobs, outcome, strict=True):
        if job.future.done():  # the client went away
            continue
        if isinstance(result, Exception):
            job.future.set_exception(result)
        else:
            job.future.set_result(result)


def merge_columns(parts: list[Columns]) -> Columns:
    """Stack checked columns of several requests, in order."""
    first = parts[0]
    return Columns(
        n=sum(p.n for p in parts),
        values={k: np.concatenate([p.values[k] for p in parts]) for k in first.values},
        codes={k: np.concatenate([p.codes[k] for p in parts]) for k in first.codes},
        raw={k: [v for p in parts for v in p.raw[k]] for k in first.raw},
    )
