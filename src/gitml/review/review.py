"""Build a review of head against base: load both revisions, compare, decide, render."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gitml.config.compose import check_params
from gitml.config.schema import PromotionParams
from gitml.errors import ConfigError
from gitml.project import CONF_DIR, OUTPUTS, Project
from gitml.review.compare import (
    Comparison,
    compare,
    lock_hashes,
    recompute_base_predictions,
)
from gitml.review.gate import Verdict, decide
from gitml.review.markdown import render_report
from gitml.review.revision import Revision, empty_revision, load_revision
from gitml.review.timing import PendingTiming, start_timing
from gitml.vcs import changed_paths, dirty_paths


@dataclass(frozen=True)
class Review:
    comparison: Comparison
    verdict: Verdict
    markdown: str
    policy_source: str  # which revision's promotion policy judged this review


def build_review(
    project: Project,
    *,
    base: str | None,
    head: str | None = None,
    recompute: bool = False,
    images: Path | None = None,
    link_from: Path | None = None,
    policy_from: Literal["base", "head"] = "base",
) -> Review:
    """Compare `head` (None: the working tree) with `base` (None: no earlier model).

    The policy in force is the base's (`policy_from="base"`): a pull request may propose a
    new policy, which the report shows and which applies once merged. `gitml release` judges
    an already merged HEAD, so it passes `policy_from="head"`. The working tree is loaded
    from its commit when it has no changes, so the report names the head by its commit.
    """
    root = project.root
    workspace = head is None
    if workspace and not dirty_paths(root):
        head = "HEAD"
    base_rev = load_revision(root, base) if base is not None else empty_revision()
    head_rev = load_revision(root, head)
    policy, policy_source = _policy(base_rev, head_rev, policy_from)
    # the measurement runs beside the rest of the review: start it first
    timing = _start_timing(project, head_rev, policy)
    if workspace:
        try:  # a stale params.yaml would misreport what the PR configures
            check_params(project)
        except BaseException:
            if timing is not None:
                timing.cancel()
            raise
    base_predictions = None
    if recompute:
        if not workspace and head_rev.sha != _worktree_commit(root):
            raise ConfigError(
                "--recompute scores the base model on the working tree's test set; "
                "run it without --head, in a checkout of the head revision after dvc repro"
            )
        if base_rev.sha is None:
            raise ConfigError("--recompute needs a base revision to fetch the base model from")
        base_predictions = _score_base_on_head(project, base_rev, head_rev)
    comparison = compare(
        base_rev,
        head_rev,
        resamples=policy.bootstrap.resamples,
        confidence=policy.bootstrap.confidence,
        seed=policy.bootstrap.seed,
        base_predictions=base_predictions,
        conf_changed=(
            changed_paths(root, base_rev.sha, head_rev.sha, CONF_DIR) if base_rev.sha else []
        ),
    )
    if timing is not None:  # collected only now: the comparison above ran beside it
        comparison = dataclasses.replace(comparison, head_timing=timing.result())
    verdict = decide(comparison, policy)
    name = (head_rev.params or {}).get("project", {}).get("model_name", "model")
    links = None
    if images is not None:
        from gitml.review.images import write_images

        written = write_images(comparison, images)
        anchor = (link_from or Path.cwd()).resolve()
        links = {k: os.path.relpath(p.resolve(), anchor) for k, p in written.items()}
    markdown = render_report(
        comparison, verdict, model_name=name, images=links, policy_source=policy_source
    )
    return Review(comparison, verdict, markdown, policy_source)


def _worktree_commit(root: Path) -> str | None:
    """HEAD's commit when the working tree has no changes (so it is that commit), else None."""
    from gitml.vcs import resolve_rev

    return None if dirty_paths(root) else resolve_rev(root, "HEAD")


def _policy(
    base: Revision, head: Revision, policy_from: Literal["base", "head"]
) -> tuple[PromotionParams, str]:
    """The policy in force and a sentence saying whose it is."""
    judge = base if policy_from == "base" else head
    section = (judge.params or {}).get("promotion")
    if section is None and policy_from == "base" and base.metrics is None:
        # no earlier model and no earlier policy: the proposal is the only policy there is
        judge, section = head, (head.params or {}).get("promotion")
        source = f"the head's ({head.short}): the base has no promotion policy yet"
    else:
        source = f"the {policy_from}'s ({judge.short})"
    if section is None:
        raise ConfigError(
            f"{OUTPUTS['params']} at {judge.short} has no `promotion` section: no policy to "
            "judge the model by",
            hint="add `- promotion: default` to the defaults in conf/config.yaml and run "
            "`gitml params`",
        )
    from pydantic import ValidationError as PydanticValidationError

    from gitml.config.schema import describe_error

    try:
        policy = PromotionParams.model_validate(section)
    except PydanticValidationError as err:
        where = f"{OUTPUTS['params']} at {judge.short}"
        lines = [
            describe_error({**e, "loc": ("promotion", *e["loc"])}, where) for e in err.errors()
        ]
        raise ConfigError(
            "the promotion policy in force is invalid:\n  " + "\n  ".join(lines),
            hint="a pull request is judged under its base's policy; fix the policy on the base "
            "branch first",
        ) from err
    return policy, source


def _start_timing(
    project: Project, head: Revision, policy: PromotionParams
) -> PendingTiming | None:
    """Start measuring the head model's prediction time, if the policy has a timing rule."""
    if policy.serving.max_predict_ms_per_1000_rows is None or head.signature is None:
        return None
    from gitml.files import sha256_file

    recorded = (head.metadata or {}).get("model_file", {}).get("sha256")
    local = project.root / OUTPUTS["model"]
    # the working tree's model when it is the head's (same hash); else DVC's copy at head
    use_local = head.sha is None or (local.is_file() and sha256_file(local) == recorded)
    return start_timing(
        root=project.root,
        model=local if use_local else None,
        rev=head.sha,
        md5=lock_hashes(head.lock or {}).get(OUTPUTS["model"]),
        sha256=recorded,
        signature=head.signature,
        repeats=policy.serving.timing_repeats,
    )


def _score_base_on_head(project: Project, base: Revision, head: Revision):
    from gitml.data.io import read_table
    from gitml.model.persist import load_verified_model
    from gitml.model.scoring import score_frame
    from gitml.vcs import fetch_artifact

    assert base.sha is not None
    head_data = (head.params or {}).get("data", {})
    base_features = [i["name"] for i in (base.signature or {}).get("inputs", [])]
    positive = ((head.signature or {}).get("output") or {}).get("positive_class")
    positive = positive or head_data.get("positive_class")
    recorded = (base.metadata or {}).get("model_file", {}).get("sha256")
    with tempfile.TemporaryDirectory() as tmp:
        model_path = fetch_artifact(project.root, OUTPUTS["model"], base.sha, Path(tmp) / "m.skops")
        pipeline = load_verified_model(model_path, recorded)
    categorical = [
        c for c, spec in head_data.get("columns", {}).items() if spec.get("type") == "category"
    ]
    test = read_table(project.root / OUTPUTS["test"], categories=categorical)
    score = score_frame(pipeline, test, features=base_features, positive_class=str(positive))
    return recompute_base_predictions(test, score, target=head_data["target"])
