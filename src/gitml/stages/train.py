"""Stage `train`: fit one scikit-learn Pipeline, save it with skops, plus signature, metadata."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from gitml.config.schema import Params
from gitml.data.io import read_table
from gitml.data.profile import profile_frame
from gitml.files import atomic_paths, sha256_file, write_bytes, write_json
from gitml.model.explain import explanation_record
from gitml.model.fit import fit_pipeline, training_metadata
from gitml.model.persist import dump_model
from gitml.model.signature import build_signature
from gitml.stages._runner import run_stage


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--signature", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True)


def _train(args: argparse.Namespace, params: Params) -> None:
    """Fit the configured model; model, signature and metadata are replaced together."""
    train = read_table(args.train, categories=params.data.categorical)
    result = fit_pipeline(params, train)
    name = params.project.model_name
    payload = dump_model(result.pipeline)
    signature = build_signature(result.pipeline, params.data, train, model_name=name)
    metadata = training_metadata(
        params,
        result,
        model_bytes=len(payload),
        model_sha256=hashlib.sha256(payload).hexdigest(),
        train_sha256=sha256_file(args.train),
        profile=profile_frame(train, params.data),
    )
    # what `?explain=true` returns (signature) and the training means it needs (metadata)
    described, record = explanation_record(
        result.pipeline, train, task=params.data.task, positive_class=params.data.positive_class
    )
    signature["explanation"] = described
    if record:
        metadata["explanation"] = record
    # one atomic swap for the trio: a kill at any instant leaves the old one or the new one
    with atomic_paths(args.model, args.signature, args.metadata) as (model, sig, meta):
        write_bytes(model, payload)
        write_json(sig, signature)
        write_json(meta, metadata)
    print(
        f"[train] {params.model.name} on {result.rows:,} rows in {result.fit_seconds:.2f} s "
        f"-> {args.model} ({len(payload) / 1024:.0f} KiB)"
    )


def main(argv: list[str] | None = None) -> int:
    return run_stage("train", _configure, _train, argv)


if __name__ == "__main__":
    sys.exit(main())
