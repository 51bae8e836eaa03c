"""The report's Plots section: Mermaid curve charts, residual summary, confusion matrices.

GitHub renders all of it from the Markdown text; `gitml.review.images` draws PNG versions
of the same plots for teams that publish images with CML.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from gitml.labels import MISSING_LABEL, label_category
from gitml.review.compare import Comparison
from gitml.review.revision import Revision
from gitml.tasks import is_classification

_GRID = [round(x, 2) for x in np.linspace(0, 1, 21)]
# (line colour, legend marker): a blue and an orange with at least 3:1 contrast against both
# GitHub's light (#ffffff) and dark (#0d1117) backgrounds, told apart with any colour vision
_LINE = {"base": ("#2f81f7", "🟦"), "head": ("#e8710a", "🟧")}


def render_plots(c: Comparison, images: dict[str, str]) -> str:
    """The Plots section: linked images, curve charts, residuals, confusion matrices."""
    lines = ["### Plots"]
    if images:
        lines += ["", " ".join(f"![{name}]({path})" for name, path in images.items())]
    roc = _curve_chart("ROC", c, "roc", "fpr", "tpr", "false positive rate", "true positive rate")
    pr = _curve_chart(
        "Precision-recall", c, "precision_recall", "recall", "precision", "recall", "precision"
    )
    lines += [chart for chart in (roc, pr) if chart]
    if c.head.task == "multiclass":
        roc = _curve_chart(
            "ROC, one vs rest (macro mean)", c, "roc_ovr", "fpr", "tpr",
            "false positive rate", "true positive rate",
        )  # fmt: skip
        lines += [roc] if roc else []
    if c.head.task == "regression":
        lines += _residual_summary(c)
    matrices = [
        _confusion(_side(role, rev), rev.predictions)
        for role, rev in _sides(c)
        if is_classification(rev.task)
    ]
    matrices = [m for m in matrices if m]
    if matrices:
        lines += ["", "Confusion matrices (rows: actual, columns: predicted):", "", *matrices]
    return "\n".join(lines) if len(lines) > 1 else ""


def _curve_chart(title: str, c: Comparison, key: str, x: str, y: str, xl: str, yl: str) -> str:
    """A Mermaid line chart of base and head, coloured for GitHub's light and dark themes.

    xychart-beta draws no legend, so one goes right above the chart: a coloured square per
    line, naming the side, its label and its commit. The palette lists only the lines drawn,
    so a missing base curve cannot shift head onto base's colour.
    """
    series = []
    for role, rev in _sides(c):
        points = rev.curves.get(key) or []
        if points:
            series.append((_LINE[role], _side(role, rev), _resample(points, x, y)))
    if not series:
        return ""
    palette = ", ".join(colour for (colour, _), _, _ in series)
    init = {"themeVariables": {"xyChart": {"plotColorPalette": palette}}}
    legend = " · ".join(f"{marker} {name}" for (_, marker), name, _ in series)
    body = [
        "",
        f"**{title}**: {legend}",
        "",
        "```mermaid",
        f"%%{{init: {json.dumps(init)}}}%%",
        "xychart-beta",
        f'    title "{title}"',
        f'    x-axis "{xl}" [{", ".join(f"{v:g}" for v in _GRID)}]',
        f'    y-axis "{yl}" 0 --> 1',
    ]
    body += [f"    line [{', '.join(f'{v:.3f}' for v in values)}]" for _, _, values in series]
    body.append("```")
    return "\n".join(body)


def _residual_summary(c: Comparison) -> list[str]:
    """Regression: where the errors lie, from the committed residual plot data."""
    lines = []
    for role, rev in _sides(c):
        points = rev.curves.get("residuals") or []
        if not points:
            continue
        residual = np.array([p["residual"] for p in points], dtype=float)
        low, mid, high = np.percentile(residual, [5, 50, 95])
        lines.append(
            f"- {_side(role, rev)}: residual (actual − predicted) median {mid:+.4g}, "
            f"5–95 % range [{low:+.4g}, {high:+.4g}] over {len(points):,} plotted rows"
        )
    return ["", "Residuals:", "", *lines] if lines else []


def _sides(c: Comparison) -> list[tuple[str, Revision]]:
    return [("base", c.base), ("head", c.head)]


def _side(role: str, rev: Revision) -> str:
    """The side, its label and its commit: base `main` (1a2b3c4d); a commit is named once."""
    if rev.sha is None:
        return f"{role} `{rev.label}`"
    if len(rev.label) >= 7 and rev.sha.startswith(rev.label.lower()):
        return f"{role} `{rev.short}`"
    return f"{role} `{rev.label}` ({rev.short})"


def _resample(points: list[dict[str, Any]], x: str, y: str) -> list[float]:
    """The curve's y at evenly spaced x (Mermaid draws a line's values at even steps); curves
    of several classes (rows with `class`) are averaged, each resampled on its own."""
    if points and "class" in points[0]:
        by_class: dict[str, list[dict[str, Any]]] = {}
        for point in points:
            by_class.setdefault(str(point["class"]), []).append({x: point[x], y: point[y]})
        curves = [_resample(rows, x, y) for rows in by_class.values()]
        return list(np.mean(curves, axis=0))
    xs = np.array([p[x] for p in points], dtype=float)
    ys = np.array([p[y] for p in points], dtype=float)
    order = np.argsort(xs, kind="stable")
    return list(np.interp(_GRID, xs[order], ys[order]))


def _confusion(label: str, predictions: Any) -> str:
    if predictions is None or "predicted" not in predictions:
        return ""
    # count the raw pairs (a missing label kept), then relabel the few distinct ones
    pairs = predictions.groupby(["actual", "predicted"], dropna=False).size()
    counts: dict[tuple[str, str], int] = {}
    for (actual, predicted), n in pairs.items():
        key = (label_category(actual), label_category(predicted))
        counts[key] = counts.get(key, 0) + int(n)
    classes = sorted({c for pair in counts for c in pair}, key=lambda v: (v == MISSING_LABEL, v))
    lines = [f"**{label}**", "", "| actual \\ predicted | " + " | ".join(classes) + " |"]
    lines.append("| --- |" + " ---: |" * len(classes))
    for actual in classes:
        cells = " | ".join(f"{counts.get((actual, p), 0):,}" for p in classes)
        lines.append(f"| {actual} | {cells} |")
    return "\n".join(lines) + "\n"
