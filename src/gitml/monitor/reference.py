"""The reference of a monitoring run: the model that served the data and its training split.

A released version (the prediction log's `model_version`, or `--reference NAME@vX.Y.Z` /
`NAME#STAGE`) is resolved through the registry's tags: the model is fetched and verified
(`gitml.registry.fetch.fetch_model`: SHA-256 against the release, skops' trusted loader),
the training split is read as of the release commit from the DVC cache or remote, and the
signature, calibrator and threshold are that commit's. Before any release (the log says
"unreleased") or for a batch file without versions, the reference is the working tree's:
`models/model.skops` verified against `models/metadata.json`, and the training split.
The reference's outputs come from scoring its split with its model, so the model's output
drift compares like with like.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import DataError, InputError, ModelError, RegistryError
from gitml.project import MODEL_FILE, OUTPUTS, Project
from gitml.tasks import Task, output_names, score_column

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from gitml.config.schema import Params
    from gitml.review.importance import Importance

TRAIN_SPLIT = OUTPUTS["train"]
CALIBRATOR = OUTPUTS["calibrator"]
IMPORTANCE = OUTPUTS["importance"]
WORKSPACE = "workspace"  # the model_version of a reference taken from the working tree
UNRELEASED = "unreleased"  # what a server of the working tree's model logs as its version


@dataclass(frozen=True)
class Scorer:
    """A verified model and its signature: turns input columns into the model's outputs."""

    pipeline: Pipeline
    signature: dict[str, Any]
    threshold: float
    model: Path | None = None  # the verified file, for workers that load it themselves
    sha256: str | None = None

    @cached_property
    def task(self) -> Task:
        task = self.signature.get("output", {}).get("task", "binary")
        if task not in ("binary", "multiclass", "regression"):
            raise ModelError(f"signature: unknown output.task {task!r}")
        return task

    @cached_property
    def inputs(self) -> list[str]:
        return [str(item["name"]) for item in self.signature["inputs"]]

    @cached_property
    def classes(self) -> list[str]:
        return [str(c) for c in self.signature["output"].get("classes") or []]

    @cached_property
    def positive_class(self) -> str | None:
        positive = self.signature["output"].get("positive_class")
        return None if positive is None else str(positive)

    @cached_property
    def target(self) -> str:
        return str(self.signature["output"].get("target", "target"))

    @cached_property
    def outputs(self) -> list[str]:
        """The output columns of the prediction log and batch scoring, by task."""
        return output_names(self.task, self.classes)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with the output columns added: what the model says about each row.

        Rows the model cannot score (a value that is not a number, a missing required
        input) get missing outputs: the data-quality checks report them, drift counts them.
        """
        import numpy as np

        values = self._predict(frame)
        out = frame.copy()
        if self.task == "regression":
            out["value"] = values
            return out
        if self.task == "multiclass":
            classes = np.asarray(self.classes, dtype=object)
            scored = ~np.isnan(values).any(axis=1)
            labels = np.full(len(frame), None, dtype=object)
            labels[scored] = classes[np.argmax(values[scored], axis=1)]
            out["label"] = labels
            for k, name in enumerate(self.classes):
                out[score_column(name)] = values[:, k]
            return out
        negative = next(c for c in self.classes if c != self.positive_class)
        positive = str(self.positive_class)
        labels = np.where(values >= self.threshold, positive, negative).astype(object)
        labels[np.isnan(values)] = None
        out["score"] = values
        out["label"] = labels
        return out

    def _predict(self, frame: pd.DataFrame) -> np.ndarray:
        import numpy as np

        from gitml.model.scoring import positive_index, predict_frame

        matrix = model_frame(frame, self.signature)
        width = 0 if self.task == "regression" else len(self.classes)
        shape = (len(frame),) if width == 0 else (len(frame), width)
        result = np.full(shape, np.nan)
        keep = np.ones(len(frame), dtype=bool)
        for _ in range(2):  # once more without the rows preprocessing refused
            rows = np.flatnonzero(keep)
            if not len(rows):
                break
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    values = predict_frame(
                        self.pipeline,
                        matrix.iloc[rows],
                        features=self.inputs,
                        task=self.task,
                    )
            except InputError as err:
                refused = {int(p["record"]) for p in err.problems if "record" in p}
                if not refused:
                    raise
                keep[rows[sorted(refused)]] = False
                continue
            result[rows] = values
            break
        if self.task == "binary":
            return result[:, positive_index(self.pipeline, str(self.positive_class))]
        return result


@dataclass(frozen=True)
class Reference:
    """What one model version's current rows are compared with."""

    version: str  # "v1.2.0", or "workspace"
    description: str  # e.g. "churn-classifier@v1.2.0 training split (data/processed/...)"
    scorer: Scorer
    frame: pd.DataFrame  # the split's inputs, target and the model's outputs
    calibrator: dict[str, Any] | None
    importance: Importance | None = None  # the model's reports/importance.json, if committed
    importance_note: str = ""  # where the importance came from, or why there is none


def model_frame(frame: pd.DataFrame, signature: dict[str, Any]) -> pd.DataFrame:
    """The pipeline's input frame from a batch frame, through the one coercion: float64
    numbers (NaN where missing or not a number), declared Categoricals (unknown: missing)."""
    import numpy as np
    import pandas as pd

    from gitml.data.coercion import coerce_categories, coerce_numbers

    data: dict[str, Any] = {}
    n = len(frame)
    for item in signature["inputs"]:
        name = str(item["name"])
        if item["type"] == "category":
            categories = [str(c) for c in item.get("categories") or []]
            if name in frame.columns:
                codes = coerce_categories(arrow_column(frame[name]), categories).codes
            else:
                codes = np.full(n, -1, dtype=np.int16)
            dtype = pd.CategoricalDtype(categories)
            data[name] = pd.Categorical.from_codes(codes, dtype=dtype, validate=False)
        elif name in frame.columns:
            data[name] = coerce_numbers(arrow_column(frame[name])).values
        else:
            data[name] = np.full(n, np.nan)
    return pd.DataFrame(data, copy=False)


def arrow_column(series: pd.Series) -> Any:
    """A pandas column as Arrow, whatever it holds (mixed Python objects become text)."""
    import pyarrow as pa

    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        text = [None if v is None or v != v else str(v) for v in series.tolist()]
        return pa.array(text, pa.string())


def workspace_reference(
    project: Project, params: Params, *, split: Path | None = None
) -> Reference:
    """The working tree's model (verified against models/metadata.json) and training split,
    or `split` (a CSV or Parquet file) as the reference data."""
    root = project.root
    scorer = _load_scorer(
        root / OUTPUTS["model"],
        root / OUTPUTS["signature"],
        root / OUTPUTS["metadata"],
        threshold=params.serve_threshold,
    )
    data_path = split if split is not None else root / TRAIN_SPLIT
    shown = data_path if split is not None else TRAIN_SPLIT
    frame = read_reference_data(data_path)
    stored = root / CALIBRATOR
    calibrator = _calibrator(stored.read_text() if stored.is_file() else None)
    ranked = root / IMPORTANCE
    importance, note = read_importance(
        ranked.read_text(encoding="utf-8") if ranked.is_file() else None,
        where="the working tree",
    )
    return Reference(
        version=WORKSPACE,
        description=f"working tree model, {'file' if split else 'training split'} {shown}",
        scorer=scorer,
        frame=scorer.score(frame),
        calibrator=calibrator,
        importance=importance,
        importance_note=note,
    )


def released_reference(project: Project, ref: str, workdir: Path, params: Params) -> Reference:
    """A release (`NAME@vX.Y.Z`, `NAME#STAGE`): its verified model, signature and calibrator
    (as `gitml fetch` ships them), and its training split as of the release commit, fetched
    into `workdir`."""
    from gitml.errors import VcsError
    from gitml.registry.fetch import fetch_model
    from gitml.vcs import fetch_artifact, show_file

    safe = ref.replace("/", "_").replace("#", "_").replace("@", "_")
    fetched = fetch_model(project, ref, workdir / safe)
    directory = Path(fetched.directory)
    recorded = _json(directory / "metrics.json").get("threshold")
    scorer = _load_scorer(
        directory / MODEL_FILE,
        directory / "signature.json",
        directory / "metadata.json",
        threshold=params.threshold_for(
            float(recorded) if isinstance(recorded, int | float) else None
        ),
    )
    data_path = workdir / f"{safe}-train.parquet"
    try:
        fetch_artifact(project.root, TRAIN_SPLIT, fetched.commit, data_path)
    except VcsError as err:
        raise RegistryError(
            f"cannot read the training split of {fetched.tag}: {err.message}",
            hint="the split must be in the DVC cache or remote (`dvc push` at the release "
            "commit), or pass --reference FILE",
        ) from err
    stored = directory / "calibrator.json"  # absent in releases made before monitoring
    # the release commit's own file, through Git (absent in releases made before importance)
    importance, note = read_importance(
        show_file(project.root, fetched.commit, IMPORTANCE),
        where=f"{fetched.tag} ({fetched.commit[:12]})",
    )
    return Reference(
        version=fetched.version,
        description=f"{fetched.tag} training split {TRAIN_SPLIT} at {fetched.commit[:12]}",
        scorer=scorer,
        frame=scorer.score(read_reference_data(data_path)),
        calibrator=_calibrator(stored.read_text() if stored.is_file() else None),
        importance=importance,
        importance_note=note,
    )


def revision_reference(project: Project, rev: str, workdir: Path, params: Params) -> Reference:
    """A Git revision (a commit, branch or tag that is not a release): the model as of that
    commit, verified against that commit's metadata.json, its signature and calibrator (one
    bulk read), and its training split, fetched from the DVC cache or remote into `workdir`."""
    from gitml.errors import VcsError
    from gitml.vcs import fetch_artifact, read_blobs, resolve_rev

    root = project.root
    try:
        commit = resolve_rev(root, rev)
    except VcsError as err:
        raise RegistryError(
            f"--reference {rev!r}: not a file, a release (NAME@vX.Y.Z, NAME#STAGE) or a Git "
            "revision of this repository",
            hint="`gitml models` lists releases; a revision is a commit, branch or tag",
        ) from err
    directory = workdir / f"rev-{commit[:12]}"
    directory.mkdir(parents=True, exist_ok=True)
    paths = [OUTPUTS["signature"], OUTPUTS["metadata"], CALIBRATOR, IMPORTANCE]
    signature, metadata, calibrator, ranked = read_blobs(root, [f"{commit}:{p}" for p in paths])
    for path, text in zip(paths[:2], (signature, metadata), strict=True):
        if text is None:
            raise RegistryError(
                f"--reference {rev}: {path} is not committed at {commit[:12]}",
                hint="pick a revision where `dvc repro` ran and its outputs were committed",
            )
        (directory / Path(path).name).write_text(text, encoding="utf-8")
    data_path = directory / "train.parquet"
    try:
        fetch_artifact(root, OUTPUTS["model"], commit, directory / MODEL_FILE)
        fetch_artifact(root, TRAIN_SPLIT, commit, data_path)
    except VcsError as err:
        raise RegistryError(
            f"--reference {rev}: {err.message}",
            hint="the model and the training split of that commit must be in the DVC cache or "
            "remote (dvc push there), or pass --reference FILE for the data",
        ) from err
    scorer = _load_scorer(
        directory / MODEL_FILE,
        directory / "signature.json",
        directory / "metadata.json",
        threshold=params.serve_threshold,
    )
    importance, note = read_importance(ranked, where=f"revision {rev} ({commit[:12]})")
    return Reference(
        version=commit[:12],
        description=f"revision {rev} ({commit[:12]}) model, training split {TRAIN_SPLIT}",
        scorer=scorer,
        frame=scorer.score(read_reference_data(data_path)),
        calibrator=_calibrator(calibrator),
        importance=importance,
        importance_note=note,
    )


def read_reference_data(path: Path) -> pd.DataFrame:
    """A reference data file (Parquet as gitml writes it, or CSV) as a frame."""
    from gitml.data.io import detect_format, read_source, read_table

    if not path.is_file():
        raise DataError(
            f"{path}: reference data not found",
            hint="run `dvc repro` (or `dvc pull`) for the training split, or pass --reference",
        )
    try:
        fmt = detect_format(path)
    except DataError:
        raise DataError(f"{path}: reference data must be a .csv or .parquet file") from None
    if fmt == "parquet":
        return read_table(path).reset_index(drop=True)
    return read_source(path).to_pandas()


def _load_scorer(model: Path, signature: Path, metadata: Path, *, threshold: float) -> Scorer:
    from gitml.model.persist import load_verified_model

    recorded = _json(metadata).get("model_file", {}).get("sha256")
    pipeline = load_verified_model(model, recorded, recorded_in=str(metadata))
    described = _json(signature)
    scorer = Scorer(
        pipeline=pipeline, signature=described, threshold=threshold, model=model, sha256=recorded
    )
    try:
        expected = [str(c) for c in getattr(pipeline, "feature_names_in_", [])]
        if expected and expected != scorer.inputs:
            raise ModelError(
                f"{model}: the pipeline expects inputs {expected}, but {signature} declares "
                f"{scorer.inputs}",
                hint="`dvc checkout` or `dvc repro` restores a matching model and signature",
            )
        scorer.task  # noqa: B018 (checks output.task)
    except (KeyError, TypeError) as err:
        raise ModelError(f"{signature}: malformed signature (missing {err})") from err
    return scorer


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"{path}: not found", hint="run `dvc repro`, or fetch the release again")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def read_importance(text: str | None, *, where: str) -> tuple[Importance | None, str]:
    """The reference model's importance and a phrase saying where it came from; or None and
    why there is none. An unreadable file does not stop monitoring: drift is still
    reported, unranked, and the phrase says what was wrong with the file."""
    from gitml.review.importance import parse_importance

    if text is None:
        return None, (
            f"{where} has no {IMPORTANCE} (a model from before importance was computed); "
            "run `dvc repro` and commit it, or release a model that has it"
        )
    try:
        data = json.loads(text)
        importance = parse_importance(data if isinstance(data, dict) else {}, where=where)
    except ValueError as err:
        return None, f"{IMPORTANCE} at {where} is not valid JSON ({err})"
    except DataError as err:
        return None, err.message
    assert importance is not None  # a file was read
    used = f"{importance.rows_used:,} test rows"
    return importance, f"{IMPORTANCE} at {where}, {importance.metric} on {used}"


def _calibrator(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
