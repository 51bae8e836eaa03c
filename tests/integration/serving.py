"""Run `gitml serve` as a real process on 127.0.0.1 and talk to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_bound(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """An app built in this process, under a real uvicorn on 127.0.0.1 in a thread; yields its
    base URL. `config` goes to `uvicorn.Config` (e.g. `lifespan="off"`)."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))  # bound here: no other worker can take it
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", log_level="error", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class ServerProcess:
    """`python -m gitml serve ... --port P` in `cwd`, stderr captured to a file; `preexec_fn`
    runs in the child before exec (to set up a fault, see `faults.py`)."""

    def __init__(self, cwd: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> None:
        self._cwd, self._args, self._preexec = cwd, args, preexec_fn
        self._start()

    def _start(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # unique even if two servers of one test draw the same port
        fd, name = tempfile.mkstemp(
            prefix=f"serve-{self.port}-", suffix=".stderr", dir=self._cwd.parent
        )
        self.stderr_path = Path(name)
        self._stderr = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gitml", "serve", "--port", str(self.port), *self._args],
            cwd=self._cwd,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=self._preexec,
        )

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text()

    def wait_ready(self, timeout: float = 90, *, retries: int = 2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._stderr.close()
                if retries and "address already in use" in self.stderr:
                    # another xdist worker bound the free port first: draw another one
                    retries -= 1
                    self._start()
                    continue
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.stderr}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server not ready within {timeout} s:\n{self.stderr}")

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._stderr.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait_exit(10)


def project_serving(built_repo: Path, destination: Path, **serve: Any) -> Path:
    """A copy of the built project at `destination`, its `serve` params updated by `serve`."""
    import yaml

    from tests.support import copy_repo

    repo = copy_repo(built_repo, destination)
    if serve:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["serve"].update(serve)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return repo


@contextlib.contextmanager
def running(project: Path, *args: str) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """`gitml serve --model models/model.skops` on `project`, ready, and a client of it; the
    server is stopped after."""
    server = ServerProcess(project, "--model", "models/model.skops", *args)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield server, client
    finally:
        server.stop()
