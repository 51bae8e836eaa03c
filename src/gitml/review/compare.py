"""Compare two revisions' committed outputs: metrics with paired intervals, slices, params,
data, model and lineage. Values in, values out: the caller loads the revisions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gitml.data.profile import compare_profiles
from gitml.evaluate.metrics import HIGHER_IS_BETTER
from gitml.review.bootstrap import paired_bootstrap
from gitml.review.revision import Revision


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
    def gain(self) -> float | None:
        """The change signed so that positive is better."""
        if self.delta is None:
            return None
        return self.delta if self.higher_is_better else -self.delta


@dataclass(frozen=True)
class SignatureDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # "name: what changed"
    incompatible: list[str] = field(default_factory=list)  # the changes old clients break on
    outputs_changed: bool = False

    @property
    def breaking(self) -> list[str]:
        """Reasons a client of the old signature would break against the new one."""
        reasons = [f"input '{c}' removed" for c in self.removed]
        reasons += [f"new required input '{c}'" for c in self.added]
        reasons += [f"input {c}" for c in self.incompatible]
        if self.outputs_changed:
            reasons.append("output classes changed")
        return reasons


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
    confidence: float = 0.95  # of the bootstrap intervals, from the policy


def compare(
    base: Revision,
    head: Revision,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    base_predictions: pd.DataFrame | None = None,
    conf_changed: list[str] | None = None,
) -> Comparison:
    """Everything the report and the gate need; `base_predictions` (from --recompute) replaces
    the base's committed predictions with the base model's scores on head's test rows."""
    if head.metrics is None or head.predictions is None:
        from gitml.errors import DataError

        raise DataError(
            f"the head revision ({head.short}) has no reports/metrics.json or predictions",
            hint="run the pipeline first: dvc repro",
        )
    threshold = float(head.metrics.get("threshold", 0.5))
    base_threshold = float((base.metrics or {}).get("threshold", threshold))
    positive = (head.params or {}).get("data", {}).get("positive_class", "Yes")
    names = list(head.metrics.get("metrics", {}))
    recomputed = base_predictions is not None
    status, reason = _comparability(base, head, recomputed)
    if status == "comparable":
        metrics = _paired_metrics(
            base_predictions if recomputed else base.predictions,
            head.predictions,
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
            MetricRow(n, HIGHER_IS_BETTER[n], base_values.get(n), head.metrics["metrics"].get(n))
            for n in names
        ]
    return Comparison(
        base=base,
        head=head,
        status=status,
        reason=reason,
        metrics=metrics,
        slices=_slices(base, head),
        params_changed=_params_changed(base.params or {}, head.params or {}),
        data_changed=_lock_changes(base.lock or {}, head.lock or {}),
        signature=_signature_diff(base.signature, head.signature),
        model_changed=_model_changed(base, head),
        data_shift=_data_shift(base, head),
        conf_changed=conf_changed or [],
        recomputed=recomputed,
        confidence=confidence,
    )


def _comparability(base: Revision, head: Revision, recomputed: bool) -> tuple[str, str | None]:
    if base.metrics is None or base.predictions is None:
        return "first_model", f"the base ({base.short}) has no committed metrics"
    if recomputed:
        return "comparable", None
    ours = (head.metrics or {}).get("test_set", {}).get("fingerprint")
    theirs = base.metrics.get("test_set", {}).get("fingerprint")
    if ours != theirs:
        return (
            "not_comparable",
            f"base and head were evaluated on different test rows (test-set fingerprint "
            f"{theirs} vs {ours}); rerun with --recompute to score the base model on head's "
            "test set",
        )
    return "comparable", None


def _paired_metrics(
    base_pred: pd.DataFrame, head_pred: pd.DataFrame, *, positive: str, **bootstrap: Any
) -> list[MetricRow]:
    """Join both sides on row_id and bootstrap every metric's difference over those rows."""
    joined = head_pred.merge(base_pred, on="row_id", suffixes=("_head", "_base"))
    y = (joined["actual_head"].astype(str) == positive).to_numpy(dtype=int)
    deltas = paired_bootstrap(
        y,
        joined["score_base"].to_numpy(dtype=float),
        joined["score_head"].to_numpy(dtype=float),
        **bootstrap,
    )
    return [
        MetricRow(n, HIGHER_IS_BETTER[n], d.base, d.head, d.delta, d.low, d.high)
        for n, d in deltas.items()
    ]


def recompute_base_predictions(
    test: pd.DataFrame, score: np.ndarray, *, target: str
) -> pd.DataFrame:
    """Base-model scores on head's test rows: the columns of predictions.csv a pairing needs."""
    return pd.DataFrame(
        {
            "row_id": test.index.to_numpy(),
            "actual": test[target].astype(str).to_numpy(),
            "score": score,
        }
    )


def _slices(base: Revision, head: Revision) -> dict[str, dict[str, Any]]:
    base_slices = (base.slices or {}).get("slices", {})
    return {
        column: {"head": info, "base": base_slices.get(column)}
        for column, info in (head.slices or {}).get("slices", {}).items()
    }


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _params_changed(base: dict[str, Any], head: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    flat_base, flat_head = _flatten(base), _flatten(head)
    keys = sorted(set(flat_base) | set(flat_head))
    return [
        (k, flat_base.get(k), flat_head.get(k))
        for k in keys
        if flat_base.get(k) != flat_head.get(k)
    ]


def _lock_hashes(lock: dict[str, Any]) -> dict[str, str]:
    """path -> md5 of every dependency and output that DVC tracks by hash."""
    hashes: dict[str, str] = {}
    for stage in (lock.get("stages") or {}).values():
        for entry in [*(stage.get("deps") or []), *(stage.get("outs") or [])]:
            if entry.get("md5"):
                hashes[entry["path"]] = entry["md5"]
    return hashes


def _lock_changes(
    base: dict[str, Any], head: dict[str, Any]
) -> list[tuple[str, str | None, str | None]]:
    """Data files (not code, not committed reports) whose hash differs between the locks."""
    old, new = _lock_hashes(base), _lock_hashes(head)
    paths = sorted(p for p in set(old) | set(new) if p.startswith("data/"))
    return [(p, old.get(p), new.get(p)) for p in paths if old.get(p) != new.get(p)]


def _signature_diff(base: dict[str, Any] | None, head: dict[str, Any] | None) -> SignatureDiff:
    if not base or not head:
        return SignatureDiff()
    old = {i["name"]: i for i in base.get("inputs", [])}
    new = {i["name"]: i for i in head.get("inputs", [])}
    changed: list[str] = []
    incompatible: list[str] = []
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        lost = sorted(set(a.get("categories") or []) - set(b.get("categories") or []))
        gained = sorted(set(b.get("categories") or []) - set(a.get("categories") or []))
        breaking = []
        if a.get("type") != b.get("type"):
            breaking.append(f"'{name}': type {a.get('type')} -> {b.get('type')}")
        if lost:
            breaking.append(f"'{name}': categories removed {lost}")
        if a.get("nullable") and not b.get("nullable"):
            breaking.append(f"'{name}': no longer nullable (type check)")
        incompatible += breaking
        changed += breaking + ([f"'{name}': categories added {gained}"] if gained else [])
    return SignatureDiff(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=changed,
        incompatible=incompatible,
        outputs_changed=base.get("output", {}).get("classes")
        != head.get("output", {}).get("classes"),
    )


def _data_shift(base: Revision, head: Revision) -> list[dict[str, Any]]:
    """Per-column shift between the training-data profiles the two models recorded."""
    old = (base.metadata or {}).get("training", {}).get("profile")
    new = (head.metadata or {}).get("training", {}).get("profile")
    return compare_profiles(old, new) if old and new else []


def _model_changed(base: Revision, head: Revision) -> bool:
    model_path = "models/model.skops"
    base_md5 = _lock_hashes(base.lock or {}).get(model_path)
    head_md5 = _lock_hashes(head.lock or {}).get(model_path)
    return (
        base_md5 != head_md5
        or (base.metrics or {}).get("metrics") != (head.metrics or {}).get("metrics")
        or base.signature != head.signature
    )
