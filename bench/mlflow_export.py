"""Export a gitml model to MLflow's format, for the MLflow peer in bench/serve.py.

Runs in the benchmark's own MLflow environment (never the project's), which has gitml
installed without dependencies so gitml's CategoryEncoder inside the pipeline imports:

    bench/out/venv-mlflow/bin/python bench/mlflow_export.py MODEL.skops SAMPLE.parquet OUT_DIR

The pipeline is loaded with gitml's own `load_model` (skops, trusted-type list) and saved
with `mlflow.sklearn.save_model`:
- serialization_format="skops" with the same trusted types gitml uses (MLflow refuses to
  save a ColumnTransformer pipeline with skops until `numpy.dtype` is trusted);
- pyfunc_predict_fn="predict_proba", so `/invocations` returns class probabilities, the
  same work gitml's server does (MLflow's default serves `predict`, class labels);
- a signature inferred from the sample rows, so MLflow checks request columns and types as
  gitml checks its own signature: both servers validate their input.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="gitml model file (skops)")
    parser.add_argument("sample", type=Path, help="Parquet rows to infer the signature from")
    parser.add_argument("out", type=Path, help="MLflow model directory (replaced)")
    parser.add_argument("--features", required=True, help="comma-separated input columns")
    args = parser.parse_args(argv)

    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    from gitml.model.persist import TRUSTED_TYPES, load_model

    pipeline = load_model(args.model)
    features = args.features.split(",")
    sample = pd.read_parquet(args.sample, columns=features)
    signature = infer_signature(sample, pipeline.predict_proba(sample))
    if args.out.exists():
        shutil.rmtree(args.out)
    mlflow.sklearn.save_model(
        pipeline,
        str(args.out),
        serialization_format="skops",
        skops_trusted_types=list(TRUSTED_TYPES),
        pyfunc_predict_fn="predict_proba",
        signature=signature,
    )
    print(f"mlflow_export: {args.model} -> {args.out} (mlflow {mlflow.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
