"""`gitml release`: check that HEAD is a releasable model, push its data, tag it with GTO."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitml.config.compose import check_params, load_params
from gitml.config.schema import ReleasePolicy
from gitml.errors import RegistryError, RemoteError
from gitml.project import OUTPUTS, Project
from gitml.registry.catalog import (
    MODEL_SHA_KEY,
    Artifact,
    check_model_name,
    frozen_stages,
    load_registry,
    pick_artifact,
)
from gitml.registry.tags import Bump, Version, parse_version, version_tag
from gitml.tasks import HEADLINE, task_of_metrics
from gitml.vcs import (
    DvcLock,
    cache_object,
    dirty_paths,
    dvc,
    git,
    gto,
    missing_in_remote,
    push_data,
    read_lock,
    resolve_rev,
)


@dataclass(frozen=True)
class Release:
    name: str
    version: str
    tag: str
    commit: str
    message: str
    gate: str
    pushed: bool


def release(
    project: Project,
    *,
    name: str | None = None,
    version: str | None = None,
    bump: Bump | None = None,
    message: str | None = None,
    push: bool = False,
) -> Release:
    """Refuse unless HEAD is clean, reproduced, pushed to the DVC remote (which must then
    hold the model) and gated; then tag."""
    root = project.root
    params = load_params(project.params_path)
    policy = params.promotion.release
    check_model_name(root, params.project.model_name)
    artifact = pick_artifact(root, name)
    history = load_registry(root).get(artifact.name)
    latest = history.latest() if history else None
    taken = set(history.versions) if history else set()  # deregistered versions keep their tag
    if version:
        _check_new_tag(version_tag(artifact.name, version), version in taken)
    target = _next_version(version, bump, latest.semver if latest else None, policy)
    tag = version_tag(artifact.name, str(target))
    _check_new_tag(tag, str(target) in taken)
    _check_clean(root)
    head = resolve_rev(root, "HEAD")
    if history:
        here = [v.version for v in history.live_versions() if v.commit == head]
        if here:
            raise RegistryError(
                f"HEAD ({head[:12]}) is already released as {artifact.name}@{here[0]}",
                hint="commit the changes to release, or promote the existing version",
            )
    check_params(project)
    lock = _check_stages(root)
    _verify_model(root, artifact, lock)  # before `dvc status`, which may trust a damaged cache
    _check_status(root)
    # the remote before the gate: a bad remote fails in seconds, not after the review (data
    # pushed for a release the gate then refuses is harmless: storage is content-addressed)
    _push_data(root, artifact, lock, tag)
    gate = _check_gate(project, latest.tag if latest else None)
    text = _tag_message(root, artifact, str(target), gate, message, lock)
    gto(root, "register", artifact.name, "HEAD", "--version", str(target), "--message", text)
    if push:
        git(root, "push", "origin", f"refs/tags/{tag}")
    return Release(artifact.name, str(target), tag, head, text, gate, push)


def _next_version(
    version: str | None, bump: Bump | None, latest: Version | None, policy: ReleasePolicy
) -> Version:
    if version and bump:
        raise RegistryError("give --version or --bump, not both")
    if version:
        target = parse_version(version)
        if latest is not None and target <= latest:
            raise RegistryError(
                f"version {target} is not above the latest release {latest}",
                hint="versions only go up; pick a higher one or use --bump",
            )
        return target
    if latest is None:
        return parse_version(policy.first_version)
    return latest.bump(bump or policy.bump)


def _check_new_tag(tag: str, exists: bool) -> None:
    if exists:
        raise RegistryError(
            f"tag {tag} already exists",
            hint="versions are immutable: release a higher version (--bump or --version)",
        )


def _check_clean(root: Path) -> None:
    dirty = dirty_paths(root)
    if dirty:
        shown = ", ".join(dirty[:8]) + (f" and {len(dirty) - 8} more" if len(dirty) > 8 else "")
        raise RegistryError(
            f"the working tree is not clean: {shown}",
            hint="a release must be exactly a commit: commit or stash these changes first",
        )


def _check_stages(root: Path) -> DvcLock:
    """Every stage ran (none frozen, none missing from dvc.lock); returns dvc.lock, parsed."""
    frozen = frozen_stages(root)
    if frozen:
        raise RegistryError(
            f"stage(s) {', '.join(frozen)} are frozen in dvc.yaml: the release would carry "
            "outputs that the pipeline did not reproduce",
            hint="remove `frozen: true` (dvc unfreeze STAGE), run dvc repro and commit",
        )
    lock = read_lock(root / OUTPUTS["lock"])
    names = dvc(root, "stage", "list", "--name-only").split()
    skipped = [n for n in names if n not in lock.stages]
    if skipped:
        raise RegistryError(
            f"stage(s) {', '.join(skipped)} never ran: they are not in dvc.lock",
            hint="run `dvc repro` and commit dvc.lock and the outputs",
        )
    return lock


def _check_status(root: Path) -> None:
    """Nothing changed since the pipeline last ran."""
    status = json.loads(dvc(root, "status", "--json") or "{}")
    if status:
        raise _status_refusal(status)


def _status_refusal(status: dict[str, list[Any]]) -> RegistryError:
    """The refusal for a non-empty `dvc status --json`, with the hint that fits it.

    When only outputs differ from `dvc.lock` (deleted or modified in the workspace, e.g. after
    `git checkout` or in a fresh clone) and every stage's code, params and inputs are as
    recorded, `dvc checkout` restores them from the cache: re-running the pipeline is not
    needed. Inputs that are themselves changed outputs of another stage do not count.
    """
    outs = {
        path: change
        for entries in status.values()
        for e in entries
        if isinstance(e, dict)
        for path, change in e.get("changed outs", {}).items()
    }

    def follows_outs(entry: Any) -> bool:
        if not isinstance(entry, dict):  # "changed command", "always changed"
            return False
        deps = entry.get("changed deps", {})
        return set(entry) <= {"changed outs", "changed deps"} and set(deps) <= set(outs)

    stages = ", ".join(sorted(status))
    if outs and all(follows_outs(e) for entries in status.values() for e in entries):
        shown = ", ".join(f"{path} ({change})" for path, change in sorted(outs.items()))
        return RegistryError(
            f"the pipeline's outputs differ from dvc.lock: {shown}; no stage's code, params "
            "or inputs changed",
            hint="restore them with `dvc checkout` (`--force` to overwrite modified files; "
            "`dvc pull` first when the cache lacks them, e.g. in a fresh clone); "
            "`dvc repro` is not needed",
        )
    return RegistryError(
        f"the pipeline is not up to date: `dvc status` reports changes in {stages}",
        hint="run `dvc repro`, then commit dvc.lock and the outputs",
    )


def _check_gate(project: Project, base_tag: str | None) -> str:
    """The gate against the latest release, under HEAD's (merged) policy; the first release
    meets the absolute rules (minimums, degenerate models, slice gaps, serving budgets)."""
    from gitml.review.review import build_review

    # the tree is clean, so HEAD is the working tree; params were checked already
    verdict = build_review(project, base=base_tag, head="HEAD", policy_from="head").verdict
    against = base_tag or "no earlier version (absolute rules)"
    if verdict.status != "promote":
        failed = "; ".join(f"{r.rule}: {r.detail}" for r in verdict.failed) or verdict.reason
        command = f"gitml gate --base {base_tag}" if base_tag else "gitml gate --base HEAD"
        raise RegistryError(
            f"the promotion gate against {against} says {verdict.status!r}: {failed}",
            hint=f"see `{command}`; a release must pass the gate",
        )
    return f"promote against {base_tag}" if base_tag else "first release: promote (absolute rules)"


def _verify_model(root: Path, artifact: Artifact, lock: DvcLock) -> None:
    """The model about to be pushed and tagged is the one training recorded, and loads.

    Checks the working-tree file and the DVC cache object that `dvc push` uploads: its md5
    must be the one dvc.lock names and its SHA-256 the one metadata.json records; then the
    file loads through the trusted skops loader (after the hash check, never before).
    """
    from gitml.errors import ModelError
    from gitml.files import file_digests
    from gitml.model.persist import load_verified_model

    metadata = json.loads((root / OUTPUTS["metadata"]).read_text(encoding="utf-8"))
    recorded = metadata.get("model_file", {}).get("sha256")
    try:
        load_verified_model(root / artifact.path, recorded)
    except ModelError as err:
        raise RegistryError(f"refusing to release: {err.message}", hint=err.hint) from err
    md5 = lock.out_md5(artifact.path)
    if md5 is None:
        raise RegistryError(f"dvc.lock records no hash for {artifact.path}", hint="run dvc repro")
    cached = cache_object(root, md5)
    if not cached.is_file():
        raise RegistryError(
            f"{artifact.path} (md5 {md5}) is not in the DVC cache ({cached})",
            hint="run `dvc commit` (or `dvc repro`) so the cache holds the model to push",
        )
    md5_found, sha_found = file_digests(cached, "md5", "sha256")
    if (md5_found, sha_found) != (md5, recorded):
        raise RegistryError(
            f"the DVC cache copy of {artifact.path} is corrupt: {cached} has md5 "
            f"{md5_found} and SHA-256 {sha_found[:12]}..., dvc.lock "
            f"records md5 {md5} and metadata.json SHA-256 {str(recorded)[:12]}...",
            hint="remove the damaged cache file and restore it: `dvc repro --force train` or "
            "`dvc pull --force`; nothing was pushed or tagged",
        )


def _push_data(root: Path, artifact: Artifact, lock: DvcLock, tag: str) -> None:
    """dvc push to the default remote, then ask that remote whether it holds everything
    (the model above all): a model the remote lacks is never tagged."""
    md5 = lock.out_md5(artifact.path)
    try:
        remote = push_data(root, md5=md5)
        missing = missing_in_remote(root, remote)
    except RemoteError as err:
        raise RegistryError(
            f"refusing to tag {tag}: {err.message}",
            hint=f"{err.hint}; nothing was tagged" if err.hint else "nothing was tagged",
        ) from err
    if missing:
        where = remote.object_url(md5) if md5 and artifact.path in missing else remote.url
        raise RegistryError(
            f"refusing to tag {tag}: after dvc push, DVC remote {remote.name!r} still lacks "
            f"{', '.join(missing)} (model: {artifact.path}; path checked: {where})",
            hint=f"check the remote with `dvc status --cloud -r {remote.name}`; nothing was tagged",
        )


def _tag_message(
    root: Path, artifact: Artifact, version: str, gate: str, note: str | None, lock: DvcLock
) -> str:
    metrics = json.loads((root / OUTPUTS["metrics"]).read_text(encoding="utf-8"))
    metadata = json.loads((root / OUTPUTS["metadata"]).read_text(encoding="utf-8"))
    values = metrics.get("metrics", {})
    names = HEADLINE[task_of_metrics(values)]
    headline = " ".join(f"{k}={values[k]}" for k in names if values.get(k) is not None)
    lines = [
        f"{artifact.name} {version}",
        "",
        f"released: {datetime.now(UTC).date().isoformat()} by gitml release",
        f"metrics: {headline}",
        f"{MODEL_SHA_KEY}: {metadata['model_file']['sha256']}",
        f"model bytes: {metadata['model_file']['bytes']}",
        f"training data sha256: {metadata['training']['data_sha256']}",
        f"training rows: {metadata['training']['rows']}",
    ]
    for out in lock.outs():
        lines.append(f"dvc.lock: {out.path} md5={out.md5}")
    lines.append(f"gate: {gate}")
    if note:
        lines += ["", note]
    return "\n".join(lines)
