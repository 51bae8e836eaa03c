"""Shared entry point for stages: argument parsing, params loading, error reporting."""

from __future__ import annotations

import argparse
import resource
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from gitml.config.compose import load_params
from gitml.config.schema import Params
from gitml.errors import GitmlError


def run_stage(
    name: str,
    configure: Callable[[argparse.ArgumentParser], None],
    body: Callable[[argparse.Namespace, Params], None],
    argv: list[str] | None = None,
) -> int:
    """Parse `argv`, validate the whole params file, run `body`; print GitmlErrors, return a code.

    Every stage validates all of params.yaml first, so a bad configuration stops whichever
    stage DVC runs first, before it reads or writes anything. A stage that succeeds ends
    with its peak memory: what a user sizes a machine by on large data (and what
    bench/pipeline.py reads per stage).
    """
    parser = argparse.ArgumentParser(prog=f"gitml stage {name}", description=body.__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    configure(parser)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        params = load_params(args.params)
        body(args, params)
    except GitmlError as err:
        print(f"[{name}] {err.format()}", file=sys.stderr)
        return err.exit_code
    print(f"[{name}] peak memory {_peak_mib():,.0f} MiB")
    return 0


def _peak_mib() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
