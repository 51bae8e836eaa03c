"""One `gitml monitor` run: read the current data, find each version's reference, compare.

For each model version that served the data: profile its reference, count the current
chunks on that profile (counts merge, so memory stays bounded whatever the batch size),
compare; then judge every column test of the run together. With `--labels`, the labels are
joined by request id and performance is computed per version and window against the
promotion floors; classifiers also get performance estimated from calibrated scores, with or
without labels. Only the slim columns performance needs (ids, time, version, outputs) are
kept in memory. Nothing is written until everything was computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import DataError
from gitml.monitor.partial import ALL as _ALL
from gitml.monitor.partial import Partial, count_chunk, count_parts, plan_counting
from gitml.monitor.ranking import rank_drift
from gitml.monitor.reference import (
    UNRELEASED,
    Reference,
    released_reference,
    revision_reference,
    workspace_reference,
)
from gitml.monitor.report import column_reason, quality_reason, window_reason
from gitml.monitor.result import DriftReport, MonitorResult, PerformanceWindow
from gitml.monitor.sources import CurrentData, Window, open_current

if TYPE_CHECKING:
    import pandas as pd

    from gitml.cluster import Engine
    from gitml.config.schema import Params
    from gitml.project import Project

MONITOR_JSON, MONITOR_MD, MONITOR_HTML = "monitor.json", "monitor.md", "monitor.html"
_SLIM = ("request_id", "record", "timestamp", "model_version")


@dataclass(frozen=True)
class Outcome:
    """A run's result and what the user should know beside it."""

    result: MonitorResult
    notes: list[str] = field(default_factory=list)


def run_monitor(
    project: Project,
    params: Params,
    *,
    current: Path,
    window: Window | None = None,
    reference: str | None = None,
    labels: Path | None = None,
    workdir: Path,
    now: datetime | None = None,
    estimate: bool = True,
    engine: Engine | None = None,
) -> Outcome:
    """Monitor `current` against its references; see the module docstring. `estimate` False:
    no estimated performance without labels (drift and quality keep bounded memory).
    `engine`: count the partitions of `current` on a cluster (`gitml.monitor.partial`)
    instead of its chunks in this process; the statistics are the same."""
    settings = params.monitor
    workspace_signature = _workspace_signature(project)
    outputs = _output_names(workspace_signature)
    source = open_current(
        current,
        root=project.root,
        inputs=[str(i["name"]) for i in workspace_signature["inputs"]],
        outputs=outputs,
        model_name=params.project.model_name,
        window=window or Window(),
    )
    refs = _references(project, params, source, reference, workdir)
    from gitml.monitor.alarms import judge
    from gitml.monitor.drift import compare
    from gitml.monitor.sketch import monitored_columns, profile_reference

    profiles = {
        key: profile_reference(ref.frame, monitored_columns(ref.scorer.signature), settings)
        for key, ref in refs.items()
    }
    scorer = next(iter(refs.values())).scorer
    label_table = None
    if labels is not None:  # read (and refused) before the data is streamed
        from gitml.monitor.labelled import read_labels

        label_table = read_labels(
            labels, target=scorer.target, columns=settings.labels, task=scorer.task
        )
    needs_scoring = not source.has_outputs(scorer.outputs)
    # performance needs the slim rows (ids, time, version, outputs); drift only the counts
    keep_rows = labels is not None or (
        estimate and scorer.task != "regression" and any(r.calibrator for r in refs.values())
    )
    plan = plan_counting(
        refs,
        profiles,
        scorer.outputs,
        needs_scoring=needs_scoring,
        keep_rows=keep_rows,
        ids=labels is not None,
    )
    if engine is None:
        tally = Partial()
        scorers = {key: ref.scorer for key, ref in refs.items()}
        for chunk in source.chunks():
            tally.add(count_chunk(chunk, plan, scorers))
    else:  # the partitions counted on the cluster, merged here in order
        tally = count_parts(engine, source, plan, refs)
    counts, slim, rows = tally.counts, tally.slim, tally.rows
    _check_rows(source, rows, settings.min_rows)

    reports, judged = [], [ref for key, ref in refs.items() if key in counts]
    for key, ref in refs.items():
        if key not in counts:
            continue
        columns, quality = compare(profiles[key], counts[key], settings)
        reports.append(
            DriftReport(
                model_version=ref.version,
                reference=ref.description,
                reference_rows=len(ref.frame),
                current_rows=int(counts[key].rows),
                columns=columns,
                quality=quality,
            )
        )
    # judged together first (one family of tests), then each led by what its model relies on
    reports = [
        rank_drift(report, ref.importance, note=ref.importance_note)
        for report, ref in zip(judge(reports, settings), judged, strict=True)
    ]

    notes: list[str] = []
    performance: list[PerformanceWindow] = []
    if slim:
        performance = _performance(params, refs, slim, labels, label_table, notes)

    several = len(reports) > 1
    reasons = [
        column_reason(c, r.model_version if several else None)
        for r in reports
        for c in r.columns
        if c.drifted
    ]
    reasons += [
        quality_reason(f, r.model_version if several else None)
        for r in reports
        for f in r.quality
        if f.alarm
    ]
    reasons += [
        window_reason(w, m) for w in performance if w.alarm for m in w.realised if m.below_floor
    ]
    alert = bool(reasons) or any(w.alarm for w in performance)
    result = MonitorResult(
        created=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        task=scorer.task,
        model_name=params.project.model_name,
        current=source.describe(),
        current_rows=rows,
        alpha=settings.alpha,
        correction=settings.correction,
        drift=reports,
        performance=performance,
        alert=alert,
        reasons=reasons,
        assumptions=_assumptions(scorer.task, performance),
    )
    return Outcome(result, notes)


def write_outputs(result: MonitorResult, out: Path) -> list[Path]:
    """monitor.json, monitor.md and monitor.html in `out`, rendered first, then replaced
    together (`gitml.files.atomic_paths`): a failure leaves the previous three as they were."""
    import json

    from gitml.files import atomic_paths
    from gitml.monitor.html import render_html
    from gitml.monitor.report import render_markdown

    texts = {
        MONITOR_JSON: json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n",
        MONITOR_MD: render_markdown(result),
        MONITOR_HTML: render_html(result),
    }
    targets = [out / name for name in texts]
    with atomic_paths(*targets) as staged:
        for path, text in zip(staged, texts.values(), strict=True):
            path.write_text(text, encoding="utf-8")
    return targets


def _workspace_signature(project: Project) -> dict[str, Any]:
    import json

    from gitml.errors import ModelError
    from gitml.project import OUTPUTS

    path = project.root / OUTPUTS["signature"]
    if not path.is_file():
        raise ModelError(
            f"{path}: not found; monitoring reads the model's inputs from it",
            hint="run `dvc repro` (or check out a commit that has it)",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        _ = [str(i["name"]) for i in data["inputs"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{path}: not a readable signature ({err})") from err
    return dict(data)


def _output_names(signature: dict[str, Any]) -> list[str]:
    from gitml.tasks import output_names

    output = signature.get("output", {})
    return output_names(output.get("task", "binary"), output.get("classes") or [])


def _references(
    project: Project,
    params: Params,
    source: CurrentData,
    reference: str | None,
    workdir: Path,
) -> dict[str, Reference]:
    """The reference of each version key: `_ALL` for one reference, else per model_version."""
    if reference is not None:
        as_file = Path(reference)
        if as_file.is_file():
            return {_ALL: workspace_reference(project, params, split=as_file)}
        if "@" in reference or "#" in reference:
            return {_ALL: released_reference(project, reference, workdir, params)}
        return {_ALL: revision_reference(project, reference, workdir, params)}
    if not source.has_versions:
        return {_ALL: workspace_reference(project, params)}
    versions = source.versions()
    if not versions:
        _check_rows(source, 0, params.monitor.min_rows)
    refs: dict[str, Reference] = {}
    name = params.project.model_name
    for version in versions:
        if version == UNRELEASED:
            refs[version] = workspace_reference(project, params)
        else:
            refs[version] = released_reference(project, f"{name}@{version}", workdir, params)
    return refs


def _unify_categories(frames: list[pd.DataFrame]) -> None:
    """Give each category column one set of categories across `frames`, so that the concat
    keeps it a category (different categories would make it one Python string per row)."""
    import pandas as pd
    from pandas.api.types import union_categoricals

    for name in frames[0].columns:
        if not all(isinstance(f[name].dtype, pd.CategoricalDtype) for f in frames):
            continue
        union = union_categoricals([f[name] for f in frames], ignore_order=True).categories
        for frame in frames:
            frame[name] = frame[name].cat.set_categories(union)


def _check_rows(source: CurrentData, rows: int, minimum: int) -> None:
    where = f" between {source.window.describe()}" if source.kind == "log" else ""
    if rows == 0:
        raise DataError(
            f"{source.path}: no rows{where}",
            hint="widen --since/--until, or check the path" if where else None,
        )
    if rows < minimum:
        raise DataError(
            f"{source.path}: {rows:,} rows{where}, fewer than monitor.min_rows ({minimum:,}): "
            "too few to judge drift",
            hint="monitor a larger batch or window, or lower monitor.min_rows in conf/monitor/",
        )


def _performance(
    params: Params,
    refs: dict[str, Reference],
    slim: list[pd.DataFrame],
    labels: Path | None,
    label_table: pd.DataFrame | None,
    notes: list[str],
) -> list[PerformanceWindow]:
    import pandas as pd

    from gitml.monitor.performance import performance_windows

    _unify_categories(slim)
    scored = pd.concat(slim, ignore_index=True)
    slim.clear()  # the chunks' copies go: one copy of the slim rows from here on
    if labels is not None:
        from gitml.monitor.labelled import join_labels

        if scored["request_id"].isna().all():
            raise DataError(
                f"{labels}: labels are joined by request id, but the current data has no "
                "request_id column",
                hint="monitor the prediction log, or a batch with request_id and record columns",
            )
        scored, unmatched = join_labels(scored, label_table)
        if unmatched:
            notes.append(f"{unmatched:,} labels in {labels} match no prediction (ignored)")
    windows: list[PerformanceWindow] = []
    floors = {str(k): float(v) for k, v in params.promotion.minimums.items()}
    for key, ref in refs.items():
        part = scored if key == _ALL else scored[scored["model_version"] == ref.version]
        if not len(part):
            continue
        scorer = ref.scorer
        windows += performance_windows(
            part,
            task=scorer.task,
            classes=scorer.classes,
            positive_class=scorer.positive_class,
            threshold=scorer.threshold,
            floors=floors,
            calibrator=ref.calibrator,
            params=params.monitor,
        )
    return windows


def _assumptions(task: str, performance: list[PerformanceWindow]) -> list[str]:
    if task == "regression" or not any(w.estimated for w in performance):
        return []
    from gitml.monitor.estimate import ASSUMPTIONS

    return list(ASSUMPTIONS)
