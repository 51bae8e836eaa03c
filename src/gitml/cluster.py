"""The only module that talks to Dask: start or join a cluster, run tasks on it, close it.

`--engine dask` scores and monitors data larger than one process on Dask's distributed
scheduler. Everything gitml asks of it passes through here, as `vcs.py` is the one doorway
to git and dvc: a `LocalCluster` of worker processes on 127.0.0.1 (no dashboard, quiet
logs), or a running scheduler by address; tasks mapped over partitions and gathered in
partition order; the first task error cancels the rest. A task whose worker dies is
rescheduled by Dask's own retry (the scheduler re-runs it elsewhere), so tasks must be
idempotent: each writes only its own output, atomically.

Another engine (Spark, Ray) would be a sibling of this module with the same `Engine`
surface (`map_ordered`, `remote`); the callers take an `Engine`, not a Dask client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from gitml.errors import ClusterError, GitmlError, first_line

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10.0
ENGINES = ("local", "dask")


@dataclass
class Engine:
    """A connected cluster: where tasks run, and whether its workers share our files.

    `remote` is True for a scheduler given by address: its workers may run on other
    machines, so what they need (a model file) is sent as bytes, not as a path.
    """

    client: Any
    address: str
    remote: bool

    @property
    def workers(self) -> int:
        """Workers connected right now."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def map_ordered(
        self,
        task: Callable[..., T],
        items: Sequence[Any],
        *args: Any,
        done: Callable[[int, T], None] | None = None,
    ) -> list[T]:
        """`task(item, *args)` for every item on the cluster; results in item order.

        `done(index, result)` is called on the client as each task finishes (progress). The
        first task that raises cancels the others and its error is raised here: a
        GitmlError as it was raised on the worker (hint included), anything else as a
        ClusterError naming the task. A task that lost its worker is re-run by the
        scheduler; after `distributed.scheduler.allowed-failures` lost workers it is given
        up (KilledWorker), which is reported too.
        """
        from distributed import as_completed

        # every task takes the same args (a model's bytes among them): each sent to every
        # worker once, whole (in a list: scatter would split a dict or list into futures)
        shared = [self.client.scatter([a], broadcast=True, hash=False)[0] for a in args]
        futures = [
            self.client.submit(task, item, *shared, key=f"gitml-{task.__name__}-{i}-{_token()}")
            for i, item in enumerate(items)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        try:
            for future in as_completed(futures, loop=self.client.loop):
                if future.status == "error":
                    raise _task_error(future, items[index[future.key]])
                value = future.result()
                results[index[future.key]] = value
                if done is not None:
                    done(index[future.key], value)
        except BaseException:
            self.client.cancel(futures)
            raise
        return results


@contextmanager
def connect(
    scheduler: str | None = None,
    *,
    workers: int = 2,
    timeout: float = CONNECT_TIMEOUT_S,
    preload: Sequence[str] = (),
) -> Iterator[Engine]:
    """An Engine on the scheduler at `scheduler` (tcp://HOST:PORT), or on a LocalCluster of
    `workers` processes (one thread each) started here and closed on exit.

    `preload`: modules the tasks import. A LocalCluster's workers are then forked from one
    server process that imported them once (multiprocessing's forkserver), instead of each
    worker importing pandas, pyarrow and scikit-learn anew: on 2 cores those seconds of
    start-up per worker are much of what keeps 2 workers from scoring twice as fast."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    from distributed import Client

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s "
                f"({first_line(err)})",
                hint="start one (`dask scheduler`) and its workers (`dask worker ADDRESS`), "
                "check the address, or leave out --scheduler to start a local cluster",
            ) from err
        try:
            _wait_for_a_worker(client, scheduler, timeout)
            yield Engine(client, scheduler, remote=True)
        finally:
            client.close()
        return
    if workers < 1:
        raise ClusterError(f"a local cluster needs at least 1 worker (got --workers {workers})")
    import dask
    from distributed import LocalCluster

    method = "forkserver" if preload else "spawn"
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        if preload:
            _preload_forkserver(preload)
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # a task's GitmlError (bad input) is the user's answer, raised here with its
            # hint: the worker's own "Compute Failed" log and traceback would only repeat it
            silence_logs=logging.CRITICAL,
        )
    try:
        client = Client(cluster, set_as_default=False)
        try:
            yield Engine(client, cluster.scheduler_address, remote=False)
        finally:
            client.close()
    finally:
        cluster.close()


def _preload_forkserver(modules: Sequence[str]) -> None:
    """Add `modules` to what Dask's forkserver imports before it forks a worker (Dask sets
    its own list, distributed and its dependencies, when it first makes the context)."""
    from distributed.utils import get_mp_context

    context = get_mp_context()  # sets Dask's list once, and only if not set yet
    from multiprocessing import forkserver

    have = list(getattr(forkserver._forkserver, "_preload_modules", []))
    context.set_forkserver_preload(have + [m for m in modules if m not in have])


def _wait_for_a_worker(client: Any, address: str, timeout: float) -> None:
    """Tasks on a scheduler without workers would wait forever: refuse it instead."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as err:
        raise ClusterError(
            f"the Dask scheduler at {address} has no workers (waited {timeout:g} s)",
            hint=f"start workers with `dask worker {address}`",
        ) from err


def _task_error(future: Any, item: Any) -> BaseException:
    error = future.exception()
    if isinstance(error, GitmlError):
        return error
    name = type(error).__name__
    if name == "KilledWorker":
        return ClusterError(
            f"Dask gave up on the task for {item}: its workers died repeatedly ({error})",
            hint="a worker probably ran out of memory; give workers more memory or use "
            "smaller partitions",
        )
    return ClusterError(f"the task for {item} failed on a Dask worker: {name}: {error}")


def _token() -> str:
    import uuid

    return uuid.uuid4().hex[:12]
