"""The only module that calls git, dvc and gto."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml.errors import DataError, VcsError


def git(root: Path, *args: str) -> str:
    """Run `git ARGS` in `root` and return stdout; raise VcsError with git's message."""
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise VcsError("git is not installed or not on PATH") from err
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise VcsError(f"git {' '.join(args)} failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def resolve_rev(root: Path, rev: str) -> str:
    """The full commit SHA that `rev` (branch, tag, SHA, `origin/main`, ...) names."""
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except VcsError as err:
        raise VcsError(
            f"revision {rev!r} does not exist in {root}",
            hint="fetch it first (git fetch origin), or check the branch or commit name",
        ) from err


def show_file(root: Path, rev: str | None, path: str) -> str | None:
    """The text of `path` at commit `rev` (None: the working tree); None if it is absent."""
    if rev is None:
        file = root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None
    proc = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True, check=False
    )
    return proc.stdout if proc.returncode == 0 else None


def changed_paths(root: Path, base: str, head: str | None, *paths: str) -> list[str]:
    """Paths under `paths` that differ between `base` and `head` (None: the working tree)."""
    args = ["diff", "--name-only", base] + ([head] if head else []) + ["--", *paths]
    return [line for line in git(root, *args).splitlines() if line]


def fetch_artifact(root: Path, path: str, rev: str, out: Path) -> Path:
    """Materialise a DVC-tracked file as it was at `rev` (local cache first, then the remote)."""
    hint = "the model must be in the DVC cache or a reachable DVC remote (dvc push)"
    try:
        dvc(root, "get", str(root), path, "--rev", rev, "-o", str(out), "--force")
    except VcsError as err:
        raise VcsError(f"cannot fetch {path} at {rev[:12]}: {err.message}", hint=hint) from err
    if not out.is_file():
        raise VcsError(f"cannot fetch {path} at {rev[:12]}: dvc get wrote nothing", hint=hint)
    return out


def cache_object(root: Path, md5: str) -> Path:
    """Where the DVC cache of `root` keeps the object with this md5 (it may not exist)."""
    directory = Path(dvc(root, "cache", "dir").strip())
    return directory / "files" / "md5" / md5[:2] / md5[2:]


_FIELD, _RECORD = "\x00", "\x1e"
_TAG_FORMAT = "%00".join(
    [
        "%(refname:strip=2)",
        "%(*objectname)",
        "%(objectname)",
        "%(creatordate:unix)",
        "%(taggername)",
        "%(contents)",
    ]
)


def list_tags(root: Path, pattern: str = "refs/tags") -> list[tuple[str, str, int, str, str]]:
    """Every tag as (name, commit, created, message, tagger), read by one git process."""
    out = git(root, "for-each-ref", f"--format={_TAG_FORMAT}%1e", pattern)
    tags = []
    for record in out.split(_RECORD):
        record = record.lstrip("\n")
        if not record:
            continue
        name, peeled, obj, created, tagger, message = record.split(_FIELD, 5)
        tags.append((name, peeled or obj, int(created or 0), message.strip(), tagger))
    return tags


def read_blobs(root: Path, specs: list[str]) -> list[str | None]:
    """The text of each `REV:PATH` in `specs` (None where absent), through one git process."""
    if not specs:
        return []
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=root,
        input="".join(f"{spec}\n" for spec in specs).encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise VcsError(f"git cat-file failed: {proc.stderr.decode(errors='replace').strip()}")
    out, pos = proc.stdout, 0
    texts: list[str | None] = []
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] != b"blob":
            texts.append(None)
            continue
        size = int(header[2])
        texts.append(out[pos : pos + size].decode("utf-8", errors="replace"))
        pos += size + 1
    return texts


def dirty_paths(root: Path) -> list[str]:
    """Tracked files with changes and untracked files that are not ignored."""
    out = git(root, "status", "--porcelain", "--untracked-files=all")
    return [line[3:] for line in out.splitlines() if line.strip()]


_STAGE_ERROR = re.compile(r"^(?:\[[\w-]+\] )?error: (.+)$")


def _run_tool(root: Path, *cmd: str, env: dict[str, str] | None = None) -> str:
    """Run dvc or gto in `root` (with `env` added); raise VcsError with the tool's message."""
    full_env = {**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})}
    try:
        proc = subprocess.run(
            list(cmd), cwd=root, capture_output=True, text=True, check=False, env=full_env
        )
    except FileNotFoundError as err:
        raise VcsError(f"{cmd[0]} is not installed or not on PATH") from err
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).replace("\u274c", "").strip()
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
        detail = errors[0] if errors else " ".join(text.split())[-400:]
        # a gitml stage that failed says why on its own `[stage] error: ...` line: keep it
        why = [m.group(1) for ln in text.splitlines() if (m := _STAGE_ERROR.match(ln))]
        if why and errors:
            detail += f"; the stage said: {why[-1]}"
        words = list(cmd[2:]) if cmd[1:2] == ("-m",) else [Path(cmd[0]).name, *cmd[1:]]
        shown = " ".join(words[:3])
        raise VcsError(f"`{shown} ...` failed: {detail or proc.returncode}")
    return proc.stdout


def dvc(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `dvc ARGS` with the interpreter running gitml (so both see the same packages)."""
    return _run_tool(root, sys.executable, "-m", "dvc", *args, env=env)


def share_dvc_remotes(root: Path, work: Path) -> None:
    """Point the DVC project in `work` (a worktree of `root`) at `root`'s remotes, with
    local directories made absolute (a relative URL would move with the worktree).

    Read from `dvc config --list` (`key=value` lines, a later level overriding an earlier
    one): `dvc remote list` wraps a long path onto the next line. Written to `work`'s
    `.dvc/config.local`, which Git ignores.
    """
    try:
        lines = dvc(root, "config", "--list").splitlines()
    except VcsError:
        return
    urls: dict[str, str] = {}
    for line in lines:
        key, _, url = line.partition("=")
        if key.startswith("remote.") and key.endswith(".url"):
            urls[key.removeprefix("remote.").removesuffix(".url")] = url
    for name, url in urls.items():
        if "://" in url:
            continue
        absolute = (root / ".dvc" / url).resolve() if not os.path.isabs(url) else Path(url)
        dvc(work, "remote", "modify", "--local", name, "url", str(absolute))


def share_dvc_cache(root: Path, work: Path) -> None:
    """Let the DVC project in `work` (a worktree of `root`) use `root`'s cache: what one
    adds or builds, the other can check out without a remote."""
    dvc(work, "cache", "dir", "--local", dvc(root, "cache", "dir").strip())


def gto(root: Path, *args: str) -> str:
    """Run `gto ARGS`: the executable beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "gto"
    return _run_tool(root, str(beside) if beside.is_file() else "gto", *args)


@dataclass(frozen=True)
class LockEntry:
    """One dependency or output that dvc.lock records; md5 is None for untracked ones."""

    path: str
    md5: str | None = None


@dataclass(frozen=True)
class LockStage:
    deps: tuple[LockEntry, ...] = ()
    outs: tuple[LockEntry, ...] = ()


@dataclass(frozen=True)
class DvcLock:
    """dvc.lock, typed: the stages that ran (in file order) and the hashes they recorded."""

    stages: dict[str, LockStage] = field(default_factory=dict)

    def hashes(self) -> dict[str, str]:
        """path -> md5 of every dependency and output that DVC tracks by hash."""
        return {
            e.path: e.md5
            for stage in self.stages.values()
            for e in (*stage.deps, *stage.outs)
            if e.md5
        }

    def outs(self) -> list[LockEntry]:
        """Every output recorded with a hash (data, model, reports), in stage order."""
        return [o for stage in self.stages.values() for o in stage.outs if o.md5]

    def out_md5(self, path: str) -> str | None:
        """The md5 recorded for output `path`, or None."""
        return next((o.md5 for o in self.outs() if o.path == path), None)


def parse_lock(text: str, *, source: str) -> DvcLock:
    """Parse dvc.lock text (the working tree's or any revision's); the one reader of it."""
    import yaml

    try:
        # libyaml's loader when PyYAML has it: the review reads two revisions' locks
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise DataError(f"{source} is not valid YAML: {err}") from err
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if raw is not None and not isinstance(stages, dict | None):
        raise DataError(f"{source}: `stages` must be a mapping, got {type(stages).__name__}")
    return DvcLock(
        {
            str(name): LockStage(_lock_entries(spec, "deps"), _lock_entries(spec, "outs"))
            for name, spec in (stages or {}).items()
        }
    )


def read_lock(path: Path) -> DvcLock:
    """A dvc.lock file; empty when it does not exist (no stage has run yet)."""
    if not path.is_file():
        return DvcLock()
    return parse_lock(path.read_text(encoding="utf-8"), source=str(path))


def _lock_entries(spec: Any, key: str) -> tuple[LockEntry, ...]:
    entries = spec.get(key) if isinstance(spec, dict) else None
    return tuple(
        LockEntry(str(e["path"]), str(e["md5"]) if e.get("md5") else None)
        for e in entries or []
        if isinstance(e, dict) and "path" in e
    )
