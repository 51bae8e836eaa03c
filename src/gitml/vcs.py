"""The only module that calls git (and, for fetching old artifacts, dvc)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gitml.errors import VcsError


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
    proc = subprocess.run(
        ["dvc", "get", str(root), path, "--rev", rev, "-o", str(out), "--force"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise VcsError(
            f"cannot fetch {path} at {rev[:12]}: {detail[-1] if detail else 'dvc get failed'}",
            hint="the base model must be in the DVC cache or a reachable remote (dvc push)",
        )
    return out
