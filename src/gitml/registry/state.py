"""The registry's state, rebuilt from tags alone: versions, their stages and stage history."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitml.errors import RegistryError
from gitml.registry.tags import Ref, TagEvent, Version, parse_tag, parse_version


@dataclass(frozen=True)
class TagRecord:
    """One Git tag as `git for-each-ref` reports it."""

    tag: str
    commit: str
    created: int  # tagger date (annotated) or commit date (lightweight), Unix seconds
    message: str = ""
    author: str = ""


@dataclass
class ModelVersion:
    """A registered version: its tag, commit and the stages it currently holds."""

    name: str
    version: str
    commit: str
    created: int
    tag: str
    message: str = ""
    author: str = ""
    deregistered: bool = False
    stages: list[str] = field(default_factory=list)

    @property
    def semver(self) -> Version:
        return parse_version(self.version)


@dataclass(frozen=True)
class StageEvent:
    """One assignment or unassignment of a stage, in the order it happened."""

    stage: str
    version: str | None
    kind: str
    tag: str
    created: int
    counter: int | None


@dataclass
class ModelHistory:
    """Everything the tags say about one model."""

    name: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    stage_events: list[StageEvent] = field(default_factory=list)
    deprecated: bool = False
    max_counter: int = 0

    def live_versions(self) -> list[ModelVersion]:
        """Registered, not deregistered versions, newest (highest SemVer) first."""
        live = [v for v in self.versions.values() if not v.deregistered]
        return sorted(live, key=lambda v: v.semver, reverse=True)

    def latest(self) -> ModelVersion | None:
        live = self.live_versions()
        return live[0] if live else None

    def current(self, stage: str) -> ModelVersion | None:
        """The version that holds `stage` now (GTO: the latest assignment wins)."""
        for version in self.live_versions():
            if stage in version.stages:
                return version
        return None

    def in_force(self, stage: str) -> StageEvent | None:
        """The assignment that put the current holder of `stage` there, replayed as
        `_apply_stage` does (an unassignment of another version changes nothing); None when
        nobody holds the stage."""
        holder = self.current(stage)
        last: StageEvent | None = None
        for event in self.stage_events:
            if event.stage != stage or event.version is None:
                continue
            if event.kind == "assign":
                last = event
            elif last is not None and event.version == last.version:
                last = None
        if holder is None or last is None or last.version != holder.version:
            return None
        return last

    def stage_versions(self, stage: str) -> list[str]:
        """Versions assigned to `stage`, oldest assignment first (repeats kept)."""
        return [
            e.version
            for e in self.stage_events
            if e.stage == stage and e.kind == "assign" and e.version is not None
        ]

    def previous(self, stage: str) -> ModelVersion | None:
        """The live version that held `stage` before the current one (for rollback)."""
        now = self.current(stage)
        for name in reversed(self.stage_versions(stage)):
            version = self.versions.get(name or "")
            if version and not version.deregistered and (now is None or name != now.version):
                return version
        return None

    def resolve(self, ref: Ref) -> ModelVersion:
        """The version a reference names; raise naming what exists when there is none."""
        if ref.stage:
            found = self.current(ref.stage)
            if found is None:
                raise RegistryError(
                    f"no version of {self.name} is in stage {ref.stage!r}",
                    hint=f"stages in use: {', '.join(self.stages_in_use()) or 'none'}",
                )
            return found
        if ref.version in (None, "latest"):
            found = self.latest()
            if found is None:
                raise RegistryError(f"{self.name} has no registered version")
            return found
        version = self.versions.get(ref.version or "")
        if version is None or version.deregistered:
            known = ", ".join(v.version for v in self.live_versions()) or "none"
            raise RegistryError(
                f"unknown version {self.name}@{ref.version}",
                hint=f"registered versions: {known} (see `gitml models`)",
            )
        return version

    def stages_in_use(self) -> list[str]:
        return sorted({s for v in self.live_versions() for s in v.stages})


def build_registry(records: list[TagRecord]) -> dict[str, ModelHistory]:
    """Replay every GTO tag in order into one history per model."""
    parsed = [(r, e) for r in records if (e := parse_tag(r.tag)) is not None]
    parsed.sort(key=lambda pair: (pair[0].created, pair[1].counter or 0, pair[0].tag))
    models: dict[str, ModelHistory] = {}
    by_commit: dict[tuple[str, str], list[str]] = {}
    for record, event in parsed:
        history = models.setdefault(event.name, ModelHistory(event.name))
        history.max_counter = max(history.max_counter, event.counter or 0)
        if event.kind == "register":
            _register(history, record, event, by_commit)
    for record, event in parsed:
        history = models[event.name]
        if event.kind == "deregister" and event.version in history.versions:
            version = history.versions[event.version]
            version.deregistered = True
            version.stages.clear()
        elif event.kind == "deprecate":
            history.deprecated = True
        elif event.kind in ("assign", "unassign"):
            _apply_stage(history, record, event, by_commit)
    return models


def _register(
    history: ModelHistory,
    record: TagRecord,
    event: TagEvent,
    by_commit: dict[tuple[str, str], list[str]],
) -> None:
    version = event.version or ""
    if version in history.versions:
        return  # a tag cannot be created twice; the first one read wins
    history.versions[version] = ModelVersion(
        history.name, version, record.commit, record.created, record.tag, record.message,
        record.author,
    )  # fmt: skip
    by_commit.setdefault((history.name, record.commit), []).append(version)


def _apply_stage(
    history: ModelHistory,
    record: TagRecord,
    event: TagEvent,
    by_commit: dict[tuple[str, str], list[str]],
) -> None:
    # GTO ties an assignment to the version registered at the same commit
    candidates = [
        history.versions[v]
        for v in by_commit.get((history.name, record.commit), [])
        if not history.versions[v].deregistered
    ]
    target = max(candidates, key=lambda v: v.semver) if candidates else None
    stage = event.stage or ""
    history.stage_events.append(
        StageEvent(
            stage,
            target.version if target else None,
            event.kind,
            record.tag,
            record.created,
            event.counter,
        )
    )
    if target is None:
        return
    if event.kind == "assign":
        for version in history.versions.values():
            if stage in version.stages:
                version.stages.remove(stage)  # one version per stage, as GTO by default
        target.stages.append(stage)
    elif stage in target.stages:
        target.stages.remove(stage)
