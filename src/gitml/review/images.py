"""PNG versions of the report's plots (matplotlib), for teams that publish images with CML."""

from __future__ import annotations

from pathlib import Path

from gitml.review.compare import Comparison


def write_images(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Write roc.png, precision_recall.png and confusion.png into `out_dir`; return them."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    revisions = (comparison.base, comparison.head)
    for key, x, y, title in (
        ("roc", "fpr", "tpr", "ROC"),
        ("precision_recall", "recall", "precision", "Precision-recall"),
    ):
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        for rev in revisions:
            points = rev.curves.get(key) or []
            if points:
                ax.plot([p[x] for p in points], [p[y] for p in points], label=rev.label)
        ax.set(title=title, xlabel=x, ylabel=y, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="lower right" if key == "roc" else "lower left")
        written[key] = _save(fig, out_dir / f"{key}.png")
        plt.close(fig)

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


def _save(fig, path: Path) -> Path:
    from gitml.files import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
