"""Stage `split`: deterministic, stratified train/test split of the validated data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_table, write_table
from gitml.data.split import split_frame
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)


def _split(args: argparse.Namespace, params: Params) -> None:
    """Split into train and test sets, keeping source row numbers as the index."""
    train, test = split_frame(read_table(args.data), params.split, target=params.data.target)
    write_table(args.train, train)
    write_table(args.test, test)
    print(
        f"[split] {len(train):,} train rows -> {args.train}, {len(test):,} test rows -> {args.test}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_stage("split", _configure, _split, argv)


if __name__ == "__main__":
    sys.exit(main())
