"""Tail latency under a C load generator: `wrk -t2 -c8 --latency` posting one-row bodies.

The Python load generator is itself slow enough to hide a server's pauses (it queues behind
the GIL while the server stalls); wrk keeps 8 connections busy from C, so a garbage-collector
pause in the server shows up in its p99. The Lua script cycles through the same one-row
bodies the Python generator sends, and prints wrk's own latency distribution as JSON.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from serving.env import HOST, OUT_DIR

WRK_MARK = "@@wrk "
_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
%s
}
local n = 0
request = function()
  n = n %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[n])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "errors": %%d, "non2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def write_script(name: str, bodies: list[bytes]) -> Path:
    """A Lua script for wrk that posts `bodies` in turn (each in a long bracket string)."""
    items = ",\n".join(f"  [==[{b.decode()}]==]" for b in bodies)
    path = OUT_DIR / f"wrk-{name}.lua"
    path.write_text(_SCRIPT % (items, WRK_MARK))
    return path


def run_wrk(
    port: int, path: str, script: Path, *, seconds: float, threads: int = 2, connections: int = 8
) -> dict[str, Any]:
    """One wrk run against `path`: requests/s, p50/p90/p99/max in ms, errors."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{path}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    marks = [ln for ln in proc.stdout.splitlines() if ln.startswith(WRK_MARK)]
    if proc.returncode != 0 or not marks:
        raise SystemExit(f"bench: `{' '.join(cmd)}` failed:\n{proc.stdout}{proc.stderr}")
    raw = json.loads(marks[-1][len(WRK_MARK) :])
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": raw["errors"],
        "non2xx": raw["non2xx"],
        "threads": threads,
        "connections": connections,
    }
