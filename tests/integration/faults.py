"""Real faults for child processes: a full disk, a directory they may not write, a stuck write.

Set in the child between fork and exec (`preexec_fn`), so the fault is the kernel's own:
- a full disk: `RLIMIT_FSIZE`; a write past the limit fails with EFBIG (the child must
  ignore SIGXFSZ, as gitml does, or the signal kills it);
- a directory it may not write: mode 0555. Root ignores modes, so a root test run also drops
  CAP_DAC_OVERRIDE from the child's bounding set: after exec it is a root without the
  override, whom the mode stops like anyone else;
- stuck I/O: a FIFO where the writer opens its next file; with no reader, the open blocks,
  as on a hung network file system (made by the test itself with `os.mkfifo`).
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
from collections.abc import Callable

import pytest

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def file_size_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn: writes past `limit` bytes of any file fail with EFBIG."""

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return preexec


def lift_file_size_limit(pid: int) -> None:
    """The disk has room again: lift the limit of a running process."""
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)


def _drop_dac_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def mode_abiding() -> Callable[[], None] | None:
    """A preexec_fn (None when not root) after which the child obeys file modes; skips the
    test where a root process cannot drop the capability."""
    if os.geteuid() != 0:
        return None
    try:
        subprocess.run(["true"], preexec_fn=_drop_dac_override, check=True)
    except (subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"root cannot drop CAP_DAC_OVERRIDE here ({err})")
    return _drop_dac_override
