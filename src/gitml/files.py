"""Write files atomically (temporary file, fsync, rename) and hash them."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gitml.errors import ConfigError, DataError

_TMP_PREFIX = ".gitml-tmp-"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    A crash or SIGKILL leaves at most a `.gitml-tmp-*` file (git-ignored), never a
    half-written target; stale temporaries of the same target are removed on the next write.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f"{_TMP_PREFIX}{target.name}.*"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{target.name}.", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; outputs get normal modes
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str]) -> Iterator[list[Path]]:
    """Yield staging paths for `targets`; replace all of them in one atomic step on success.

    For outputs that only make sense together (a model, its signature and its metadata):
    after a crash or SIGKILL at any instant, readers see either all the old files or all
    the new ones, never a mix. The targets must share one directory, which is replaced as a
    whole: its new version is staged (the block writes the targets, every other entry is
    hard-linked across, e.g. DVC's .gitignore) and swapped with the old one by a single
    rename. Staging happens in the project's `.dvc/tmp/` (or a git-ignored `.gitml-tmp-*`
    sibling when there is no DVC project), so a leftover is invisible to `git status` and
    `dvc status`; leftovers are removed on the next call.
    """
    paths = [Path(t) for t in targets]
    directory = _shared_directory(paths)
    root = _staging_root(directory)
    tag = hashlib.sha256(str(directory).encode()).hexdigest()[:8]
    prefix = f"{_TMP_PREFIX}{directory.name}-{tag}."
    for stale in root.glob(f"{prefix}*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    try:
        names = {p.name for p in paths}
        if directory.is_dir():
            os.chmod(staging, stat.S_IMODE(directory.stat().st_mode))
            _link_entries(directory, staging, skip=names)
        else:
            os.chmod(staging, 0o777 & ~current_umask())
        yield [staging / p.name for p in paths]
        missing = sorted(n for n in names if not (staging / n).is_file())
        if missing:
            raise DataError(f"{directory}: {', '.join(missing)} not written; nothing replaced")
        for name in names:
            _fsync(staging / name)
        _fsync(staging)
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, directory)
        elif not _rename_exchange(staging, directory):
            # no atomic exchange on this platform or file system (renameat2 is Linux-only):
            # replace the files one by one, which a kill between two renames can split
            for name in sorted(names):
                os.replace(staging / name, directory / name)
        _fsync(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after a swap: the old directory


def _shared_directory(paths: list[Path]) -> Path:
    parents = sorted({str(p.parent.resolve()) for p in paths})
    if len(parents) != 1 or len({p.name for p in paths}) != len(paths):
        raise ConfigError(
            "files replaced together must be distinct files in one directory; got "
            + ", ".join(map(str, paths)),
            hint="declare them in the same directory in dvc.yaml (e.g. models/)",
        )
    directory = Path(parents[0])
    here = Path.cwd().resolve()
    holds_project = (directory / ".git").exists() or (directory / ".dvc").exists()
    if holds_project or directory == here or directory in here.parents:
        raise ConfigError(
            f"{directory}: files replaced together need a directory of their own, but this "
            "one holds the project or the working directory",
            hint="write them to a subdirectory (e.g. models/) in dvc.yaml",
        )
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory}: expected a directory, found a file")
    return directory


def _staging_root(directory: Path) -> Path:
    """The DVC project's `.dvc/tmp/` when on the same file system as `directory`, else its
    parent: a rename cannot cross file systems."""
    parent = directory.parent
    while not parent.exists():
        parent = parent.parent
    for candidate in (parent, *parent.parents):
        if (candidate / ".dvc").is_dir():
            tmp = candidate / ".dvc" / "tmp"
            tmp.mkdir(exist_ok=True)
            if tmp.stat().st_dev == parent.stat().st_dev:
                return tmp
            break
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _link_entries(src: Path, dst: Path, *, skip: set[str]) -> None:
    """Hard-link (or copy, where links fail) every entry of `src` into `dst`, recursively."""
    for entry in src.iterdir():
        if entry.name in skip or entry.name.startswith(_TMP_PREFIX):
            continue
        target = dst / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            target.mkdir()
            shutil.copymode(entry, target)
            _link_entries(entry, target, skip=set())
        else:
            try:
                os.link(entry, target)
            except OSError:  # a file system without hard links
                shutil.copy2(entry, target)


_AT_FDCWD = -100  # Linux <fcntl.h>
_RENAME_EXCHANGE = 2  # Linux <linux/fs.h>


def _rename_exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system
        return False
    raise DataError(f"cannot replace {b} with {a}: {os.strerror(code)}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(target: str | os.PathLike[str], payload: bytes) -> None:
    """Write bytes to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(payload)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to `target` atomically."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as indented JSON (stable key order as given) atomically."""
    write_text(target, json.dumps(data, indent=2, allow_nan=False) + "\n")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    return file_digests(path, "sha256")[0]


def file_digests(path: Path, *algorithms: str) -> tuple[str, ...]:
    """Hex digests of a file (e.g. "md5", "sha256"), computed in one streamed read."""
    digests = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            for digest in digests:
                digest.update(block)
    return tuple(digest.hexdigest() for digest in digests)
