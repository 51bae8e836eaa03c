"""A model ready to serve: the pipeline, its signature and metadata, checked against each other.

A model directory holds `model.skops` with `signature.json` and `metadata.json` beside it,
whether it is a project's `models/` or a release fetched from the registry. Who the model
is (name, version, commit) is the caller's to say: a project working tree serves
"unreleased" at HEAD, a registry fetch serves what its release says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gitml.errors import ModelError
from gitml.serve.inputs import InputSchema
from gitml.tasks import TASKS, Task

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from gitml.project import Project
    from gitml.serve.fastpath import FastPathCheck
    from gitml.serve.inputs import Columns

SIGNATURE_FILE = "signature.json"
METADATA_FILE = "metadata.json"
UNRELEASED = "unreleased"


class SignatureTraits:
    """What a model's signature says, read the same way wherever a model is scored: by a
    ServedModel (the loaded pipeline) and by the stored fast path's StoredModel
    (`gitml.serve.fastpath_store`, no pipeline)."""

    signature: dict[str, Any]

    @cached_property
    def schema(self) -> InputSchema:
        return InputSchema.from_signature(self.signature)

    @cached_property
    def features(self) -> list[str]:
        return [item["name"] for item in self.signature["inputs"]]

    @cached_property
    def task(self) -> Task:
        """The signature's task; a signature without one (written before) is binary."""
        return signature_task(self.signature)

    @cached_property
    def classes(self) -> list[str]:
        """The classes, in the order of the model's probability columns ([] for regression)."""
        return [str(c) for c in self.signature["output"].get("classes") or []]

    @cached_property
    def positive_class(self) -> str:
        return str(self.signature["output"]["positive_class"])

    @cached_property
    def negative_class(self) -> str:
        return next(c for c in self.classes if c != self.positive_class)

    @property
    def target(self) -> str:
        return str(self.signature["output"].get("target", "target"))


@dataclass(frozen=True)
class ServedModel(SignatureTraits):
    """Everything serving and batch scoring need about one model."""

    name: str
    version: str
    commit: str | None
    pipeline: Pipeline
    signature: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class: `score_frame`, the code path evaluate uses."""
        from gitml.model.scoring import score_frame

        return score_frame(
            self.pipeline, frame, features=self.features, positive_class=self.positive_class
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The model's outputs for `frame`, as `gitml.serve.outputs` reads them: binary, the
        positive class's probability (`score`, as before); multiclass, every class's
        probability; regression, the predicted values. A record whose outputs are not finite
        (a multiclass or regression model overflowing on extreme inputs) is refused with an
        InputError naming it.
        The code path evaluate uses (`predict_frame`)."""
        task = self.task
        if task == "binary":
            return self.score(frame)
        import numpy as np

        from gitml.model.scoring import predict_frame
        from gitml.serve.outputs import check_values

        with np.errstate(over="ignore", invalid="ignore"):  # refused below, by record
            outputs = predict_frame(self.pipeline, frame, features=self.features, task=task)
        return check_values(outputs, target=self.target)

    @property
    def fast_scorer(self) -> Callable[[Columns], np.ndarray] | None:
        """The verified fast path (`fast_path.score`), or None when it is off."""
        return self.fast_path.score

    @cached_property
    def fast_path(self) -> FastPathCheck:
        """The pipeline's fast path for checked columns (`gitml.serve.fastpath`), verified
        against `predict` on probe rows when first asked for; `.score` is None when off."""
        from gitml.serve.fastpath import prepare_fast_path

        def reference(columns: Columns) -> np.ndarray:
            return self.predict(self.schema.to_frame(columns))

        task = self.task
        return prepare_fast_path(
            self.pipeline,
            self.schema,
            self.positive_class if task == "binary" else None,
            reference,
            task=task,
            target=self.target,
        )

    def labels(self, outputs: np.ndarray, threshold: float) -> np.ndarray:
        """The predicted class per record, as evaluate labels them: binary, the positive class
        at score >= threshold; multiclass, the most probable class."""
        from gitml.serve.outputs import labels_of

        return labels_of(self, outputs, threshold)

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/model` answers: identity, task, signature and headline metrics."""
        return {
            "name": self.name,
            "version": self.version,
            "commit": self.commit,
            "task": self.task,
            "estimator": self.metadata.get("estimator"),
            "model_sha256": self.metadata.get("model_file", {}).get("sha256"),
            "signature": self.signature,
            "metrics": self.metrics,
        }


def signature_task(signature: dict[str, Any]) -> Task:
    """`output.task` of a signature; binary when absent (signatures written before tasks)."""
    task = signature.get("output", {}).get("task", "binary")
    if task not in TASKS:
        raise ModelError(f"{SIGNATURE_FILE}: unknown output.task {task!r} (one of {TASKS})")
    return cast("Task", task)


@dataclass(frozen=True)
class ModelFiles:
    """A model directory checked without loading it (`check_model_files`): what a
    `gitml serve --workers N` supervisor hands its workers, each of which loads it."""

    path: Path  # the model file
    name: str
    version: str
    commit: str | None
    signature: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None  # recorded with a release (None: the config's)

    @property
    def sha256(self) -> str:
        """The model file's SHA-256 (checked against the file by `check_model_files`)."""
        return str(self.metadata["model_file"]["sha256"])


@dataclass(frozen=True)
class WorkerModel:
    """A model the workers load: its checked files, the threshold it is served at, the --ref
    it came from (None: a model file) and its role (primary or shadow)."""

    files: ModelFiles
    threshold: float
    ref: str | None = None
    role: str = "primary"


def check_model_files(
    model_path: str | Path,
    *,
    name: str | None = None,
    version: str = UNRELEASED,
    commit: str | None = None,
    metrics: dict[str, Any] | None = None,
    threshold: float | None = None,
) -> ModelFiles:
    """Everything `load_served_model` checks that needs no pipeline, and no scikit-learn:
    the files are there, the SHA-256 is the recorded one, the archive names no foreign type,
    the signature is well formed and agrees with the metadata. Raises ModelError."""
    from gitml.model.persist import check_model_file, load_model
    from gitml.project import MODEL_FILE

    path = Path(model_path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        load_model(path)  # raises the one "model file not found" error
    signature = _read_json(path.parent / SIGNATURE_FILE)
    metadata = _read_json(path.parent / METADATA_FILE)
    check_model_file(path, metadata.get("model_file", {}).get("sha256"), recorded_in=METADATA_FILE)
    _check_declared(path, signature, metadata)
    return ModelFiles(
        path=path,
        name=name or str(signature.get("model_name") or metadata.get("model_name") or "model"),
        version=version,
        commit=commit,
        signature=signature,
        metadata=metadata,
        metrics=metrics or {},
        threshold=threshold,
    )


def load_served_model(
    model_path: str | Path,
    *,
    name: str | None = None,
    version: str = UNRELEASED,
    commit: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> ServedModel:
    """Load and verify a model directory's `model.skops` (or the file given).

    Refuses, with a ModelError (UntrustedModelError for the first two), a missing file, a
    file that is not skops or holds an untrusted type, a file whose SHA-256 differs from
    `metadata.json`, and a pipeline whose inputs or classes differ from `signature.json`.
    """
    files = check_model_files(
        model_path, name=name, version=version, commit=commit, metrics=metrics
    )
    return load_model_files(files)


def load_model_files(files: ModelFiles) -> ServedModel:
    """Build the pipeline of checked `files` (skops audits its types first) and check it
    against the signature. Raises ModelError."""
    from gitml.model.persist import load_model

    pipeline = load_model(files.path)
    _check_signature(files.path, pipeline, files.signature)
    return ServedModel(
        name=files.name,
        version=files.version,
        commit=files.commit,
        pipeline=pipeline,
        signature=files.signature,
        metadata=files.metadata,
        metrics=files.metrics,
        path=files.path,
    )


def _check_declared(path: Path, signature: dict[str, Any], metadata: dict[str, Any]) -> None:
    """The signature is well formed and names the features the metadata records."""
    try:
        features = [item["name"] for item in signature["inputs"]]
        task = signature_task(signature)
        classes = [] if task == "regression" else [str(c) for c in signature["output"]["classes"]]
        positive = str(signature["output"]["positive_class"]) if task == "binary" else None
    except (KeyError, TypeError, AttributeError) as err:
        raise ModelError(
            f"{path.parent / SIGNATURE_FILE}: malformed signature (missing {err})"
        ) from err
    InputSchema.from_signature(signature)  # every input has a known type
    wrong = {
        "binary": positive not in classes or len(classes) != 2,
        "multiclass": len(classes) < 3,
        "regression": False,
    }[task]
    if wrong:
        shown = f", positive class {positive!r}" if task == "binary" else ""
        raise ModelError(
            f"{path.parent / SIGNATURE_FILE}: classes {classes}{shown} do not match task {task} "
            "(binary: two classes, the positive one among them; multiclass: three or more)"
        )
    recorded = metadata.get("features")
    if recorded is not None and list(recorded) != features:
        raise ModelError(
            f"{path}: the model was trained on inputs {list(recorded)} ({METADATA_FILE}), "
            f"but {SIGNATURE_FILE} declares {features}",
            hint="the model and its signature come from different runs: `dvc checkout` or "
            "`dvc repro` restores a matching pair",
        )


def _check_signature(path: Path, pipeline: Pipeline, signature: dict[str, Any]) -> None:
    """The pipeline takes the signature's inputs and predicts its classes (or values);
    `_check_declared` has checked the signature itself."""
    features = [item["name"] for item in signature["inputs"]]
    task = signature_task(signature)
    classes = [] if task == "regression" else [str(c) for c in signature["output"]["classes"]]
    positive = str(signature["output"]["positive_class"]) if task == "binary" else None
    expected = [str(c) for c in getattr(pipeline, "feature_names_in_", [])]
    if expected != features:
        raise ModelError(
            f"{path}: the pipeline expects inputs {expected}, but {SIGNATURE_FILE} declares "
            f"{features}",
            hint="the model and its signature come from different runs: `dvc checkout` or "
            "`dvc repro` restores a matching pair",
        )
    if task == "regression":
        from sklearn.base import is_regressor

        if not is_regressor(pipeline):
            raise ModelError(
                f"{path}: {SIGNATURE_FILE} says task regression, but the pipeline is not a "
                f"regressor ({type(pipeline.steps[-1][1]).__name__})"
            )
        return
    model_classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if model_classes != classes:
        shown = f", positive class {positive!r}" if task == "binary" else ""
        raise ModelError(
            f"{path}: the pipeline's classes {model_classes} do not match {SIGNATURE_FILE} "
            f"(task {task}, classes {classes}{shown})"
        )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(
            f"{path}: not found; a served model needs {SIGNATURE_FILE} and {METADATA_FILE} "
            "beside its model file",
            hint="serve the project's models/model.skops, or a directory fetched from the registry",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def load_project_model(project_root: Path, model_path: str | Path | None = None) -> ServedModel:
    """The working tree's model (default `models/model.skops`), as version "unreleased"
    (`check_project_model`, then loaded)."""
    return load_model_files(check_project_model(project_root, model_path))


def check_project_model(project_root: Path, model_path: str | Path | None = None) -> ModelFiles:
    """The working tree's model (default `models/model.skops`), checked, not loaded.

    The commit is `git rev-parse HEAD` when the project is a git repository. Headline
    metrics come from `metrics.json` beside the model, else from the project's
    `reports/metrics.json` when the model is the project's own.
    """
    from gitml.errors import VcsError
    from gitml.project import MODEL_FILE, OUTPUTS
    from gitml.vcs import git

    default = project_root / OUTPUTS["model"]
    path = Path(model_path) if model_path is not None else default
    try:
        commit: str | None = git(project_root, "rev-parse", "HEAD").strip() or None
    except VcsError:
        commit = None
    candidates = [path.parent / "metrics.json"] if path.suffix else [path / "metrics.json"]
    model_file = path if path.suffix else path / MODEL_FILE
    if model_file.resolve() == default.resolve():
        candidates.append(project_root / OUTPUTS["metrics"])
    metrics: dict[str, Any] = {}
    for candidate in candidates:
        if candidate.is_file():
            try:
                recorded = json.loads(candidate.read_text(encoding="utf-8"))
                metrics = dict(recorded.get("metrics") or {})
            except (OSError, ValueError, AttributeError):
                metrics = {}
            break
    return check_model_files(path, version=UNRELEASED, commit=commit, metrics=metrics)


def load_released_model(project: Project, ref: str, dest: Path) -> tuple[ServedModel, float | None]:
    """Fetch a release (`NAME@vX.Y.Z`, `NAME#STAGE`) into `dest` and load it as that version.

    Returns the model and the decision threshold recorded with the release (its
    `metrics.json`), which serving uses unless `serve.threshold` is set.
    """
    files = fetch_released_model(project, ref, dest)
    return load_model_files(files), files.threshold


def fetch_released_model(project: Project, ref: str, dest: Path) -> ModelFiles:
    """Fetch a release into `dest` (SHA-256 verified) and check it, without loading it; its
    `threshold` is the one recorded with the release."""
    from gitml.registry.fetch import fetch_model

    fetched = fetch_model(project, ref, dest)
    recorded = _read_json(Path(fetched.directory) / "metrics.json")
    threshold = recorded.get("threshold")
    return check_model_files(
        fetched.model_path,
        name=fetched.name,
        version=fetched.version,
        commit=fetched.commit,
        metrics=dict(recorded.get("metrics") or {}),
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
    )
