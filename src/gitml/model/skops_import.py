"""`skops.io`, imported without recomputing its default-trusted type names every time.

When `skops.io` is first imported, its `_trusted_types` module computes the names of the
types skops trusts by default: every estimator scikit-learn defines (`all_estimators`, which
imports every module of scikit-learn) and every NumPy and SciPy ufunc (each found by a scan
of every loaded module). That took 0.5 s of `gitml serve`'s 2 s start and 25 MiB of each
worker, to compute the same lists for the same library versions every time.

`import_skops` keeps those lists (the module's `*_NAMES` constants, lists of type names)
beside the code they describe, in the environment's own `share/gitml/` (`sys.prefix`), one
file per skops, scikit-learn, SciPy and NumPy version, and on later imports gives skops a
`_trusted_types` module holding the cached lists, so skops trusts exactly the types it would
have. The first import, and any whose cache cannot be read or written, computes them as
before.

Why the cache cannot widen what skops trusts: it lives where skops and scikit-learn
themselves are installed, so whoever can write it can already change the code that checks
(not in the user's home, which a virtual environment otherwise never runs code from); and a
cached list is used only if each name lies in the library its constant is named for
(`SKLEARN_*` in `sklearn.`, `SCIPY_*` in `scipy.`, `NUMPY_*` in `numpy.`) and the
builtin ones are exactly skops' own, fixed lists. Anything else and the lists are computed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE = "skops.io._trusted_types"
_LOCK = threading.Lock()
_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*_NAMES")
_ROOTS = {"SKLEARN": "sklearn.", "SCIPY": "scipy.", "NUMPY": "numpy."}
# skops' literal lists (not computed): a cache must hold exactly these
_BUILTINS = {
    "PRIMITIVE_TYPE_NAMES": {"builtins.int", "builtins.float", "builtins.str", "builtins.bool"},
    "CONTAINER_TYPE_NAMES": {"builtins.list", "builtins.set", "builtins.map", "builtins.tuple"},
}
CACHE_DIR_ENV = "GITML_SKOPS_CACHE_DIR"  # tests: a private directory


def import_skops() -> ModuleType:
    """`skops.io`, imported as the module docstring says. Thread-safe: models load side by
    side (`gitml serve --ref A --ref B`), and a thread must never see the module half made."""
    with _LOCK:
        if "skops.io" in sys.modules:
            import skops.io  # through the import system: waits for a module still importing

            return skops.io
        return _import_skops()


def _import_skops() -> ModuleType:
    cache = _cache_file()
    names = _read(cache)
    if names is not None:
        sys.modules[_MODULE] = _module_of(names)
        try:
            import skops.io
        except ImportError:  # a skops that needs more than the cache holds: compute
            for loaded in [m for m in sys.modules if m == "skops.io" or m.startswith("skops.io.")]:
                del sys.modules[loaded]
        else:
            return skops.io
    import skops.io

    _write(cache, _constants(vars(sys.modules[_MODULE])))
    return skops.io


def _cache_file() -> Path:
    """One file per version of each library the lists come from."""
    import numpy
    import scipy
    import sklearn
    from skops import __version__ as skops_version

    base = Path(os.environ.get(CACHE_DIR_ENV) or Path(sys.prefix) / "share" / "gitml")
    versions = [
        f"skops-{skops_version}",
        f"sklearn-{sklearn.__version__}",
        f"scipy-{scipy.__version__}",
        f"numpy-{numpy.__version__}",
    ]
    return base / f"trusted-types-{'-'.join(versions)}.json"


def _constants(namespace: dict[str, Any]) -> dict[str, list[str]]:
    return {
        name: list(value)
        for name, value in namespace.items()
        if _CONSTANT.fullmatch(name)
        and isinstance(value, list)
        and all(isinstance(v, str) for v in value)
    }


def _module_of(names: dict[str, list[str]]) -> ModuleType:
    module = ModuleType(_MODULE, "skops' default-trusted type names, from gitml's cache")
    for name, value in names.items():
        setattr(module, name, value)
    return module


def _read(path: Path) -> dict[str, list[str]] | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data:
        return None
    names = _constants(data)
    if len(names) != len(data) or not all(_plausible(k, v) for k, v in names.items()):
        return None
    return names


def _plausible(constant: str, values: list[str]) -> bool:
    """Whether a cached list could be skops' own (see the module docstring)."""
    if constant in _BUILTINS:
        return set(values) == _BUILTINS[constant]
    root = _ROOTS.get(constant.split("_", 1)[0])
    return root is not None and all(v.startswith(root) for v in values)


def _write(path: Path, names: dict[str, list[str]]) -> None:
    from gitml.files import write_text

    with contextlib.suppress(OSError):  # a read-only home: computed at each import
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(names, indent=0, sort_keys=True))
