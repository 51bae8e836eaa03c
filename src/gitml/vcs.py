"""The only module that calls git, dvc and gto."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitml.errors import DataError, RemoteError, VcsError


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
    """Materialise a DVC-tracked file as it was at `rev` (local cache first, then the remote).

    A failure that comes from the remote (unreachable, refused, no bucket) is a RemoteError
    naming the remote and the object's URL there, read from `rev`'s dvc.lock."""
    hint = "the model must be in the DVC cache or a reachable DVC remote (dvc push)"
    try:
        dvc(root, "get", str(root), path, "--rev", rev, "-o", str(out), "--force")
    except VcsError as err:
        remote = default_remote(root)
        text = show_file(root, rev, "dvc.lock")
        md5 = parse_lock(text, source=f"dvc.lock at {rev[:12]}").out_md5(path) if text else None
        failure = _remote_failure(err.message, remote, "fetch", path, md5)
        if failure is not None and remote is not None and _NOT_HELD in failure.message:
            # `dvc get` says only "No storage files available", whatever the reason: ask
            # the remote itself, which names a missing bucket or a refused credential
            failure = _probe_remote(root, remote, path, md5) or failure
        if failure is not None:
            raise failure from err
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
    """Point the DVC project in `work` (a worktree of `root`) at `root`'s remotes: its
    `.dvc/config.local` (credentials, key files, URL overrides: Git never carries them) is
    copied, and local directories are made absolute (a relative URL would move with the
    worktree).

    Read from `dvc config --list` (`key=value` lines, a later level overriding an earlier
    one): `dvc remote list` wraps a long path onto the next line. Written to `work`'s
    `.dvc/config.local`, which Git ignores.
    """
    local = root / ".dvc" / "config.local"
    if local.is_file():
        _add_local_sections(local.read_text(encoding="utf-8"), work / ".dvc" / "config.local")
    for remote in list_remotes(root):
        if "://" in remote.url:
            continue
        dvc(work, "remote", "modify", "--local", remote.name, "url", remote.url)


@dataclass(frozen=True)
class Remote:
    """A DVC remote as configured (all levels merged): its name and URL (absolute for a
    local directory)."""

    name: str
    url: str

    def object_url(self, md5: str) -> str:
        """Where DVC 3 keeps the object with this md5 in the remote."""
        return f"{self.url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def list_remotes(root: Path) -> list[Remote]:
    """The remotes of `root`, the default first."""
    remotes, default = _read_remotes(root)
    return sorted(remotes, key=lambda r: r.name != default)


def default_remote(root: Path) -> Remote | None:
    """The remote `dvc push` and `dvc pull` use without `-r`, or None when none is set."""
    remotes, default = _read_remotes(root)
    return next((r for r in remotes if r.name == default), None)


def _read_remotes(root: Path) -> tuple[list[Remote], str | None]:
    """Every remote and the default's name, from one `dvc config --list` (all levels)."""
    try:
        lines = dvc(root, "config", "--list").splitlines()
    except VcsError:
        return [], None
    urls: dict[str, str] = {}
    default = None
    for line in lines:
        key, _, value = line.partition("=")
        if key == "core.remote":
            default = value
        elif key.startswith("remote.") and key.endswith(".url"):
            urls[key.removeprefix("remote.").removesuffix(".url")] = value
    remotes = [
        Remote(name, url if "://" in url or os.path.isabs(url) else _absolute(root, url))
        for name, url in urls.items()
    ]
    return remotes, default


def _absolute(root: Path, url: str) -> str:
    return str((root / ".dvc" / url).resolve())


def push_data(root: Path, *targets: str, md5: str | None = None) -> Remote:
    """`dvc push [TARGETS]` to the default remote; a failure is a RemoteError that names
    the remote and the path tried (the object with `md5` when given, else the remote's URL).
    """
    remote = _require_remote(root, "push to")
    try:
        dvc(root, "push", "-r", remote.name, *targets)
    except VcsError as err:
        raise _remote_failure(err.message, remote, "push", " ".join(targets), md5) or (
            RemoteError(
                f"cannot push to DVC remote {remote.name!r} ({remote.url}): {err.message}",
                hint=f"check the remote with `dvc status --cloud -r {remote.name}`",
            )
        ) from err
    return remote


def pull_data(root: Path, *targets: str) -> Remote | None:
    """`dvc pull [TARGETS]` (the cache first, then the default remote); a failure that comes
    from the remote is a RemoteError naming it, anything else the VcsError as DVC said it."""
    try:
        dvc(root, "pull", *targets)
    except VcsError as err:
        remote = default_remote(root)
        failure = _remote_failure(err.message, remote, "pull", " ".join(targets), None)
        raise (failure or err) from err
    return default_remote(root)


def missing_in_remote(root: Path, remote: Remote, *targets: str) -> list[str]:
    """Outputs (of TARGETS, or all) whose data the remote does not hold, asked of the remote
    itself (`dvc status --cloud`): what a release must never tag."""
    try:
        out = dvc(root, "status", "--cloud", "-r", remote.name, "--json", *targets)
    except VcsError as err:
        raise _remote_failure(err.message, remote, "check", " ".join(targets), None) or (
            RemoteError(
                f"cannot ask DVC remote {remote.name!r} ({remote.url}) what it holds: {err.message}"
            )
        ) from err
    status = json.loads(out or "{}")
    return sorted(path for path, state in status.items() if state != "deleted")


def explain_remote_failure(root: Path, err: VcsError, action: str) -> RemoteError | None:
    """The RemoteError behind a failed dvc command of `root` that reached its default
    remote (`dvc repro --pull`, ...), or None when the failure came from elsewhere (a stage
    that failed is never blamed on the remote)."""
    if "the stage said:" in err.message:
        return None
    return _remote_failure(err.message, default_remote(root), action, "", None)


def _require_remote(root: Path, action: str) -> Remote:
    remote = default_remote(root)
    if remote is None:
        raise RemoteError(
            f"no default DVC remote to {action} in {root}",
            hint="add one: `dvc remote add -d NAME URL` (s3://bucket/prefix, "
            "ssh://host/path or a directory); see the README's `DVC remotes`",
        )
    return remote


_NOT_HELD = "the remote does not hold the data"
# What DVC and its filesystems say, by cause: (patterns, what it means, what to do)
_REMOTE_CAUSES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        (
            "Connect call failed",
            "Could not connect to the endpoint",
            "Connection refused",
            "Name or service not known",
            "nodename nor servname",
            "timed out",
            "Connect timeout",
            "No route to host",
        ),
        "the remote is unreachable (nothing answered)",
        "check the URL and port (`dvc remote list`, `endpointurl` for S3), that the server "
        "runs, and the network",
    ),
    (
        (
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AccessDenied",
            "Access Denied",
            "Forbidden",
            "Unable to locate credentials",
            "NoCredentialsError",
            "Permission denied for user",
            "Authentication failed",
            "No more authentication methods",
        ),
        "the remote refused the credentials",
        "S3: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or set them with `dvc remote "
        "modify --local`); SSH: `dvc remote modify --local NAME keyfile ~/.ssh/KEY` and "
        "`user`, and the public key in the server's authorized_keys",
    ),
    (
        ("NoSuchBucket", "bucket does not exist"),
        "the bucket does not exist",
        "create the bucket, or fix the URL: `dvc remote modify NAME url s3://BUCKET/PREFIX`",
    ),
    (
        ("No space left", "Disk quota exceeded", "failed to upload", "failed to transfer"),
        "the remote did not store the data (its disk may be full or the path not writable)",
        "check free space and permissions on the remote (df, quota); nothing was replaced, "
        "and pushing again resends only what is missing",
    ),
    (
        (
            "No storage files available",
            "failed to download",
            "failed to pull data",
            "missing data 'source'",
        ),
        _NOT_HELD,
        "push it from a clone that has it (`dvc push`), or check the remote's URL",
    ),
)


def _probe_remote(root: Path, remote: Remote, what: str, md5: str | None) -> RemoteError | None:
    """Why the remote failed, when asking it directly (`dvc status --cloud`) says more."""
    try:
        dvc(root, "status", "--cloud", "-r", remote.name, "--json")
    except VcsError as err:
        failure = _remote_failure(err.message, remote, "fetch", what, md5)
        if failure is not None and _NOT_HELD not in failure.message:
            return failure
    return None


def _remote_failure(
    detail: str, remote: Remote | None, action: str, what: str, md5: str | None
) -> RemoteError | None:
    """A RemoteError for a DVC failure that came from the remote, else None."""
    if remote is None:
        return None
    for patterns, meaning, hint in _REMOTE_CAUSES:
        if any(p.lower() in detail.lower() for p in patterns):
            tried = remote.object_url(md5) if md5 else remote.url
            subject = f" {what}" if what else ""
            return RemoteError(
                f"cannot {action}{subject} through DVC remote {remote.name!r}: {meaning}; "
                f"path tried: {tried}; DVC said: {detail}",
                hint=hint,
            )
    return None


_SECTION = re.compile(r"^\s*\[")


def _add_local_sections(text: str, target: Path) -> None:
    """Append the sections of a `.dvc/config.local` (remotes, core) to `target`, except the
    cache's and those `target` has already (`share_dvc_cache` may have set the cache)."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if _SECTION.match(line):
            sections.append([])
        sections[-1].append(line)
    have = target.read_text(encoding="utf-8") if target.is_file() else ""
    taken = {line.strip() for line in have.splitlines() if _SECTION.match(line)}
    kept = [
        lines
        for lines in sections[1:]
        if lines[0].strip() != "[cache]" and lines[0].strip() not in taken
    ]
    if kept:
        target.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(line for lines in kept for line in lines)
        target.write_text((have.rstrip("\n") + "\n" if have else "") + body + "\n")


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
