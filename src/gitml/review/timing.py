"""Prediction time of the head model, measured at review time and robust to a busy machine.

Timings never live in committed files (they would differ on every run). The gate measures
the head model when it judges it: CPU time of the process (not wall time, which grows with
every other process on the machine), BLAS/OpenMP pools held to one thread (idle pool threads
spin and bill CPU time), a warm-up, then the median of repeats. The measurement runs in a
child process started at the beginning of a review, so its imports and model load overlap
with the rest of the review.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROWS = 1000
_WARMUP = 2


@dataclass(frozen=True)
class Timing:
    """CPU milliseconds per 1,000 rows (median of `repeats`), or why it could not be measured."""

    ms_per_1000_rows: float | None
    repeats: int
    error: str | None = None


def probe_frame(signature: dict[str, Any], rows: int = ROWS):
    """`rows` deterministic rows that satisfy the signature: every category and allowed value,
    values spread over each declared (else observed) range, nulls where an input is nullable."""
    import numpy as np
    import pandas as pd

    index = np.arange(rows)
    columns: dict[str, Any] = {}
    for position, spec in enumerate(signature.get("inputs", [])):
        name = spec["name"]
        if spec.get("type") == "category":
            pool: list[Any] = list(spec.get("categories") or [])
        elif spec.get("allowed") is not None:
            pool = list(spec["allowed"])
        else:
            observed = spec.get("observed") or {}
            low = spec.get("min", observed.get("min", 0.0))
            high = spec.get("max", observed.get("max", low + 1.0))
            pool = list(np.linspace(low, high, 17))
            if spec.get("type") == "int":
                pool = [round(float(v)) for v in pool]
        if spec.get("nullable"):
            pool.append(None)
        picked = [pool[i] for i in (index * 7 + position) % len(pool)]
        if spec.get("type") == "category":
            columns[name] = pd.Categorical(picked, categories=spec.get("categories"))
        else:
            exact = spec.get("type") == "int" and not spec.get("nullable")
            numbers = [np.nan if v is None else v for v in picked]
            columns[name] = np.asarray(numbers, dtype=np.int64 if exact else np.float64)
    return pd.DataFrame(columns)


def measure(pipeline: Any, frame: Any, *, repeats: int, task: str = "binary") -> float:
    """Median CPU milliseconds per 1,000 rows of scoring `frame` as the server does
    (`predict_frame`: probabilities, or values for regression)."""
    from threadpoolctl import threadpool_limits

    from gitml.model.scoring import predict_frame

    features = [str(c) for c in frame.columns]

    def score() -> None:
        predict_frame(pipeline, frame, features=features, task=task)  # type: ignore[arg-type]

    with threadpool_limits(limits=1):
        for _ in range(_WARMUP):
            score()
        timings = []
        for _ in range(repeats):
            started = time.process_time()
            score()
            timings.append(time.process_time() - started)
    return round(statistics.median(timings) * 1000 * 1000 / len(frame), 3)


class PendingTiming:
    """A measurement running in a child process; `result()` waits for it."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._repeats = int(request["repeats"])
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gitml.review.timing", json.dumps(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cancel(self) -> None:
        """Stop the measurement (the review failed before it needed it)."""
        self._proc.kill()
        self._proc.communicate()

    def result(self, timeout: float = 600) -> Timing:
        try:
            out, err = self._proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return Timing(None, self._repeats, f"timing did not finish within {timeout:.0f} s")
        try:
            answer = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            tail = (err.strip().splitlines() or ["no output"])[-1]
            return Timing(None, self._repeats, f"timing failed: {tail}")
        return Timing(answer.get("ms_per_1000_rows"), self._repeats, answer.get("error"))


def start_timing(
    *, root: Path, model: Path | None, rev: str | None, md5: str | None,
    sha256: str | None, signature: dict[str, Any], repeats: int,
) -> PendingTiming:  # fmt: skip
    """Measure the model at `model` (or, if None, the one DVC holds for `rev`: the cache
    object with `md5`, else `dvc get`) in a child process; its hash is checked first."""
    return PendingTiming(
        {
            "root": str(root),
            "model": str(model) if model else None,
            "rev": rev,
            "md5": md5,
            "sha256": sha256,
            "signature": signature,
            "repeats": repeats,
        }
    )


def _measure_request(request: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    from gitml.errors import GitmlError
    from gitml.model.persist import load_verified_model

    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = request["model"]
            if model is None:  # the head's model: DVC's cache object, else `dvc get`
                from gitml.project import OUTPUTS
                from gitml.vcs import cache_object, fetch_artifact

                root = Path(request["root"])
                cached = cache_object(root, request["md5"]) if request.get("md5") else None
                if cached is not None and cached.is_file():
                    model = cached
                else:
                    out = Path(tmp) / "m.skops"
                    model = fetch_artifact(root, OUTPUTS["model"], request["rev"], out)
            pipeline = load_verified_model(Path(model), request["sha256"])
        frame = probe_frame(request["signature"])
        features = [spec["name"] for spec in request["signature"].get("inputs", [])]
        task = (request["signature"].get("output") or {}).get("task", "binary")
        value = measure(pipeline, frame[features], repeats=int(request["repeats"]), task=task)
    except GitmlError as err:
        return {"ms_per_1000_rows": None, "error": err.message}
    except Exception as err:  # the model cannot score rows its own signature allows
        return {"ms_per_1000_rows": None, "error": f"{type(err).__name__}: {err}"}
    return {"ms_per_1000_rows": value}


if __name__ == "__main__":
    print(json.dumps(_measure_request(json.loads(sys.argv[1]))))
