"""Stage `ingest`: read the configured source (CSV or Parquet) and write typed Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_source, write_arrow
from gitml.data.typing import apply_declared_types
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)


def _ingest(args: argparse.Namespace, params: Params) -> None:
    """Read the source data and write it as typed Parquet, one row per source row."""
    table = read_source(
        args.source,
        fmt=params.data.format,
        expected=list(params.data.columns),
        text_columns=params.data.categorical,
    )
    write_arrow(args.out, apply_declared_types(table, params.data))
    shape = f"{table.num_rows:,} rows x {table.num_columns} columns"
    print(f"[ingest] {args.source}: {shape} -> {args.out}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("ingest", _configure, _ingest, argv)


if __name__ == "__main__":
    sys.exit(main())
