"""The public surface: exported names, the CLI's start-up imports, naming conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

import gitml

ROOT = Path(__file__).resolve().parents[1]


def test_exported_members() -> None:
    assert sorted(gitml.__all__) == ["GitmlError", "__version__"]


def test_cli_imports_no_heavy_library_at_start_up() -> None:
    code = (
        "import sys, gitml.cli; "
        "print([m for m in ('pandas', 'sklearn', 'hydra', 'dvc', 'pandera', 'skops', "
        "'fastapi', 'uvicorn', 'pyarrow', 'prometheus_client') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_stage_has_a_module_of_the_same_name() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert (ROOT / f"src/gitml/stages/{name}.py").is_file()
        assert f"python -m gitml.stages.{name} " in stage["cmd"] + " "


def test_artifact_name_matches_params() -> None:
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(artifacts) == [params["project"]["model_name"]]
    assert artifacts[params["project"]["model_name"]]["type"] == "model"


def test_dvc_config_disables_analytics_and_enables_hydra() -> None:
    text = (ROOT / ".dvc/config").read_text()
    assert "analytics = false" in text
    assert "[hydra]" in text and "enabled = true" in text


def test_review_reads_the_paths_the_pipeline_writes() -> None:
    from gitml.project import OUTPUTS

    declared = (ROOT / "dvc.yaml").read_text()
    for key, path in OUTPUTS.items():
        if key not in ("lock", "params"):
            assert path in declared, f"{key}: {path} is not in dvc.yaml"
