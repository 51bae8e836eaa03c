"""Compare two revisions' committed outputs: metrics with paired intervals, slices, params,
data, model and lineage. Values in, values out: the caller loads the revisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gitml.data.profile import compare_profiles
from gitml.evaluate.evaluation import outputs_from_predictions
from gitml.review.bootstrap import paired_bootstrap, paired_bootstrap_outputs
from gitml.review.contract import SignatureDiff, diff_signatures
from gitml.review.importance import (
    ImportanceReview,
    compare_importance,
    parse_importance,
    slice_columns,
    top_k_of,
)
from gitml.review.revision import Revision
from gitml.review.timing import Timing
from gitml.tasks import Task, higher_is_better, score_column


@dataclass(frozen=True)
class MetricRow:
    name: str
    higher_is_better: bool
    base: float | None
    head: float | None
    delta: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def significantly_worse(self) -> bool:
        """The whole interval of Δ lies on the worse side of zero."""
        if self.low is None or self.high is None:
            return False
        return self.high < 0 if self.higher_is_better else self.low > 0

    @property
    def significantly_better(self) -> bool:
        """The whole interval of Δ lies on the better side of zero."""
        if self.low is None or self.high is None:
            return False
        return self.low > 0 if self.higher_is_better else self.high < 0


@dataclass(frozen=True)
class Comparison:
    base: Revision
    head: Revision
    status: str  # "comparable" | "first_model" | "not_comparable"
    reason: str | None
    metrics: list[MetricRow]
    slices: dict[str, dict[str, Any]]
    params_changed: list[tuple[str, Any, Any]]
    data_changed: list[tuple[str, str | None, str | None]]
    signature: SignatureDiff
    model_changed: bool
    data_shift: list[dict[str, Any]] = field(default_factory=list)
    conf_changed: list[str] = field(default_factory=list)
    recomputed: bool = False
    confidence: float = 0.95  # of every interval shown, from the policy in force
    head_timing: Timing | None = None  # measured at review time, never read from Git
    importance: ImportanceReview | None = None  # what each model relies on (importance.json)

    @property
    def policy_changes(self) -> list[tuple[str, Any, Any]]:
        """The promotion policy keys the head proposes to change."""
        return [c for c in self.params_changed if c[0].startswith("promotion.")]

    @property
    def significant_regressions(self) -> list[MetricRow]:
        """Metrics whose whole interval of Δ lies on the worse side of zero."""
        return [row for row in self.metrics if row.significantly_worse]

    @property
    def head_model_bytes(self) -> int | None:
        return recorded_model_bytes(self.head)


def recorded_model_bytes(rev: Revision) -> int | None:
    """A revision's model size as train recorded it (older revisions: in metrics.json)."""
    recorded = (rev.metadata or {}).get("model_file", {}).get("bytes")
    if recorded is None:
        recorded = (rev.metrics or {}).get("serving", {}).get("model_bytes")
    return recorded if isinstance(recorded, int) else None


def compare(
    base: Revision,
    head: Revision,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    base_predictions: pd.DataFrame | None = None,
    conf_changed: list[str] | None = None,
    head_timing: Timing | None = None,
) -> Comparison:
    """Everything the report and the gate need; `base_predictions` (from --recompute) replaces
    the base's committed predictions with the base model's scores on head's test rows."""
    if head.metrics is None or head.predictions is None:
        from gitml.errors import DataError

        raise DataError(
            f"the head revision ({head.short}) has no reports/metrics.json or predictions",
            hint="run the pipeline first: dvc repro",
        )
    task = head.task
    threshold = float(head.metrics.get("threshold", 0.5))
    base_threshold = float((base.metrics or {}).get("threshold", threshold))
    positive = positive_class(head) if task == "binary" else None
    names = list(head.metrics.get("metrics", {}))
    recomputed = base_predictions is not None
    base_rows = base.predictions
    if base_predictions is not None:  # scored on all of head's test rows; head commits a subset
        base_rows = base_predictions[base_predictions["row_id"].isin(head.predictions["row_id"])]
    status, reason = _comparability(base, head, recomputed)
    joined = None
    if status == "comparable":
        status, reason, joined = _pairing(base_rows, head.predictions, task)
    if joined is not None and task != "binary":
        metrics = _paired_task_metrics(
            joined, task, names=names, resamples=resamples, confidence=confidence, seed=seed
        )
    elif joined is not None:
        assert positive is not None
        metrics = _paired_metrics(
            joined,
            positive=positive,
            threshold=threshold,
            base_threshold=base_threshold,
            names=names,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
    else:
        base_values = (base.metrics or {}).get("metrics", {})
        metrics = [
            MetricRow(n, higher_is_better(n), base_values.get(n), head.metrics["metrics"].get(n))
            for n in names
        ]
    params_changed = _params_changed(
        base.params.raw if base.params else {}, head.params.raw if head.params else {}
    )
    return Comparison(
        base=base,
        head=head,
        status=status,
        reason=reason,
        metrics=metrics,
        slices=_slices(base, head),
        params_changed=params_changed,
        data_changed=_lock_changes(base, head),
        signature=diff_signatures(base.signature, head.signature),
        model_changed=_model_changed(base, head),
        data_shift=_data_shift(base, head),
        conf_changed=conf_changed or [],
        recomputed=recomputed,
        confidence=confidence,
        head_timing=head_timing,
        importance=review_importance(base, head),
    )


def review_importance(base: Revision, head: Revision) -> ImportanceReview:
    """Base against head in reports/importance.json, with the head's slice columns and top k."""
    raw = head.params.raw if head.params else None
    return compare_importance(
        parse_importance(base.importance, where=base.short),
        parse_importance(head.importance, where=head.short),
        slices=slice_columns(raw),
        top_k=top_k_of(raw),
        base_name=f"the base ({base.short})",
        head_name=f"the head ({head.short})",
    )


def positive_class(head: Revision) -> str:
    """The positive class the head model scores: its signature, else its params."""
    output = (head.signature or {}).get("output") or {}
    positive = output.get("positive_class")
    data = head.params.data if positive is None and head.params else None
    if data is not None:
        positive = data.positive_class
    if positive is None:
        from gitml.errors import DataError

        raise DataError(
            f"the head revision ({head.short}) names no positive class (models/signature.json "
            "output.positive_class, or params.yaml data.positive_class)",
            hint="run the pipeline first: dvc repro",
        )
    return str(positive)


def _comparability(base: Revision, head: Revision, recomputed: bool) -> tuple[str, str | None]:
    if base.metrics is None or base.predictions is None:
        return "first_model", f"the base ({base.short}) has no committed metrics"
    if base.task != head.task:
        return (
            "not_comparable",
            f"the base ({base.short}) is a {base.task} model and the head a {head.task} model: "
            "their metrics cannot be compared",
        )
    if recomputed:
        return "comparable", None
    ours = (head.metrics or {}).get("test_set", {}).get("fingerprint")
    theirs = base.metrics.get("test_set", {}).get("fingerprint")
    if not ours or not theirs:
        side = " and ".join(
            f"{rev.label} ({rev.short})" for rev, fp in ((base, theirs), (head, ours)) if not fp
        )
        return (
            "not_comparable",
            f"the test-set fingerprint is missing in reports/metrics.json of {side}: equal test "
            "rows cannot be assumed; rerun with --recompute to score the base model on head's "
            "test set",
        )
    if ours != theirs:
        return (
            "not_comparable",
            f"base and head were evaluated on different test rows (test-set fingerprint "
            f"{theirs} vs {ours}); rerun with --recompute to score the base model on head's "
            "test set",
        )
    return "comparable", None


def _pairing(
    base: pd.DataFrame, head: pd.DataFrame, task: Task = "binary"
) -> tuple[str, str | None, pd.DataFrame | None]:
    """Comparable only when both sides hold the same unique row ids with the same labels
    (multiclass: and the same classes); then also the two sides joined on row_id (columns
    suffixed `_head` and `_base`)."""
    problems = []
    joined = None
    if task == "multiclass":
        prefix = score_column("")
        classes = [sorted(c for c in f.columns if c.startswith(prefix)) for f in (base, head)]
        if classes[0] != classes[1]:
            names = [", ".join(c.removeprefix(prefix) for c in side) for side in classes]
            problems.append(f"the models predict different classes ({names[0]} vs {names[1]})")
            base = head = head.iloc[:0]
    for side, frame in (("base", base), ("head", head)):
        duplicated = int(frame["row_id"].duplicated().sum())
        if duplicated:
            problems.append(f"{duplicated:,} duplicated row_id values in {side}'s predictions")
    if not problems:
        joined = head.merge(base, on="row_id", suffixes=("_head", "_base"))
        matched = len(joined)
        if matched != len(head) or matched != len(base):
            problems.append(
                f"only {matched:,} row ids match ({len(base):,} base rows, {len(head):,} head rows)"
            )
        else:
            differ = int(
                (joined["actual_head"].astype(str) != joined["actual_base"].astype(str)).sum()
            )
            if differ:
                problems.append(f"{differ:,} of {matched:,} matched rows have different labels")
    if problems:
        return (
            "not_comparable",
            "the committed predictions cannot be paired: "
            + "; ".join(problems)
            + "; rerun with --recompute to score the base model on head's test set",
            None,
        )
    return "comparable", None, joined


def _paired_metrics(joined: pd.DataFrame, *, positive: str, **bootstrap: Any) -> list[MetricRow]:
    """Bootstrap every metric's difference over the paired rows (joined on row_id)."""
    y = (joined["actual_head"].astype(str) == positive).to_numpy(dtype=int)
    deltas = paired_bootstrap(
        y,
        joined["score_base"].to_numpy(dtype=float),
        joined["score_head"].to_numpy(dtype=float),
        **bootstrap,
    )
    return [
        MetricRow(n, higher_is_better(n), d.base, d.head, d.delta, d.low, d.high)
        for n, d in deltas.items()
    ]


def _paired_task_metrics(
    joined: pd.DataFrame, task: Task, *, names: list[str], **bootstrap: Any
) -> list[MetricRow]:
    """Multiclass and regression: bootstrap from each side's per-class probabilities or
    predicted values, both against head's actual values (equal to base's: `_pairing`)."""
    sides = []
    for suffix in ("_base", "_head"):
        columns = {c: c.removesuffix(suffix) for c in joined.columns if c.endswith(suffix)}
        frame = joined[list(columns)].rename(columns=columns)
        frame["actual"] = joined["actual_head"]
        sides.append(outputs_from_predictions(frame, task))
    deltas = paired_bootstrap_outputs(sides[0], sides[1], names=names, **bootstrap)
    return [
        MetricRow(n, higher_is_better(n), d.base, d.head, d.delta, d.low, d.high)
        for n, d in deltas.items()
    ]


def recompute_base_predictions(
    test: pd.DataFrame,
    output: np.ndarray,
    *,
    target: str,
    task: Task = "binary",
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Base-model outputs on head's test rows: the columns of predictions.csv a pairing needs
    (binary: `output` is the positive-class score; multiclass: probabilities in `classes`
    order; regression: predicted values)."""
    frame = pd.DataFrame(
        {"row_id": test.index.to_numpy(), "actual": test[target].astype(str).to_numpy()}
    )
    if task == "multiclass":
        for i, label in enumerate(classes or []):
            frame[score_column(label)] = output[:, i]
    elif task == "regression":
        frame["predicted"] = output
    else:
        frame["score"] = output
    return frame


def _slices(base: Revision, head: Revision) -> dict[str, dict[str, Any]]:
    base_slices = (base.slices or {}).get("slices", {})
    return {
        column: {"head": info, "base": base_slices.get(column)}
        for column, info in (head.slices or {}).get("slices", {}).items()
    }


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _params_changed(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    flat_base, flat_head = _flatten(base), _flatten(head)
    keys = sorted(set(flat_base) | set(flat_head))
    return [
        (k, flat_base.get(k), flat_head.get(k))
        for k in keys
        if flat_base.get(k) != flat_head.get(k)
    ]


def _lock_hashes(revision: Revision) -> dict[str, str]:
    """path -> md5 of what the revision's dvc.lock tracks by hash; empty without a lock."""
    return revision.lock.hashes() if revision.lock is not None else {}


def _lock_changes(base: Revision, head: Revision) -> list[tuple[str, str | None, str | None]]:
    """Data files (not code, not committed reports) whose hash differs between the locks."""
    old, new = _lock_hashes(base), _lock_hashes(head)
    paths = sorted(p for p in set(old) | set(new) if p.startswith("data/"))
    return [(p, old.get(p), new.get(p)) for p in paths if old.get(p) != new.get(p)]


def _data_shift(base: Revision, head: Revision) -> list[dict[str, Any]]:
    """Per-column shift between the training-data profiles the two models recorded."""
    old = (base.metadata or {}).get("training", {}).get("profile")
    new = (head.metadata or {}).get("training", {}).get("profile")
    return compare_profiles(old, new) if old and new else []


def _model_changed(base: Revision, head: Revision) -> bool:
    return (
        base.model_md5 != head.model_md5
        or (base.metrics or {}).get("metrics") != (head.metrics or {}).get("metrics")
        or base.signature != head.signature
    )
