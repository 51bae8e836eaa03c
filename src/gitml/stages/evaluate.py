"""Stage `evaluate`: score the test set with the saved pipeline; metrics, slices, plots, and
the calibrator `gitml monitor` estimates performance with before labels arrive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_table
from gitml.evaluate.calibrator import fit_calibrator
from gitml.evaluate.evaluation import evaluate_output, evaluate_scores
from gitml.files import atomic_path, write_json
from gitml.model.persist import load_trained_model
from gitml.model.scoring import fix_summation_order, positive_index, predict_frame
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True, help="the model's SHA-256")
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--slices", type=Path, required=True)
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True, help="directory for curve data")
    parser.add_argument(
        "--calibrator", type=Path, required=True, help="isotonic calibrator of the test scores"
    )


def _evaluate(args: argparse.Namespace, params: Params) -> None:
    """Evaluate the model exactly as it will be served: the saved pipeline, loaded via skops."""
    pipeline = fix_summation_order(load_trained_model(args.model, args.metadata))
    test = read_table(args.test, categories=params.data.categorical)
    data = params.data
    output = predict_frame(pipeline, test, features=data.features, task=data.task)
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    # no timings here: metrics.json is committed and must be the same on every run; the gate
    # measures prediction time at review time and reads the size from metadata.json
    if data.task == "binary":
        output = output[:, positive_index(pipeline, data.positive)]
        result = evaluate_scores(test, output, params)
    else:
        result = evaluate_output(test, output, params, classes=classes)
    truth = test[data.target].astype(str).to_numpy()
    calibrator = fit_calibrator(
        truth, output, task=data.task, classes=classes, positive_class=data.positive_class
    )
    for name, rows in result.plots.items():
        write_json(args.plots / f"{name}.json", rows)
    with atomic_path(args.predictions) as tmp:
        result.predictions.to_csv(tmp, index=False)
    write_json(args.slices, result.slices)
    write_json(args.metrics, result.metrics)
    write_json(args.calibrator, calibrator)
    headline = ", ".join(
        f"{k} {v:.4f}" for k, v in result.metrics["metrics"].items() if v is not None
    )
    print(f"[evaluate] {len(test):,} test rows: {headline} -> {args.metrics}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", _configure, _evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
