"""Export a gitml model to a joblib file for MLServer's scikit-learn runtime (bench/serve.py).

Runs in the benchmark's own MLServer environment (never the project's), which has gitml
installed without dependencies so gitml's CategoryEncoder inside the pipeline imports:

    bench/out/venv-mlserver/bin/python bench/mlserver_export.py MODEL.skops OUT.joblib

The pipeline is loaded with gitml's own `load_model` (skops, trusted-type list), so MLServer
serves the very object gitml serves, re-pickled the way `mlserver_sklearn` loads models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="gitml model file (skops)")
    parser.add_argument("out", type=Path, help="joblib file to write (replaced)")
    args = parser.parse_args(argv)

    import joblib

    from gitml.model.persist import load_model

    pipeline = load_model(args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, args.out)
    print(f"mlserver_export: {args.model} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
