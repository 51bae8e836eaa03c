"""The gitml command line and the stage entry points, run as a user runs them."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support import gitml, run


def test_help_lists_commands_and_version(tmp_path: Path) -> None:
    out = gitml("--help", cwd=tmp_path).stdout
    assert "params" in out
    assert gitml("--version", cwd=tmp_path).stdout.startswith("gitml ")


def test_outside_a_project_is_a_clear_error(tmp_path: Path) -> None:
    proc = gitml("params", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no gitml project found")
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_option_lists_the_available_ones(template_repo: Path) -> None:
    proc = gitml("params", "model=gradient_magic", cwd=template_repo, check=False)
    assert proc.returncode == 2
    assert "Available options in 'model'" in proc.stderr
    assert "hist_gradient_boosting" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_project_option_and_check(template_repo: Path, tmp_path: Path) -> None:
    out = gitml("params", "--check", "--project", str(template_repo), cwd=tmp_path).stdout
    assert "up to date" in out


def test_stage_refuses_invalid_params_before_touching_anything(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    bad = tmp_path / "params.yaml"
    text = (root / "params.yaml").read_text().replace("test_size: 0.2", "test_size: 2")
    bad.write_text(text)
    out = tmp_path / "raw.parquet"
    proc = run(
        sys.executable,
        "-m",
        "gitml.stages.ingest",
        "--params",
        bad,
        "--source",
        root / "data/external/telco_churn.csv.gz",
        "--out",
        out,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    assert "split.test_size: Input should be less than 1 (got 2)" in proc.stderr
    assert not out.exists()
