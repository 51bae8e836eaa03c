"""Stages run with the same OpenBLAS kernels on every x86-64 CPU (see gitml/stages)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

_PROBE = """
import json
import gitml.stages  # what `python -m gitml.stages.<stage>` imports first
import numpy
from threadpoolctl import threadpool_info
print(json.dumps(sorted({i.get("architecture") for i in threadpool_info()
                         if i["internal_api"] == "openblas"})))
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="OpenBLAS kernels are x86-64's")
def test_stages_pin_openblas_kernels_unless_the_user_chose_some() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    pinned = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(pinned.stdout) == ["Haswell"]
    chosen = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env | {"OPENBLAS_CORETYPE": "Sandybridge"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(chosen.stdout) == ["Sandybridge"]
