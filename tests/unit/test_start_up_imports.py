"""Commands and stages import only the heavy libraries they use: each costs a process start.

`gitml gate` and `gitml report` start in ~4 s, the `card` stage runs in every `dvc repro`;
scikit-learn (with scipy.stats) adds about a second to a start, pandas about a third. A
module-level import added to a module these reach would bring that back silently, so each
entry module is imported in a fresh interpreter and what it loaded is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in {unwanted!r} if m in sys.modules)))
"""

# entry module -> libraries it must not import (the command loads them later, if at all)
CASES = {
    # gate and report read committed predictions: a numpy bootstrap, no curve, no model
    # (the timing child process loads the model; --recompute and --images import on demand)
    "gitml.review.review": ("sklearn", "scipy", "skops", "matplotlib", "pandera"),
    # a binary model's card: predictions.csv read with csv, intervals from numpy alone
    "gitml.stages.card": ("pandas", "pyarrow", "sklearn", "scipy"),
    # reproduce compares recorded JSON values; the stages it runs are other processes
    "gitml.registry.reproduce": ("numpy", "pandas", "pyarrow", "sklearn", "hydra"),
}


@pytest.mark.parametrize("module", sorted(CASES))
def test_an_entry_module_imports_no_library_its_command_does_not_use(module: str) -> None:
    code = _PROBE.format(module=module, unwanted=CASES[module])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert loaded == [], (
        f"importing {module} loads {', '.join(loaded)}: import it inside the function that "
        f"uses it (`python -X importtime -c 'import {module}'` shows which module loads them)"
    )
