"""Stage `split`: deterministic train/test split of the validated data (stratified for
classification, shuffled for regression)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.split import split_file
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)


def _split(args: argparse.Namespace, params: Params) -> None:
    """Split into train and test sets, keeping source row numbers (`_row`)."""
    data = params.data
    train, test = split_file(
        args.data, args.train, args.test, params.split, target=data.target, task=data.task
    )
    how = " (regression: shuffled, not stratified)" if data.task == "regression" else ""
    print(f"[split] {train:,} rows -> {args.train}, {test:,} -> {args.test}{how}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("split", _configure, _split, argv)


if __name__ == "__main__":
    sys.exit(main())
