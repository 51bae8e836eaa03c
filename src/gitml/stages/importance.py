"""Stage `importance`: what the model relies on, as permutation importance of every input
column on the test rows (reports/importance.json, read by the card, the review and monitor)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_table
from gitml.files import write_json
from gitml.model.persist import load_trained_model
from gitml.model.scoring import fix_summation_order
from gitml.review.permutation import IMPORTANCE_VERSION, permutation_importance
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True, help="the model's SHA-256")
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)


def _importance(args: argparse.Namespace, params: Params) -> None:
    """Shuffle each input column of the test rows in turn and measure the primary metric."""
    pipeline = fix_summation_order(load_trained_model(args.model, args.metadata))
    data, cfg = params.data, params.importance
    test = read_table(args.test, categories=data.categorical)
    result = permutation_importance(
        pipeline,
        test,
        features=data.features,
        task=data.task,
        target=data.target,
        positive_class=data.positive_class,
        repeats=cfg.repeats,
        resamples=cfg.resamples,
        confidence=cfg.confidence,
        seed=params.seed,
        max_rows=cfg.max_rows,
    )
    head = {"model_name": params.project.model_name, "estimator": params.model.name}
    write_json(args.out, {"importance_version": IMPORTANCE_VERSION, **head, **result})
    rows, top = result["rows"], result["columns"][0]
    print(
        f"[importance] {rows['used']:,} of {rows['test']:,} test rows, {len(result['columns'])} "
        f"columns; first: {top['name']} (importance {top['importance']} in {result['metric']}) "
        f"-> {args.out}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_stage("importance", _configure, _importance, argv)


if __name__ == "__main__":
    sys.exit(main())
