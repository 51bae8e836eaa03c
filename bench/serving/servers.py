"""Server processes the benchmark starts: how each is started, when it is ready, its memory,
and how it is stopped (its whole process group, workers included)."""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from serving.env import HOST, OUT_DIR, READY_TIMEOUT_S, ROOT, free_port
from serving.wire import Route

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class ServerSpec:
    """How to start one server and talk to it.

    `command(port)` gives the argv for a port; `routes` are the protocols it is measured
    over, by a short name (v1, v2, invocations); `ready_path` answers 200 once it scores.
    """

    name: str  # unique in a run: gitml-w1, mlserver-adaptive, ...
    label: str  # as the report shows it: "gitml", "MLServer 1.7.1, adaptive batching"
    kind: str  # gitml, mlflow, mlserver, shadow
    workers: int
    command: Callable[[int], list[str]]
    env: dict[str, str]
    ready_path: str
    routes: dict[str, Route]
    cwd: Path = ROOT
    prepare: Callable[[int], None] | None = None  # writes a config that names the port
    notes: list[str] = field(default_factory=list)


class Server:
    """A server process we started, in its own session so the whole tree stops together."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec, self.port = spec, free_port()
        self.log_path = OUT_DIR / f"serve-{spec.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = math.nan

    def start(self) -> None:
        if self.spec.prepare is not None:
            self.spec.prepare(self.port)
        cmd = self.spec.command(self.port)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        # a file, not a pipe: a chatty server (MLflow logs every request) never blocks
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.spec.cwd,
                env=self.spec.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"bench: {self.spec.name} exited {self.proc.returncode} before "
                    f"it was ready:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_request(self.port, "GET", self.spec.ready_path, timeout=2)[0] == 200:
                    self.ready_s = time.perf_counter() - started
                    return
            time.sleep(0.02)
        self.stop()
        raise SystemExit(
            f"bench: {self.spec.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
        )

    def rss_mib(self) -> float:
        """Resident memory of the server's whole process tree, read from /proc."""
        assert self.proc is not None
        return sum(_rss_kib(pid) for pid in _tree(self.proc.pid)) / 1024

    def stop(self) -> None:
        """SIGTERM to the process group we created (workers too), SIGKILL after 15 s."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the leader's pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                self.proc.poll()  # reap the leader
                try:
                    os.killpg(group, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                continue  # still there: SIGKILL
            break
        self.proc.wait(timeout=5)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/PID/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=JSON_HEADERS if body else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
