"""Read what a revision committed (metrics, predictions, params, signature, ...) through Git."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gitml.config.compose import CommittedParams, parse_committed_params
from gitml.errors import DataError
from gitml.project import OUTPUTS
from gitml.tasks import PLOTS, TASKS, Task, score_column
from gitml.vcs import DvcLock, parse_lock, read_blobs, resolve_rev, show_file


@dataclass(frozen=True)
class Revision:
    """The committed outputs of one revision; a missing file is None (e.g. a first model)."""

    label: str
    sha: str | None  # None: the working tree
    metrics: dict[str, Any] | None
    slices: dict[str, Any] | None
    predictions: pd.DataFrame | None
    validation: dict[str, Any] | None
    signature: dict[str, Any] | None
    metadata: dict[str, Any] | None
    params: CommittedParams | None
    lock: DvcLock | None
    curves: dict[str, list[dict[str, float]]]
    importance: dict[str, Any] | None = None  # reports/importance.json (absent before it existed)

    @property
    def model_md5(self) -> str | None:
        """The md5 dvc.lock records for the model file (None: no lock, or no model in it)."""
        return self.lock.out_md5(OUTPUTS["model"]) if self.lock is not None else None

    @property
    def short(self) -> str:
        return self.sha[:8] if self.sha else self.label

    @property
    def task(self) -> Task:
        """The task of the revision's model: metrics.json, else signature.json, else params;
        files from before tasks existed are binary."""
        output = (self.signature or {}).get("output") or {}
        data = (self.params.raw.get("data") if self.params else None) or {}
        for found in ((self.metrics or {}).get("task"), output.get("task"), data.get("task")):
            if found in TASKS:
                return found
        return "binary"


def empty_revision(label: str = "no earlier model") -> Revision:
    """The base of a first model: nothing committed, so only absolute rules can apply."""
    return Revision(label, None, None, None, None, None, None, None, None, None, {})


# the committed outputs a revision is read from, all in one go
_READ = (
    "metrics",
    "slices",
    "predictions",
    "validation",
    "signature",
    "metadata",
    "params",
    "lock",
    "importance",
)
# plot data of every task (reports/plots/<file>), read by the report's plots and images
_PLOTS_DIR = OUTPUTS["roc"].rsplit("/", 1)[0]
_SCORES = score_column("")
_CURVES = tuple(dict.fromkeys(f for task in TASKS for f in PLOTS[task] if f != "calibration.json"))


def load_revision(root: Path, rev: str | None) -> Revision:
    """Load a revision's outputs from Git (rev None: the working tree); never retrains.

    A revision given as `HEAD` is labelled by its commit, which is what a reader can look up.
    """
    sha = resolve_rev(root, rev) if rev is not None else None
    where = sha[:8] if sha else "workspace"
    if rev == "HEAD" and sha:
        rev = sha[:12]

    paths = [OUTPUTS[key] for key in _READ] + [f"{_PLOTS_DIR}/{name}" for name in _CURVES]
    if sha:  # one `git cat-file --batch` for every file of the revision
        texts = read_blobs(root, [f"{sha}:{path}" for path in paths])
    else:
        texts = [show_file(root, None, path) for path in paths]
    text = dict(zip(_READ + _CURVES, texts, strict=True))
    params, lock = text["params"], text["lock"]

    return Revision(
        label=rev or "workspace",
        sha=sha,
        metrics=_json(text["metrics"], OUTPUTS["metrics"], where),
        slices=_json(text["slices"], OUTPUTS["slices"], where),
        predictions=_csv(text["predictions"], OUTPUTS["predictions"], where),
        validation=_json(text["validation"], OUTPUTS["validation"], where),
        signature=_json(text["signature"], OUTPUTS["signature"], where),
        metadata=_json(text["metadata"], OUTPUTS["metadata"], where),
        params=(
            None
            if params is None
            else parse_committed_params(params, source=f"{OUTPUTS['params']} at {where}")
        ),
        lock=None if lock is None else parse_lock(lock, source=f"{OUTPUTS['lock']} at {where}"),
        curves={name.removesuffix(".json"): _rows(text[name]) for name in _CURVES},
        importance=_json(text["importance"], OUTPUTS["importance"], where),
    )


def _rows(text: str | None) -> list[dict[str, float]]:
    """Curve points for the plots section; a missing or unreadable file just draws nothing."""
    try:
        data = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return data if isinstance(data, list) else []


def _json(text: str | None, path: str, where: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} at {where} is not valid JSON ({err.msg}, line {err.lineno})",
            hint="restore it from the pipeline: dvc repro (or git checkout the file)",
        ) from err
    if not isinstance(data, dict):
        raise DataError(f"{path} at {where}: expected a JSON object, got {type(data).__name__}")
    return data


def _csv(text: str | None, path: str, where: str) -> pd.DataFrame | None:
    if text is None:
        return None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"actual": str, "predicted": str})
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(f"{path} at {where} is not a readable CSV ({err})") from err
    missing = {"row_id", "actual"} - set(frame.columns)
    scored = [c for c in frame.columns if c in ("score", "predicted") or c.startswith(_SCORES)]
    if not scored:  # binary: score; multiclass: score:<class>; regression: predicted
        missing.add("score")
    if missing:
        raise DataError(f"{path} at {where} lacks columns {sorted(missing)}")
    return frame
