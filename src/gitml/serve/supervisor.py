"""Worker processes of uvicorn's multiprocess supervisor whose death the supervisor sees at once.

uvicorn's supervisor checks a worker by sending "ping" down a pipe and waiting up to its
health-check timeout (gitml sets 120 s: a worker takes long to load its models) for the
answer. The parent keeps its own copy of the worker's end of that pipe open, so a worker that
exits after the ping was sent and before it answered is never seen as end-of-file: the
supervisor waits out the whole timeout. That is what a worker that cannot load its model does
(it exits at once), so `gitml serve --workers N` with a bad model could hang for two minutes
instead of exiting 1 (seen under load: about 1 start in 15). `ClosingWorker` closes the
parent's copy once the worker has its own, so the worker's exit ends the wait.

Only this module (imported by the supervisor and, because the worker object is pickled by
reference, by each worker) touches uvicorn's internals; `patched_workers` applies it for one
`uvicorn.run` and puts uvicorn back after.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from uvicorn.supervisors import multiprocess


class ClosingWorker(multiprocess.Process):
    """A uvicorn worker process whose pipe end the supervisor does not keep open."""

    def start(self) -> None:
        super().start()
        # spawned: the child received its own copy of the descriptor during start()
        self.child_conn.close()


@contextlib.contextmanager
def patched_workers() -> Iterator[None]:
    """uvicorn's supervisor starts `ClosingWorker`s inside this block."""
    original = multiprocess.Process
    multiprocess.Process = ClosingWorker  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = original  # type: ignore[misc]
