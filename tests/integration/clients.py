"""Run ecosystem clients (tritonclient, MLflow's scoring client, kserve) against a server.

The clients live in their own environment, `.venv-clients` (`make clients`; `make test`
builds it first), never in gitml's: a client script runs there as a subprocess and prints
one JSON document on stdout, which `run_client` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def clients_python() -> Path:
    """The clients' interpreter: $GITML_CLIENTS_PYTHON, else `.venv-clients/bin/python`."""
    given = os.environ.get("GITML_CLIENTS_PYTHON")
    python = Path(given) if given else ROOT / ".venv-clients" / "bin" / "python"
    if not python.is_file():
        pytest.fail(
            f"{python}: the ecosystem clients' environment is missing; `make clients` "
            "builds it (from tests/clients/requirements.lock), `make test` does so first"
        )
    return python


def run_client(script: str, *args: str, timeout: float = 180) -> Any:
    """Run `script` (Python source) in the clients' environment with `args` as sys.argv[1:];
    return the JSON it prints last on stdout."""
    done = subprocess.run(
        [str(clients_python()), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": "", "PYTHONWARNINGS": "ignore"},
    )
    if done.returncode != 0:
        raise AssertionError(f"client script failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"client script printed nothing:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])
