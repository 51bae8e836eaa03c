"""App factories for uvicorn worker processes started by tests (imported in the worker)."""

from __future__ import annotations

import os
import sys
import time


def hold_the_lock_then_exit() -> None:
    """Keep the interpreter lock for 3 s, so the worker's health-check thread cannot answer a
    ping, then exit as a worker that failed to start does (uvicorn's start-up failure code)."""
    sys.setswitchinterval(600)  # no other thread runs until this one blocks or exits
    end = time.perf_counter() + 3
    while time.perf_counter() < end:
        pass
    os._exit(3)
