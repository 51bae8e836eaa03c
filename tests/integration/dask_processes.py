"""A real Dask cluster for tests: `dask scheduler` and `dask worker` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class DaskProcesses:
    """The scheduler's address and the `dask worker` (nanny) processes."""

    address: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """The worker processes themselves (children of the nannies): what a crash kills."""
        import psutil

        return [c.pid for w in self.workers for c in psutil.Process(w.pid).children()]

    def kill_worker(self) -> int:
        """SIGKILL one worker process (its nanny starts a new one); its pid."""
        pid = self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dask_processes(workers: int = 2) -> Iterator[DaskProcesses]:
    """Start a scheduler and `workers` workers (one thread each), wait until all are
    connected, and stop them all on exit."""
    dask = str(Path(sys.executable).parent / "dask")
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "env": env,
        "start_new_session": True,
    }
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        **quiet,  # type: ignore[call-overload]
    )
    cluster = DaskProcesses(address)
    try:
        for _ in range(workers):
            cluster.workers.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--death-timeout",
                        "60",
                    ],
                    **quiet,  # type: ignore[call-overload]
                )
            )
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        # each started in its own process group (a nanny with its worker): killed with it
        for proc in [*cluster.workers, scheduler]:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
