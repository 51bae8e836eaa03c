"""GTO's tag grammar: parse, format and validate release and stage tags (values in, values out).

churn-classifier@v1.3.0         registration of version v1.3.0
churn-classifier@v1.3.0!        deregistration of that version
churn-classifier#prod#4         assignment of stage prod (4: the artifact's event counter)
churn-classifier#prod!#5        unassignment of stage prod
churn-classifier@deprecated     the whole artifact is deprecated
churn-classifier#prod           a stage assignment in GTO's simple notation (no counter)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gitml.errors import RegistryError

# Names and semantic versions exactly as GTO accepts them (gto.constants), so that every tag
# gitml writes is one GTO reads, and the other way round.
_NAME = r"[a-zA-Z0-9]([a-zA-Z0-9_/-]*[a-zA-Z0-9])?"
_SEMVER = (
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?"
)
_NAME_RE = re.compile(f"^{_NAME}$")
_VERSION_RE = re.compile(f"^v{_SEMVER}$")
_TAG_RE = re.compile(
    rf"^(?P<name>{_NAME})(?:"
    rf"(?:@(?P<version>v{_SEMVER.replace('?P<', '?P<v_')})|#(?P<stage>{_NAME}))(?P<cancel>!?)"
    rf"|@(?P<deprecated>deprecated)|@(?P<created>created))"
    rf"(?:#(?P<counter>[0-9]+))?$"
)
# A reference a user types: NAME@vX.Y.Z, NAME@latest, NAME#STAGE
_REF_RE = re.compile(rf"^(?P<name>{_NAME})(?:@(?P<version>latest|v\S+)|#(?P<stage>\S+))?$")

Kind = Literal["create", "register", "deregister", "assign", "unassign", "deprecate"]
Bump = Literal["major", "minor", "patch"]


@dataclass(frozen=True, order=True)
class Version:
    """A semantic version; pre-releases sort before their release, as in SemVer."""

    major: int
    minor: int
    patch: int
    release: int  # 1 for a release, 0 for a pre-release
    pre: str
    text: str

    def __str__(self) -> str:
        return self.text

    def bump(self, part: Bump) -> Version:
        if part == "major":
            return parse_version(f"v{self.major + 1}.0.0")
        if part == "minor":
            return parse_version(f"v{self.major}.{self.minor + 1}.0")
        return parse_version(f"v{self.major}.{self.minor}.{self.patch + 1}")


@dataclass(frozen=True)
class TagEvent:
    """One registry event read from a tag name."""

    tag: str
    name: str
    kind: Kind
    version: str | None = None
    stage: str | None = None
    counter: int | None = None


@dataclass(frozen=True)
class Ref:
    """What a user asked for: a version, the latest version, a stage, or just a name."""

    name: str
    version: str | None = None  # "latest" or "vX.Y.Z"
    stage: str | None = None


def check_name(value: str, what: str = "model name") -> str:
    """Raise unless `value` is a valid GTO artifact or stage name."""
    if not _NAME_RE.match(value):
        raise RegistryError(
            f"invalid {what} {value!r}: use letters, digits, '-', '_' and '/', starting and "
            "ending with a letter or digit (GTO's naming rule)"
        )
    return value


def parse_version(text: str) -> Version:
    """Parse `vMAJOR.MINOR.PATCH[-pre][+build]`; raise with the rule when it is not one."""
    match = _VERSION_RE.match(text)
    if not match:
        raise RegistryError(
            f"invalid version {text!r}: expected 'v' and a semantic version, e.g. v1.3.0",
            hint="GTO versions are SemVer with a leading v: vMAJOR.MINOR.PATCH[-prerelease]",
        )
    pre = match["pre"] or ""
    return Version(
        int(match["major"]), int(match["minor"]), int(match["patch"]), 0 if pre else 1, pre, text
    )


def parse_tag(tag: str) -> TagEvent | None:
    """The registry event a tag records, or None for tags that are not GTO's."""
    match = _TAG_RE.match(tag)
    if not match:
        return None
    name = match["name"]
    counter = int(match["counter"]) if match["counter"] else None
    if match["version"]:
        kind: Kind = "deregister" if match["cancel"] else "register"
        return TagEvent(tag, name, kind, version=match["version"], counter=counter)
    if match["stage"]:
        kind = "unassign" if match["cancel"] else "assign"
        return TagEvent(tag, name, kind, stage=match["stage"], counter=counter)
    if match["created"]:
        return TagEvent(tag, name, "create", counter=counter)
    return TagEvent(tag, name, "deprecate", counter=counter)


def parse_ref(text: str) -> Ref:
    """Parse NAME, NAME@vX.Y.Z, NAME@latest or NAME#STAGE, validating each part."""
    match = _REF_RE.match(text)
    if not match:
        raise RegistryError(
            f"invalid model reference {text!r}: expected NAME@vX.Y.Z, NAME@latest or NAME#STAGE",
            hint="e.g. churn-classifier@v1.2.0 or churn-classifier#prod",
        )
    name = check_name(match["name"])
    version, stage = match["version"], match["stage"]
    if version and version != "latest":
        parse_version(version)
    if stage:
        check_name(stage, "stage name")
    return Ref(name, version, stage)


def version_tag(name: str, version: str) -> str:
    return f"{check_name(name)}@{parse_version(version)}"


def stage_tag(name: str, stage: str, counter: int) -> str:
    return f"{check_name(name)}#{check_name(stage, 'stage name')}#{counter}"
