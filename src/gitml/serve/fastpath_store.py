"""A model's verified fast path, stored per model SHA-256, so `gitml predict` need not import
scikit-learn.

Importing scikit-learn (and the SciPy it imports) and rebuilding a skops archive take 2 to 4 s
on these machines, more than scoring a million rows. For a pipeline the fast path reproduces
(`gitml.serve.fastpath`) with a linear estimator (LogisticRegression, LinearRegression,
Ridge), every number that scoring needs is a plain array: the preprocessing plans and the
estimator's `coef_` and `intercept_`. The first `gitml predict` of a model loads the pipeline,
derives those arrays from it, checks the resulting scorer against the pipeline on probe rows
(`verify_fast_path`: every output within 1e-12, the same rows refused) and only then stores
them. A later run whose model file has the same SHA-256 (checked against metadata.json by
`check_model_files` before anything is read) and the same gitml, NumPy and scikit-learn
versions scores with the stored arrays, and never imports scikit-learn or pandas.

Why a stored file cannot change a score: it lives where gitml itself is installed
(`sys.prefix`/share/gitml/fastpath, as skops' type cache does), so whoever can write it can
already change the code that scores; it is an `.npz` read without pickle; and it is used only
if its header names the model's SHA-256, inputs, task and classes exactly as the checked
signature does. Anything else (a missing, unreadable or foreign file, a directory that cannot
be written) and the pipeline is loaded as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gitml.serve.bundle import SignatureTraits
from gitml.serve.fastpath import PARITY_TOLERANCE, build_fast_path, verify_fast_path
from gitml.serve.fastpath_blocks import BlockPlan, plan_preprocessing
from gitml.serve.inputs import Columns, InputSchema

if TYPE_CHECKING:
    import pandas as pd

    from gitml.model.scoring import EstimatorTraits
    from gitml.serve.bundle import ModelFiles, ServedModel

STORE_DIR_ENV = "GITML_FASTPATH_DIR"  # tests: a private directory
_FORMAT = 1
_HEADER = "header"


@dataclass(frozen=True)
class LinearPlan:
    """A linear estimator as plain arrays: `kind` "logistic" (predict_proba: the logistic
    function for two classes, softmax for more) or "linear" (predict)."""

    kind: str
    name: str
    coef: np.ndarray
    intercept: np.ndarray


class StoredModel(SignatureTraits):
    """A model scored through its stored fast path: what `score_file` reads of a ServedModel
    (`gitml.serve.batch.BatchModel`), without the pipeline. `predict`, never needed while the
    fast path scores every chunk, loads the pipeline."""

    def __init__(
        self, files: ModelFiles, plans: list[BlockPlan], linear: LinearPlan, traits: Any
    ) -> None:
        self.files = files
        self.signature = files.signature
        self.name, self.version = files.name, files.version
        self._plans, self._linear, self._traits = plans, linear, traits

    @cached_property
    def fast_scorer(self) -> Callable[[Columns], np.ndarray]:
        return _scorer(self._plans, self._linear, self._traits, self.schema, self)

    @cached_property
    def _served(self) -> ServedModel:
        from gitml.serve.bundle import load_model_files

        return load_model_files(self.files)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self._served.predict(frame)


def open_for_batch(files: ModelFiles) -> ServedModel | StoredModel:
    """The model of checked `files` for batch scoring: its stored fast path when there is
    one; else the loaded pipeline, whose fast path is derived, verified and stored for the
    next run when the pipeline is one this module can keep."""
    from gitml.serve.bundle import load_model_files

    path = _store_file(files.sha256)
    stored = _read(path, files)
    if stored is not None:
        return stored
    served = load_model_files(files)
    derived = _derive(served, files)
    if derived is None:
        return served
    with contextlib.suppress(OSError):  # a directory that cannot be written: derived again
        _write(path, files, derived)
    return derived


def _derive(served: ServedModel, files: ModelFiles) -> StoredModel | None:
    """The stored-model form of `served`, if its pipeline has one that matches it on probe rows."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    from gitml.model.scoring import traits_of

    pipeline = served.pipeline
    plans = plan_preprocessing(pipeline, served.schema, task=served.task)
    if plans is None:
        return None
    estimator = pipeline.steps[-1][1]
    if served.task == "regression":
        if type(estimator) not in (LinearRegression, Ridge):
            return None
        kind = "linear"
    elif type(estimator) is LogisticRegression:
        kind = "logistic"
    else:
        return None
    linear = LinearPlan(
        kind,
        type(estimator).__name__,
        np.asarray(estimator.coef_, dtype=np.float64),
        np.asarray(estimator.intercept_, dtype=np.float64),
    )
    stored = StoredModel(files, plans, linear, traits_of(estimator))

    def reference(columns: Columns) -> np.ndarray:
        return served.predict(served.schema.to_frame(columns))

    try:
        difference = verify_fast_path(stored.fast_scorer, reference, served.schema)
    except Exception:  # fail closed: the pipeline scores
        return None
    return stored if difference <= PARITY_TOLERANCE else None


def _scorer(
    plans: list[BlockPlan],
    linear: LinearPlan,
    traits: EstimatorTraits,
    schema: InputSchema,
    model: StoredModel,
) -> Callable[[Columns], np.ndarray]:
    column = model.classes.index(model.positive_class) if model.task == "binary" else None
    return build_fast_path(
        plans,
        _method(linear),
        traits,
        schema,
        task=model.task,
        column=column,
        target=model.target,
    )


def _method(linear: LinearPlan) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-learn's arithmetic for the estimator: `decision_function` (X @ coef_.T +
    intercept_), then for LogisticRegression the logistic function as [1 - p, p] (two
    classes) or softmax (more). Proven against the estimator before it is stored."""
    coef_t = linear.coef.T if linear.coef.ndim == 2 else linear.coef
    intercept = linear.intercept

    def decision(x: np.ndarray) -> np.ndarray:
        scores = x @ coef_t + intercept
        return scores.reshape(-1) if scores.ndim > 1 and scores.shape[1] == 1 else scores

    if linear.kind == "linear":
        return decision

    def probabilities(x: np.ndarray) -> np.ndarray:
        d = decision(x)
        if d.ndim == 1:
            p = _expit(d)
            return np.stack([1 - p, p], axis=1)
        d -= d.max(axis=1, keepdims=True)
        np.exp(d, out=d)
        d /= d.sum(axis=1, keepdims=True)
        return d

    return probabilities


def _expit(d: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-d)), without overflow for large negative d."""
    out = np.empty_like(d)
    positive = d >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-d[positive]))
    e = np.exp(d[~positive])
    out[~positive] = e / (1.0 + e)
    return out


# -- the stored file --------------------------------------------------------------------------


def _store_file(sha256: str) -> Path:
    from importlib.metadata import version

    from gitml import __version__

    base = Path(os.environ.get(STORE_DIR_ENV) or Path(sys.prefix) / "share" / "gitml" / "fastpath")
    versions = f"gitml-{__version__}-sklearn-{version('scikit-learn')}-numpy-{np.__version__}"
    return base / f"{sha256}-{versions}.npz"


def _identity(files: ModelFiles) -> dict[str, Any]:
    """What a stored file must name to be used for `files`."""
    return {
        "format": _FORMAT,
        "model_sha256": files.sha256,
        "inputs": files.signature["inputs"],
        "output": files.signature["output"],
    }


def _write(path: Path, files: ModelFiles, model: StoredModel) -> None:
    from gitml.files import atomic_path

    arrays: dict[str, np.ndarray] = {}
    blocks = []
    for i, plan in enumerate(model._plans):
        steps = []
        for j, (kind, first, second) in enumerate(plan.steps):
            for name, value in ((f"b{i}s{j}a", first), (f"b{i}s{j}b", second)):
                if value is not None:
                    arrays[name] = np.asarray(value, dtype=np.float64)
            steps.append([kind, first is not None, second is not None])
        blocks.append(
            {
                "kind": plan.kind,
                "names": list(plan.names),
                "sizes": list(plan.sizes),
                "steps": steps,
            }
        )
    linear, traits = model._linear, model._traits
    arrays["coef"], arrays["intercept"] = linear.coef, linear.intercept
    header = {
        **_identity(files),
        "blocks": blocks,
        "estimator": {"kind": linear.kind, "name": linear.name},
        "traits": {"name": traits.name, "allows_nan": traits.allows_nan, "float32": traits.float32},
    }
    arrays[_HEADER] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)


def _read(path: Path, files: ModelFiles) -> StoredModel | None:
    """The stored model at `path`, or None when it is missing, unreadable or not this model's."""
    from gitml.model.scoring import EstimatorTraits

    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
        header = json.loads(arrays.pop(_HEADER).tobytes())
        if any(header.get(k) != v for k, v in _identity(files).items()):
            return None
        plans = []
        for i, block in enumerate(header["blocks"]):
            steps = tuple(
                (
                    str(kind),
                    arrays[f"b{i}s{j}a"] if has_first else None,
                    arrays[f"b{i}s{j}b"] if has_second else None,
                )
                for j, (kind, has_first, has_second) in enumerate(block["steps"])
            )
            if block["kind"] not in ("onehot", "ordinal", "numeric"):
                return None
            plans.append(
                BlockPlan(
                    block["kind"],
                    tuple(str(n) for n in block["names"]),
                    tuple(int(s) for s in block["sizes"]),
                    steps,
                )
            )
        estimator, traits = header["estimator"], header["traits"]
        linear = LinearPlan(
            str(estimator["kind"]), str(estimator["name"]), arrays["coef"], arrays["intercept"]
        )
        return StoredModel(
            files,
            plans,
            linear,
            EstimatorTraits(
                str(traits["name"]), bool(traits["allows_nan"]), bool(traits["float32"])
            ),
        )
    except Exception:  # missing, truncated, not a zip, fields missing: derived again
        return None
