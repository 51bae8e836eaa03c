"""PNG versions of the report's plots (matplotlib), for teams that publish images with CML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gitml.review.compare import Comparison
from gitml.tasks import Task


def write_images(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write the task's plots into `out_dir` and return them: binary roc.png,
    precision_recall.png; multiclass roc_ovr.png; regression predicted_vs_actual.png and
    residuals.png; classification also confusion.png."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    revisions = (comparison.base, comparison.head)
    task = comparison.head.task
    for key, x, y, title in _CURVES[task]:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        for rev in revisions:
            points = rev.curves.get(key) or []
            for name, rows in _by_class(points).items():
                label = rev.label if name is None else f"{rev.label}: {name}"
                style = "." if task == "regression" else "-"
                ax.plot([p[x] for p in rows], [p[y] for p in rows], style, label=label)
        if task == "regression":
            ax.set(title=title, xlabel=x, ylabel=y)
            # the reference a reader judges the points against: y = x, or a zero residual
            if key == "predicted_vs_actual":
                low, high = (
                    min(ax.get_xlim()[0], ax.get_ylim()[0]),
                    max(ax.get_xlim()[1], ax.get_ylim()[1]),
                )
                ax.plot([low, high], [low, high], color="grey", lw=0.8, label="predicted = actual")
            else:
                ax.axhline(0, color="grey", lw=0.8)
        else:
            ax.set(title=title, xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower left" if key == "precision_recall" else "lower right", fontsize=7)
        written[key] = _save(fig, out_dir / f"{key}.png")
        plt.close(fig)
    if task == "regression":  # no classes: no confusion matrix
        return written

    frames = [(rev.label, rev.predictions) for rev in revisions if rev.predictions is not None]
    if frames:
        fig, axes = plt.subplots(1, len(frames), figsize=(4 * len(frames), 3.5), dpi=100)
        for ax, (label, predictions) in zip(
            list(getattr(axes, "flat", [axes])), frames, strict=True
        ):
            table = predictions.groupby(["actual", "predicted"]).size().unstack(fill_value=0)
            classes = sorted(set(table.index) | set(table.columns))
            table = table.reindex(index=classes, columns=classes, fill_value=0)
            values = table.to_numpy()
            ax.imshow(values, cmap="Blues")
            for i in range(len(classes)):
                for j in range(len(classes)):
                    dark = values[i, j] > values.max() / 2  # white text on dark cells
                    color = "white" if dark else "black"
                    ax.text(j, i, f"{values[i, j]:,}", ha="center", va="center", color=color)
            ax.set(title=label, xlabel="predicted", ylabel="actual")
            ax.set_xticks(range(len(classes)), classes)
            ax.set_yticks(range(len(classes)), classes)
        written["confusion"] = _save(fig, out_dir / "confusion.png")
        plt.close(fig)
    return written


# the images each task's report embeds: (plot data key, x, y, title)
_CURVES: dict[Task, tuple[tuple[str, str, str, str], ...]] = {
    "binary": (
        ("roc", "fpr", "tpr", "ROC"),
        ("precision_recall", "recall", "precision", "Precision-recall"),
    ),
    "multiclass": (("roc_ovr", "fpr", "tpr", "ROC, one vs rest"),),
    "regression": (
        ("predicted_vs_actual", "actual", "predicted", "Predicted vs actual"),
        ("residuals", "predicted", "residual", "Residuals"),
    ),
}


def _by_class(points: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """One curve, or one per class (multiclass rows carry `class`)."""
    if not points or "class" not in points[0]:
        return {None: points} if points else {}
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for point in points:
        groups.setdefault(str(point["class"]), []).append(point)
    return groups


def _save(fig, path: Path) -> Path:
    from gitml.files import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
