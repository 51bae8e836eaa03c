"""Stage `ingest`: read the configured source (CSV or Parquet) and write typed Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_source, write_table
from gitml.data.typing import apply_declared_types
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)


def _ingest(args: argparse.Namespace, params: Params) -> None:
    """Read the source data and write it as typed Parquet, one row per source row."""
    frame = read_source(args.source, fmt=params.data.format)
    write_table(args.out, apply_declared_types(frame, params.data))
    print(f"[ingest] {args.source}: {len(frame):,} rows x {frame.shape[1]} columns -> {args.out}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("ingest", _configure, _ingest, argv)


if __name__ == "__main__":
    sys.exit(main())
