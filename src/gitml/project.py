"""Locate the project root and its canonical files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitml.errors import ProjectError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"


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
