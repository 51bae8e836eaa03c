"""What one server serves: its model versions in the order given, and an optional shadow.

`gitml serve --ref NAME#prod --ref NAME#staging` serves both versions; a bare model name
(`/v2/models/{name}`, and `/v1/predict` and `/invocations`, which name no model) routes to
the first one given.

`--shadow REF` scores every request a primary scored with the candidate as well, and logs
its outputs; the client only ever sees the primary's. The shadow's work is kept off the
request's path: it starts once the response has been sent (`Deployment.serving`, entered by
the app's middleware around each request), runs in a thread of its own, in batches
(`gitml.serve.shadow`: a slow model must not hold the event loop), is waited for at most
`serve.shadow_timeout_s`, and is skipped when `serve.shadow_max_pending` requests already
wait for it. Nothing it does (raise, hang, refuse the input) changes the primary's answer;
each outcome is counted in `gitml_shadow_requests_total{outcome}`.

`swap` replaces the runtimes at once (a SIGHUP reload, `gitml.serve.reload`); requests that
started before it finish on the runtimes they found (`drained`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gitml.errors import ConfigError
from gitml.serve.inputs import Columns, InputSchema
from gitml.serve.predlog import LogStats
from gitml.serve.runtime import ModelRuntime
from gitml.serve.shadow import ShadowJob, ShadowSkipped, ShadowThread

_log = logging.getLogger(__name__)

# what waits for the current response to be sent: set by `Deployment.serving`
_AFTER_RESPONSE: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "gitml_after_response", default=None
)
_FAILURES_LOGGED_EVERY = 1000  # a failing shadow logs its first failure, then one in this many


class Deployment:
    """The runtimes one server holds, and how a request finds its runtime."""

    def __init__(self, runtimes: Sequence[ModelRuntime], *, shadow: ModelRuntime | None = None):
        _check_runtimes(runtimes)
        self.runtimes: list[ModelRuntime] = list(runtimes)
        self.shadow = shadow
        self._generation = 0
        self._active: Counter[int] = Counter()  # requests in flight, by generation
        self._shadow_thread: ShadowThread | None = None
        self._shadow_pending = 0
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._shadow_failures = 0
        self.retired_logs: list[LogStats] = []  # the last counters of logs closed by a reload

    @property
    def default(self) -> ModelRuntime:
        """The first model given: what `/v1/predict` and `/invocations` score with."""
        return self.runtimes[0]

    @property
    def names(self) -> list[str]:
        """Model names, in the order given, each once."""
        return list(dict.fromkeys(r.key.name for r in self.runtimes))

    def find(self, name: str, version: str | None = None) -> ModelRuntime | None:
        """The runtime of `name` at `version`; without a version, the first given of `name`."""
        for runtime in self.runtimes:
            if runtime.key.name == name and (version is None or runtime.key.version == version):
                return runtime
        return None

    def all(self) -> list[ModelRuntime]:
        """Every runtime, the shadow last."""
        return [*self.runtimes, *([self.shadow] if self.shadow is not None else [])]

    @property
    def ready(self) -> bool:
        """Every primary runtime scores (a shadow never makes the server unready)."""
        return all(r.ready for r in self.runtimes)

    # -- requests --------------------------------------------------------------------------

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Around one HTTP request (the app's middleware): counts it in flight for `drained`,
        and runs what it deferred (the shadow) once the response has been sent."""
        generation = self._generation
        self._active[generation] += 1
        later: list[Callable[[], None]] = []
        token = _AFTER_RESPONSE.set(later)
        try:
            yield
        finally:
            _AFTER_RESPONSE.reset(token)
            self._active[generation] -= 1
            if not self._active[generation]:
                del self._active[generation]
            for start in later:
                start()

    async def infer(self, runtime: ModelRuntime, columns: Columns, request_id: str) -> np.ndarray:
        """`runtime`'s outputs for `columns`; the shadow, if any, scores them too, without
        delaying or failing this answer."""
        scores = await runtime.score(columns, request_id)
        shadow = self.shadow
        if shadow is not None and runtime.role == "primary":
            received = time.time()
            start = functools.partial(
                self._start_shadow, shadow, runtime.schema, columns, request_id, received
            )
            later = _AFTER_RESPONSE.get()
            if later is None:  # not inside `serving` (no middleware): at once
                start()
            else:
                later.append(start)
        return scores

    # -- the shadow --------------------------------------------------------------------------

    def _start_shadow(
        self,
        shadow: ModelRuntime,
        schema: InputSchema,
        columns: Columns,
        request_id: str,
        received: float,
    ) -> None:
        counter = shadow.metrics.shadow_requests
        if self._shadow_pending >= shadow.settings.shadow_max_pending:
            counter.labels("skipped").inc()
            return
        loop = asyncio.get_running_loop()
        if self._shadow_thread is None:
            self._shadow_thread = ShadowThread()
        self._shadow_pending += 1
        job = ShadowJob(shadow, schema, columns, request_id, received)
        work = asyncio.wrap_future(self._shadow_thread.submit(job), loop=loop)
        work.add_done_callback(self._shadow_done)  # the thread is free: not at the timeout
        task = loop.create_task(self._await_shadow(shadow, work, request_id))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    def _shadow_done(self, _: Any) -> None:
        self._shadow_pending -= 1

    async def _await_shadow(
        self, shadow: ModelRuntime, work: asyncio.Future[None], request_id: str
    ) -> None:
        counter = shadow.metrics.shadow_requests
        try:
            await asyncio.wait_for(asyncio.shield(work), shadow.settings.shadow_timeout_s)
        except TimeoutError:
            counter.labels("timeout").inc()
            work.add_done_callback(_retrieve)  # its late exception, if any, is not "unretrieved"
        except ShadowSkipped:
            counter.labels("skipped").inc()
        except Exception as err:  # the shadow's own fault: counted, logged now and then
            counter.labels("failed").inc()
            self._shadow_failures += 1
            if self._shadow_failures % _FAILURES_LOGGED_EVERY == 1:
                _log.warning(
                    "shadow %s failed on request %s (%d failure(s) so far; the primary's "
                    "answers are unaffected)",
                    shadow.key,
                    request_id,
                    self._shadow_failures,
                    exc_info=err,
                )
        else:
            counter.labels("ok").inc()

    async def wait_shadow(self, timeout: float) -> None:
        """Wait (at most `timeout`) for the shadow's requests in progress to be done."""
        deadline = time.monotonic() + timeout
        while self._shadow_pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def close(self) -> None:
        """Let the shadow's thread go once it is done (a hung one is abandoned: a daemon)."""
        if self._shadow_thread is not None:
            self._shadow_thread.stop()
            self._shadow_thread = None

    # -- reload ----------------------------------------------------------------------------

    def swap(
        self, runtimes: Sequence[ModelRuntime], shadow: ModelRuntime | None
    ) -> list[ModelRuntime]:
        """Serve `runtimes` (and `shadow`) from now on, in one step of the event loop; returns
        the runtimes no longer served. Requests already in flight keep the runtime they found:
        wait for `drained` before stopping those."""
        _check_runtimes(runtimes)
        kept = {id(r) for r in [*runtimes, *([shadow] if shadow is not None else [])]}
        gone = [r for r in self.all() if id(r) not in kept]
        self.runtimes, self.shadow = list(runtimes), shadow
        self._generation += 1
        return gone

    async def drained(self, timeout: float) -> bool:
        """Wait until every request that started before the last `swap` is answered (at most
        `timeout` seconds); False if some are still in flight."""
        deadline = time.monotonic() + timeout
        while any(g < self._generation for g in self._active):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


def _check_runtimes(runtimes: Sequence[ModelRuntime]) -> None:
    if not runtimes:
        raise ConfigError("nothing to serve: give at least one model")
    keys = [r.key for r in runtimes]
    twice = sorted({str(k) for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"the same model version is given twice: {twice}")


def _retrieve(work: asyncio.Future[Any]) -> None:
    if not work.cancelled():
        work.exception()
