"""Build a review of head against base: load both revisions, compare, decide, render."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gitml.config.compose import check_params, parse_params
from gitml.config.schema import PromotionParams
from gitml.errors import ConfigError
from gitml.project import CONF_DIR, OUTPUTS, Project
from gitml.review.compare import Comparison, compare, recompute_base_predictions
from gitml.review.gate import Verdict, decide
from gitml.review.markdown import render_report
from gitml.review.revision import Revision, load_revision
from gitml.vcs import changed_paths


@dataclass(frozen=True)
class Review:
    comparison: Comparison
    verdict: Verdict
    markdown: str


def build_review(
    project: Project,
    *,
    base: str,
    head: str | None = None,
    recompute: bool = False,
    images: Path | None = None,
    link_from: Path | None = None,
) -> Review:
    """Compare `head` (None: the working tree) with `base` under head's promotion policy."""
    if head is None:
        check_params(project)  # a stale params.yaml would misreport what the PR configures
    base_rev = load_revision(project.root, base)
    head_rev = load_revision(project.root, head)
    policy = _policy(head_rev)
    base_predictions = None
    if recompute:
        if head is not None:
            raise ConfigError(
                "--recompute scores the base model on the working tree's test set; "
                "run it without --head, in a checkout of the head revision after dvc repro"
            )
        base_predictions = _score_base_on_head(project, base_rev, head_rev)
    comparison = compare(
        base_rev,
        head_rev,
        resamples=policy.bootstrap.resamples,
        confidence=policy.bootstrap.confidence,
        seed=policy.bootstrap.seed,
        base_predictions=base_predictions,
        conf_changed=changed_paths(project.root, base_rev.sha or base, head_rev.sha, CONF_DIR),
    )
    verdict = decide(comparison, policy)
    name = (head_rev.params or {}).get("project", {}).get("model_name", "model")
    links = None
    if images is not None:
        from gitml.review.images import write_images

        written = write_images(comparison, images)
        anchor = (link_from or Path.cwd()).resolve()
        links = {k: os.path.relpath(p.resolve(), anchor) for k, p in written.items()}
    markdown = render_report(comparison, verdict, model_name=name, images=links)
    return Review(comparison, verdict, markdown)


def _policy(head: Revision) -> PromotionParams:
    if head.params is None:
        raise ConfigError(f"{OUTPUTS['params']} is missing at {head.short}")
    import yaml

    params = parse_params(yaml.safe_dump(head.params), source=f"params.yaml at {head.short}")
    return params.promotion


def _score_base_on_head(project: Project, base: Revision, head: Revision):
    from gitml.data.io import read_table
    from gitml.model.persist import load_model
    from gitml.model.scoring import score_frame
    from gitml.vcs import fetch_artifact

    assert base.sha is not None
    head_data = (head.params or {}).get("data", {})
    base_features = [i["name"] for i in (base.signature or {}).get("inputs", [])]
    positive = head_data.get("positive_class", "Yes")
    with tempfile.TemporaryDirectory() as tmp:
        model_path = fetch_artifact(project.root, OUTPUTS["model"], base.sha, Path(tmp) / "m.skops")
        pipeline = load_model(model_path)
    categorical = [
        c for c, spec in head_data.get("columns", {}).items() if spec.get("type") == "category"
    ]
    test = read_table(project.root / OUTPUTS["test"], categories=categorical)
    score = score_frame(pipeline, test, features=base_features, positive_class=positive)
    return recompute_base_predictions(test, score, target=head_data.get("target", "target"))
