"""Read the registry of a repository: tags, the model artifacts, stages and headline metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gitml.errors import RegistryError
from gitml.project import OUTPUTS
from gitml.registry.state import ModelHistory, TagRecord, build_registry
from gitml.vcs import list_tags, read_blobs, show_file

GTO_CONFIG = ".gto"
MODEL_SHA_KEY = "model sha256"  # the line of a release tag message that records the model hash


@dataclass(frozen=True)
class Artifact:
    """A model declared under `artifacts:` in dvc.yaml."""

    name: str
    path: str
    type: str


def load_registry(root: Path) -> dict[str, ModelHistory]:
    """Every model's history, from one `git for-each-ref` over the tags."""
    return build_registry([TagRecord(*fields) for fields in list_tags(root)])


def read_pipeline(root: Path, rev: str | None = None) -> dict[str, Any]:
    """dvc.yaml at `rev` (None: the working tree), parsed: the one reader of that file."""
    where = rev or "the working tree"
    text = show_file(root, rev, "dvc.yaml")
    if text is None:
        raise RegistryError(f"dvc.yaml is missing at {where}")
    try:
        pipeline = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RegistryError(f"dvc.yaml at {where}: not valid YAML ({err})") from err
    if not isinstance(pipeline, dict):
        raise RegistryError(f"dvc.yaml at {where}: expected a mapping of stages and artifacts")
    return pipeline


def frozen_stages(root: Path) -> list[str]:
    """Stages of the working tree's dvc.yaml marked `frozen: true`."""
    stages = read_pipeline(root).get("stages") or {}
    return [name for name, spec in stages.items() if isinstance(spec, dict) and spec.get("frozen")]


def model_artifacts(root: Path, rev: str | None = None) -> dict[str, Artifact]:
    """`artifacts:` of type model in dvc.yaml at `rev` (None: the working tree)."""
    declared = read_pipeline(root, rev).get("artifacts") or {}
    return {
        name: Artifact(name, str(spec.get("path", "")), str(spec.get("type", "")))
        for name, spec in declared.items()
        if isinstance(spec, dict) and spec.get("type", "model") == "model"
    }


def pick_artifact(root: Path, name: str | None = None) -> Artifact:
    """The model artifact to release: `name`, or the only one dvc.yaml declares."""
    artifacts = model_artifacts(root)
    if name is not None:
        if name not in artifacts:
            raise RegistryError(
                f"dvc.yaml declares no model artifact {name!r}",
                hint=f"declared: {', '.join(artifacts) or 'none'} (`artifacts:` in dvc.yaml)",
            )
        return artifacts[name]
    if len(artifacts) != 1:
        raise RegistryError(
            f"dvc.yaml declares {len(artifacts)} model artifacts; name the one to release",
            hint="add under `artifacts:` in dvc.yaml: NAME: {path: models/model.skops, type: model}"
            if not artifacts
            else f"declared: {', '.join(artifacts)}",
        )
    return next(iter(artifacts.values()))


def check_model_name(root: Path, model_name: str) -> None:
    """Refuse when `project.model_name` (params.yaml) is not a model artifact of dvc.yaml.

    The name is set once, in `conf/config.yaml`; dvc.yaml's `artifacts:` must use it, since
    release tags, the registry and the served model's name all follow from the two. A
    project whose dvc.yaml declares no model artifact (or has no dvc.yaml) has nothing to
    disagree with.
    """
    if not (root / "dvc.yaml").is_file():
        return
    artifacts = model_artifacts(root)
    if not artifacts or model_name in artifacts:
        return
    declared = ", ".join(repr(a) for a in artifacts)
    raise RegistryError(
        f"the model is named {model_name!r} in params.yaml (project.model_name) but "
        f"{declared} in dvc.yaml (artifacts:)",
        hint=f"use one name: rename the artifact in dvc.yaml to {model_name!r}, or set "
        "project.model_name in conf/config.yaml to the artifact's name",
    )


def gto_stages(root: Path) -> list[str]:
    """The stage names in `.gto`, in their declared (promotion) order; [] if unrestricted."""
    file = root / GTO_CONFIG
    if not file.is_file():
        return []
    try:
        config = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise RegistryError(f"{file}: not valid YAML ({err})") from err
    stages = config.get("stages") or []
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise RegistryError(f"{file}: `stages` must be a list of names, found {stages!r}")
    return stages


def in_promotion_order(stages: list[str], order: list[str]) -> list[str]:
    """`stages` in the `.gto` order (`order`, from gto_stages); unknown ones after, by name."""
    rank = {stage: i for i, stage in enumerate(order)}
    return sorted(stages, key=lambda s: (rank.get(s, len(order)), s))


def list_models(root: Path) -> list[dict[str, Any]]:
    """One row per registered version: stages (in promotion order), date, commit, headline
    metrics, newest first."""
    registry = load_registry(root)
    order = gto_stages(root)
    rows = []
    for name in sorted(registry):
        for version in registry[name].live_versions():
            rows.append(
                {
                    "name": name,
                    "version": version.version,
                    "stages": in_promotion_order(version.stages, order),
                    "created": datetime.fromtimestamp(version.created, UTC).isoformat(),
                    "commit": version.commit,
                    "tag": version.tag,
                    "deprecated": registry[name].deprecated,
                    "metrics": {},
                }
            )
    texts = read_blobs(root, [f"{row['commit']}:{OUTPUTS['metrics']}" for row in rows])
    for row, text in zip(rows, texts, strict=True):
        row["metrics"] = _metrics(text)
    return rows


def _metrics(text: str | None) -> dict[str, float | None]:
    if not text:
        return {}
    try:
        metrics = json.loads(text).get("metrics", {})
    except (json.JSONDecodeError, AttributeError):
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) or v is None}
