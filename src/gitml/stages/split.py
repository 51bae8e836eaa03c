"""Stage `split`: deterministic, stratified train/test split of the validated data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_arrow, write_arrow
from gitml.data.split import split_table
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)


def _split(args: argparse.Namespace, params: Params) -> None:
    """Split into train and test sets, keeping source row numbers (`_row`)."""
    train, test = split_table(read_arrow(args.data), params.split, target=params.data.target)
    write_arrow(args.train, train)
    write_arrow(args.test, test)
    print(f"[split] {train.num_rows:,} rows -> {args.train}, {test.num_rows:,} -> {args.test}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("split", _configure, _split, argv)


if __name__ == "__main__":
    sys.exit(main())
