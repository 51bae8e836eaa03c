"""The data contract: the source data, read as the pipeline reads it, passes conf/data/."""

from __future__ import annotations

import json
from pathlib import Path

from gitml.config.compose import load_params
from gitml.data.io import detect_format, read_source, read_table, write_arrow
from gitml.data.typing import apply_declared_types
from gitml.data.validation import validate_frame

ROOT = Path(__file__).resolve().parents[2]


def test_the_source_data_passes_the_declared_schema_and_rules(tmp_path: Path) -> None:
    """What the ingest and validate stages check, on the data file the project names now."""
    params = load_params(ROOT / "params.yaml")
    data = params.data
    source = ROOT / data.source
    table = read_source(
        source, fmt=data.format, expected=list(data.columns), text_columns=data.categorical
    )
    ingested = tmp_path / "ingested.parquet"
    write_arrow(ingested, apply_declared_types(table, data))
    is_csv = detect_format(source, data.format) == "csv"
    report = validate_frame(
        read_table(ingested, categories=data.categorical),
        data,
        params.validate_,
        source=data.source,
        line_offset=1 if is_csv else None,
    )
    failed = [f"[{f.rule}] {f.message}" for f in report.errors]
    assert report.ok, f"{data.source} breaks conf/data/{data.name}.yaml:\n" + "\n".join(failed)


def test_the_model_takes_the_declared_features() -> None:
    """The committed model's input contract is the declared schema's features, in order."""
    params = load_params(ROOT / "params.yaml")
    signature = json.loads((ROOT / "models/signature.json").read_text(encoding="utf-8"))
    assert signature["model_name"] == params.project.model_name
    assert [c["name"] for c in signature["inputs"]] == params.data.features, (
        "models/signature.json is not the model of conf/data/: run `dvc repro` and commit"
    )
