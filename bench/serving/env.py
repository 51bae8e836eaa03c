"""Where the serving benchmark reads and writes, and how it runs the commands it measures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "bench" / "out"
HOST, SEED = "127.0.0.1", 42
READY_TIMEOUT_S = 120.0
RESULT_MARK = "@@bench-result "
ENTRY = ROOT / "bench" / "serve.py"

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """One timestamped line on stderr, so a long run shows where it is."""
    elapsed = time.perf_counter() - _STARTED
    print(
        f"bench: [{elapsed // 60:.0f}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True
    )


def bench_env(venv_bin: Path | None = None) -> dict[str, str]:
    """This interpreter's venv (or `venv_bin`) first on PATH; unbuffered; no DVC analytics."""
    env = dict(os.environ)
    first = venv_bin or Path(sys.executable).parent
    env["PATH"] = f"{first}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    if venv_bin is not None:
        env["VIRTUAL_ENV"] = str(venv_bin.parent)
        env.pop("PYTHONPATH", None)  # a peer's venv imports its own packages only
    return env


def run_checked(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run `cmd`; its stdout, or stop the benchmark with its output if it fails."""
    proc = subprocess.run(
        cmd, cwd=cwd or ROOT, env=env or bench_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"bench: `{' '.join(cmd)}` exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return proc.stdout


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
