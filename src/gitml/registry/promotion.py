"""`gitml promote` and `gitml rollback`: stage assignment tags under the repository's policy."""

from __future__ import annotations

from dataclasses import dataclass

from gitml.config.compose import load_params
from gitml.errors import RegistryError
from gitml.project import Project
from gitml.registry.catalog import GTO_CONFIG, gto_stages, load_registry
from gitml.registry.state import ModelHistory, ModelVersion
from gitml.registry.tags import Ref, check_name, parse_tag, parse_version
from gitml.vcs import git, gto


@dataclass(frozen=True)
class Assignment:
    name: str
    version: str
    stage: str
    tag: str
    replaced: str | None  # the version that held the stage before
    pushed: bool


@dataclass(frozen=True)
class AssignmentStatus:
    """Where a stage assignment tag stands now, as the release workflow asks before deploying."""

    tag: str
    name: str
    stage: str
    version: str | None  # what the tag assigned (None: no live version at its commit)
    holder: str | None  # the version holding the stage now
    in_force_tag: str | None  # the assignment that put the holder there

    @property
    def in_force(self) -> bool:
        return self.tag == self.in_force_tag


def promote(
    project: Project,
    name: str,
    version: str,
    stage: str,
    *,
    message: str | None = None,
    push: bool = False,
) -> Assignment:
    """Assign `stage` to NAME@VERSION, refusing unknown stages and skipped predecessors."""
    check_name(stage, "stage name")
    history = _history(project, name)
    target = history.resolve(Ref(name, version=parse_version(version).text))
    stages = gto_stages(project.root)
    _check_stage_known(stages, stage)
    holder = history.current(stage)
    if holder is not None and holder.version == target.version:
        raise RegistryError(f"{name}@{target.version} is already in {stage}")
    allow_skip = load_params(project.params_path).promotion.release.allow_skip_stages
    if stages and not allow_skip:
        position = stages.index(stage)
        if position > 0:
            before = stages[position - 1]
            held = {e.stage for e in history.stage_events if e.version == target.version}
            if before not in held:
                raise RegistryError(
                    f"{name}@{target.version} has not been in {before!r}; the stage order "
                    f"({' -> '.join(stages)}, from {GTO_CONFIG}) does not allow skipping it",
                    hint=f"promote it to {before} first, or set "
                    "promotion.release.allow_skip_stages: true in conf/",
                )
    note = message or f"Promote {name} {target.version} to {stage}"
    return _assign(project, history, target, stage, note, push, holder)


def rollback(
    project: Project, name: str, stage: str, *, message: str | None = None, push: bool = False
) -> Assignment:
    """Re-assign `stage` to the live version that held it before the current one."""
    check_name(stage, "stage name")
    history = _history(project, name)
    _check_stage_known(gto_stages(project.root), stage)
    current = history.current(stage)
    previous = history.previous(stage)
    if previous is None:
        raise RegistryError(
            f"nothing to roll back to: {name} has had no other version in {stage}"
            + (f" than {current.version}" if current else ""),
            hint="`gitml models` shows the stage history",
        )
    now = current.version if current else "none"
    note = message or f"Roll back {name} {stage} from {now} to {previous.version}"
    return _assign(project, history, previous, stage, note, push, current)


def assignment_status(project: Project, tag: str) -> AssignmentStatus:
    """Whether the assignment `tag` (NAME#STAGE#N) is the one in force: the latest event of
    its stage, and its version holds the stage now. A later promotion, a rollback (a new
    assignment tag, even to the same version), an unassignment or a deregistration supersedes
    it: a deploy of this tag would ship something gitml no longer has in the stage."""
    event = parse_tag(tag)
    if event is None or event.kind != "assign" or event.stage is None:
        raise RegistryError(
            f"{tag!r} is not a stage assignment tag",
            hint="expected NAME#STAGE#N, as `gitml promote` and `gitml rollback` create",
        )
    history = load_registry(project.root).get(event.name)
    assigned = [e for e in (history.stage_events if history else []) if e.tag == tag]
    if history is None or not assigned:
        raise RegistryError(
            f"no registry tag {tag} in this repository",
            hint="fetch the tags (git fetch --tags); `gitml models` lists what is registered",
        )
    holder = history.current(event.stage)
    last = history.in_force(event.stage)
    return AssignmentStatus(
        tag,
        event.name,
        event.stage,
        assigned[-1].version,
        holder.version if holder else None,
        last.tag if last else None,
    )


def _history(project: Project, name: str) -> ModelHistory:
    check_name(name)
    registry = load_registry(project.root)
    if name not in registry or not registry[name].versions:
        raise RegistryError(
            f"unknown model {name!r}: no release tags for it",
            hint=f"registered models: {', '.join(sorted(registry)) or 'none'}; "
            "create one with `gitml release`",
        )
    return registry[name]


def _check_stage_known(stages: list[str], stage: str) -> None:
    if stages and stage not in stages:
        raise RegistryError(
            f"unknown stage {stage!r}: {GTO_CONFIG} allows {', '.join(stages)}",
            hint=f"add it to `stages:` in {GTO_CONFIG} (in promotion order) and commit",
        )


def _assign(
    project: Project,
    history: ModelHistory,
    target: ModelVersion,
    stage: str,
    message: str,
    push: bool,
    holder: ModelVersion | None,
) -> Assignment:
    pattern = f"{history.name}#{stage}#*"
    before = set(git(project.root, "tag", "--list", pattern).split())
    gto(
        project.root,
        "assign",
        history.name,
        "--version",
        target.version,
        "--stage",
        stage,
        "--message",
        message,
        "--force",  # re-assigning an earlier version (rollback) is legitimate; checked above
    )
    made = sorted(set(git(project.root, "tag", "--list", pattern).split()) - before)
    if len(made) != 1:
        raise RegistryError(f"gto assign should have created one {pattern} tag, made {made}")
    tag = made[0]
    if push:
        git(project.root, "push", "origin", f"refs/tags/{tag}")
    return Assignment(
        history.name, target.version, stage, tag, holder.version if holder else None, push
    )
