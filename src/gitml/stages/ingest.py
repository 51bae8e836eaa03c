"""Stage `ingest`: read the configured source (CSV or Parquet) and write typed Parquet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import iter_source, write_arrow_stream
from gitml.data.typing import collect_declared_types
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)


def _ingest(args: argparse.Namespace, params: Params) -> None:
    """Read the source data and write it as typed Parquet, one row per source row.

    Streamed: the source is read a block at a time and held with categories as codes, then
    typed and written block by block: never the source's text and the typed table at once.
    """
    blocks = iter_source(args.source, fmt=params.data.format, expected=list(params.data.columns))
    table = collect_declared_types(blocks, params.data)
    with write_arrow_stream(args.out, table.schema) as append:
        for block in table.blocks():
            append(block)
    shape = f"{table.num_rows:,} rows x {len(table.schema) - 1} columns"
    print(f"[ingest] {args.source}: {shape} -> {args.out}")


def main(argv: list[str] | None = None) -> int:
    return run_stage("ingest", _configure, _ingest, argv)


if __name__ == "__main__":
    sys.exit(main())
