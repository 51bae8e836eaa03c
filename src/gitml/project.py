"""Locate the project root and its canonical files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gitml.errors import ProjectError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"
# The model's file name: in models/, and in fetched or bundled model directories.
MODEL_FILE = "model.skops"
# The committed outputs that review reads at any revision (dvc.yaml declares the same paths;
# tests/test_public_api.py checks that they agree).
OUTPUTS = {
    "metrics": "reports/metrics.json",
    "slices": "reports/slices.json",
    "predictions": "reports/predictions.csv",
    "validation": "reports/validation.json",
    "signature": "models/signature.json",
    "metadata": "models/metadata.json",
    "model": f"models/{MODEL_FILE}",
    "lock": "dvc.lock",
    "params": PARAMS_FILE,
    "train": "data/processed/train.parquet",
    "test": "data/processed/test.parquet",
    "roc": "reports/plots/roc.json",
    "precision_recall": "reports/plots/precision_recall.json",
    "card": "reports/model_card.md",
    "importance": "reports/importance.json",
    "calibrator": "reports/calibrator.json",
}
# What a gitml project needs to run its pipeline from a clean checkout.
PROJECT_FILES = (
    "dvc.yaml",
    PARAMS_FILE,
    CONF_DIR,
    "src",
    "data/external",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
    ".gto",
)


@dataclass(frozen=True)
class Project:
    """A gitml project: a directory holding `conf/` and `dvc.yaml`."""

    root: Path

    @property
    def params_path(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def conf_dir(self) -> Path:
        return self.root / CONF_DIR


def find_project(start: Path | None = None) -> Project:
    """Return the nearest enclosing project, looking upward from `start` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONF_DIR / f"{CONFIG_NAME}.yaml").is_file():
            return Project(candidate)
    raise ProjectError(
        f"no gitml project found in {here} or its parents (expected {CONF_DIR}/{CONFIG_NAME}.yaml)",
        hint="run gitml from inside the project, or pass --project DIR",
    )


def copy_project(src: Path, dst: Path) -> Path:
    """Copy a project's pipeline files (PROJECT_FILES, where present) into `dst`.

    Outputs, caches and Git history are left behind: the copy is a clean checkout to run or
    benchmark the pipeline in.
    """
    for rel in PROJECT_FILES:
        source, target = src / rel, dst / rel
        if not source.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".gitml-tmp-*")
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return dst
