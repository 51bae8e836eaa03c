"""Stage `card`: render the model card from the committed outputs of the other stages."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gitml.config.schema import Params
from gitml.files import write_text
from gitml.registry.card import render_card, require_card
from gitml.review.bootstrap import bootstrap_intervals, bootstrap_output_intervals
from gitml.stages._runner import run_stage
from gitml.vcs import read_lock


def _configure(parser: argparse.ArgumentParser) -> None:
    for name in ("metadata", "signature", "metrics", "slices", "validation", "predictions"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--importance", type=Path, required=True, help="what the model relies on")
    parser.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="read, not a dep")
    parser.add_argument("--out", type=Path, required=True)


def _card(args: argparse.Namespace, params: Params) -> None:
    """Write the model card: purpose, data, metrics with intervals, slices, lineage."""
    card = require_card(params)  # before the bootstrap: it needs the card's resamples
    metrics = _json(args.metrics)
    names = [m for m, v in metrics.get("metrics", {}).items() if v is not None]
    settings: dict[str, Any] = {
        "names": names,
        "resamples": card.interval_resamples,
        "seed": params.promotion.bootstrap.seed,
        "confidence": params.promotion.bootstrap.confidence,
    }
    if params.data.task == "binary":
        y, score = _predictions(args.predictions, params.data.positive)
        intervals = bootstrap_intervals(y, score, threshold=params.evaluate.threshold, **settings)
    else:  # per-class probabilities or predicted values, as predictions.csv holds them
        # imported here: pandas and the evaluation module, which a binary card never uses
        import pandas as pd

        from gitml.evaluate.evaluation import outputs_from_predictions

        frame = pd.read_csv(args.predictions, dtype={"actual": str, "predicted": str})
        outputs = outputs_from_predictions(frame, params.data.task, source=str(args.predictions))
        intervals = bootstrap_output_intervals(outputs, **settings)
    text = render_card(
        params=params,
        metadata=_json(args.metadata),
        signature=_json(args.signature),
        metrics=metrics,
        intervals=intervals,
        slices=_json(args.slices),
        validation=_json(args.validation),
        importance=_json(args.importance),
        lineage={"dvc_lock": _lock_hashes(args.lock, str(args.out))},
    )
    write_text(args.out, text)
    print(f"[card] model card with {len(names)} metrics -> {args.out}")


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _predictions(path: Path, positive: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    y = np.array([row["actual"] == positive for row in rows], dtype=int)
    return y, np.array([float(row["score"]) for row in rows])


def _lock_hashes(lock: Path, own: str) -> dict[str, str]:
    """The data and model hashes dvc.lock records so far.

    No commit: the card is committed in the very commit it would name, so a commit here is
    stale on main and changes on every run. Released and fetched copies carry the tagged
    commit (`stamp_release`).
    """
    hashes: dict[str, str] = {}
    for stage in read_lock(lock).stages.values():
        for entry in (*stage.deps[:1], *stage.outs):
            if entry.md5 and entry.path != own and not entry.path.endswith(".py"):
                hashes.setdefault(entry.path, entry.md5)
    return hashes


def main(argv: list[str] | None = None) -> int:
    return run_stage("card", _configure, _card, argv)


if __name__ == "__main__":
    sys.exit(main())
