"""Micro-batching: requests that arrive while the model is busy are scored in one call.

Scoring runs on the event loop itself, deferred by one loop turn: every request whose bytes
arrived in the meantime is parsed, checked and queued first, then one `predict_proba` call
scores them all and each request gets its slice of the scores. At concurrency 1 a request
is scored at once; under load, requests that queue up while the model is busy form the next
batch, so pandas' and scikit-learn's fixed per-call cost is paid once per batch.

Why not a scoring thread: pandas and scikit-learn hold the GIL for most of a small
`predict_proba`, so a thread would fight the event loop for it (measured: batches of under
2 requests at concurrency 8) instead of letting requests gather. Per-row results do not
depend on the batch: the frame and the scoring function are the same as for one request.

Isolation: when scoring a merged batch raises, or gives a non-finite score, each request of
the batch is scored again alone, so only the request at fault fails (with its own error:
an `InputError` naming its record and field, or the failure itself); the others get their
scores as if they had been scored alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gitml.errors import ModelError
from gitml.serve.inputs import Columns

ScoreFn = Callable[[Columns], np.ndarray]
AfterFn = Callable[[list["Job"], np.ndarray], None]

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One request waiting for its scores."""

    columns: Columns
    request_id: str
    future: asyncio.Future[np.ndarray]
    received: float = field(default_factory=time.time)


class MicroBatcher:
    """Gathers the requests queued within one event-loop turn and scores them together."""

    def __init__(
        self,
        score: ScoreFn,
        *,
        max_rows: int = 2048,
        wait_ms: float = 0.0,
        after: AfterFn | None = None,
        on_split: Callable[[], None] | None = None,
    ) -> None:
        self._score = score
        self._on_split = on_split
        self._max_rows = max_rows
        self._wait = wait_ms / 1000
        self._after = after
        self._jobs: list[Job] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self.running = False

    def start(self) -> None:
        """Bind to the running event loop; call from the loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self.running = True

    async def submit(self, columns: Columns, request_id: str) -> np.ndarray:
        """Scores for `columns`, computed together with whatever else is queued."""
        loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("the batcher is not running")
        job = Job(columns, request_id, loop.create_future())
        self._jobs.append(job)
        if not self._scheduled:
            self._scheduled = True
            if self._wait > 0:
                loop.call_later(self._wait, self._flush)
            else:
                # two turns: handlers woken in this turn queue their records first
                loop.call_soon(loop.call_soon, self._flush)
        return await job.future

    def stop(self) -> None:
        """Score what is queued; later submissions are refused."""
        self._flush()
        self.running = False

    def _flush(self) -> None:
        self._scheduled = False
        jobs, self._jobs = self._jobs, []
        batch: list[Job] = []
        rows = 0
        for job in jobs:
            if batch and rows + job.columns.n > self._max_rows:
                self._process(batch)
                batch, rows = [], 0
            batch.append(job)
            rows += job.columns.n
        if batch:
            self._process(batch)

    def _process(self, jobs: list[Job]) -> None:
        results = score_together(self._score, [j.columns for j in jobs], self._on_split)
        done: list[Job] = []
        parts: list[np.ndarray] = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Exception):  # this request's own failure, and only its own
                _fail(job, result)
            else:
                done.append(job)
                parts.append(result)
        if done:
            self._deliver(done, parts[0] if len(parts) == 1 else np.concatenate(parts))

    def _deliver(self, jobs: list[Job], scores: np.ndarray) -> None:
        if self._after is not None:
            try:
                self._after(jobs, scores)
            except Exception:  # metrics or the log failed: the predictions stand
                logger.exception("after scoring %d request(s)", len(jobs))
        start = 0
        for job in jobs:
            stop = start + job.columns.n
            if not job.future.done():  # done: the client went away
                job.future.set_result(scores[start:stop])
            start = stop


def score_together(
    score: ScoreFn, parts: list[Columns], on_split: Callable[[], None] | None = None
) -> list[np.ndarray | Exception]:
    """Each part's scores, from one call on the parts merged. When that call raises, or gives
    a non-finite score, each part is scored again alone (`on_split` is told), so a failure
    is only its own part's: a result is the part's scores or its own exception."""
    try:
        merged = parts[0] if len(parts) == 1 else merge_columns(parts)
        scores = finite_scores(score(merged))
    except Exception as err:
        if len(parts) == 1:
            return [err]
        if on_split is not None:
            on_split()
        return [score_together(score, [part])[0] for part in parts]
    if len(parts) == 1:
        return [scores]
    bounds = np.cumsum([0, *(part.n for part in parts)])
    return [scores[start:stop] for start, stop in itertools.pairwise(bounds)]


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """`scores` (one row per record: a score, a value, or a row of class probabilities), or
    ModelError naming the first record the model gave a non-finite score."""
    finite = np.isfinite(scores)
    if scores.ndim > 1:
        finite = finite.all(axis=1)
    bad = np.flatnonzero(~finite)
    if bad.size:
        raise ModelError(
            f"the model returned a non-finite score ({scores[bad[0]]}) for record {bad[0]}"
            + (f" and {bad.size - 1} more" if bad.size > 1 else "")
        )
    return scores


def _fail(job: Job, err: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(err)


def merge_columns(parts: list[Columns]) -> Columns:
    """Stack checked columns of several requests, in order."""
    first = parts[0]
    return Columns(
        n=sum(p.n for p in parts),
        values={k: np.concatenate([p.values[k] for p in parts]) for k in first.values},
        codes={k: np.concatenate([p.codes[k] for p in parts]) for k in first.codes},
        raw={k: [v for p in parts for v in p.raw[k]] for k in first.raw},
    )
