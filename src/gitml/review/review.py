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
    positive_class,
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
    if recompute:  # usage errors first: nothing is started for a command that cannot run
        if not workspace and head_rev.sha != _worktree_commit(root):
            raise ConfigError(
                "--recompute scores the base model on the working tree's test set; "
                "run it without --head, in a checkout of the head revision after dvc repro"
            )
        if base_rev.sha is None:
            raise ConfigError("--recompute needs a base revision to fetch the base model from")
    # the measurement runs beside the rest of the review: start it first
    timing = _start_timing(project, head_rev, policy)
    try:
        if workspace:  # a stale params.yaml would misreport what the PR configures
            check_params(project)
        base_predictions = _score_base_on_head(project, base_rev, head_rev) if recompute else None
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
    except BaseException:  # the review failed: the measurement is not needed any more
        if timing is not None:
            timing.cancel()
        raise
    if timing is not None:  # collected only now: the comparison above ran beside it
        comparison = dataclasses.replace(comparison, head_timing=timing.result())
    verdict = decide(comparison, policy)
    project_params = head_rev.params.project if head_rev.params else None
    name = project_params.model_name if project_params else "model"
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
    policy = _read_policy(judge)
    if policy is None and policy_from == "base" and base.metrics is None:
        # no earlier model and no earlier policy: the proposal is the only policy there is
        judge = head
        policy = _read_policy(head)
        source = f"the head's ({head.short}): the base has no promotion policy yet"
    else:
        source = f"the {policy_from}'s ({judge.short})"
    if policy is None:
        raise ConfigError(
            f"{OUTPUTS['params']} at {judge.short} has no `promotion` section: no policy to "
            "judge the model by",
            hint="add `- promotion: default` to the defaults in conf/config.yaml and run "
            "`gitml params`",
        )
    return policy, source


def _read_policy(judge: Revision) -> PromotionParams | None:
    """The revision's promotion policy; None when its params.yaml has no `promotion`."""
    if judge.params is None:
        return None
    try:
        return judge.params.promotion
    except ConfigError as err:
        raise ConfigError(
            f"the promotion policy in force: {err.message}",
            hint="a pull request is judged under its base's policy; fix the policy on the base "
            "branch first",
        ) from err


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
        md5=head.model_md5,
        sha256=recorded,
        signature=head.signature,
        repeats=policy.serving.timing_repeats,
    )


def _score_base_on_head(project: Project, base: Revision, head: Revision):
    from gitml.data.io import read_table
    from gitml.model.persist import load_verified_model
    from gitml.model.scoring import positive_index, predict_frame
    from gitml.vcs import fetch_artifact

    assert base.sha is not None
    head_data = head.params.data if head.params else None
    if head_data is None:
        raise ConfigError(
            f"{OUTPUTS['params']} at {head.short} has no `data` section: --recompute needs "
            "the head's target and columns"
        )
    base_features = [i["name"] for i in (base.signature or {}).get("inputs", [])]
    task = head.task
    positive = positive_class(head) if task == "binary" else None
    recorded = (base.metadata or {}).get("model_file", {}).get("sha256")
    with tempfile.TemporaryDirectory() as tmp:
        model_path = fetch_artifact(project.root, OUTPUTS["model"], base.sha, Path(tmp) / "m.skops")
        pipeline = load_verified_model(model_path, recorded)
    test = read_table(project.root / OUTPUTS["test"], categories=head_data.categorical)
    # the base model scored as its own task: a base of another task is not comparable
    output = predict_frame(pipeline, test, features=base_features, task=base.task)
    if base.task == "binary" and positive is not None:
        output = output[:, positive_index(pipeline, positive)]
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    return recompute_base_predictions(
        test, output, target=head_data.target, task=base.task, classes=classes
    )
