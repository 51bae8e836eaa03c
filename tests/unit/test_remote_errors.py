"""What a user reads when a DVC remote fails: the cause named from DVC's own words, the remote
and the path tried, DVC's message kept. The words are those DVC 3 with dvc-s3 and dvc-ssh
printed against moto and sshd (tests/integration/test_remotes.py runs them for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitml.vcs import Remote, _add_local_sections, _remote_failure

S3 = Remote("storage", "s3://bucket/churn")
SSH = Remote("storage", "ssh://127.0.0.1:2222/srv/dvc")
MD5 = "95b348a62a100138f46c071a36ee07fb"


@pytest.mark.parametrize(
    ("said", "remote", "meaning"),
    [
        (
            'ERROR: unexpected error - Could not connect to the endpoint URL: "http://127.0.0.1:1/'
            'bucket?list-type=2"',
            S3,
            "the remote is unreachable",
        ),
        (
            "ERROR: unexpected error - [Errno 111] Connect call failed ('127.0.0.1', 1)",
            SSH,
            "the remote is unreachable",
        ),
        (
            "ERROR: unexpected error - The request signature we calculated does not match: An "
            "error occurred (SignatureDoesNotMatch) when calling the ListObjectsV2 operation",
            S3,
            "the remote refused the credentials",
        ),
        (
            "ERROR: unexpected error - Permission denied for user root on host 127.0.0.1",
            SSH,
            "the remote refused the credentials",
        ),
        (
            "ERROR: unexpected error - The specified bucket does not exist: An error occurred "
            "(NoSuchBucket) when calling the ListObjectsV2 operation",
            S3,
            "the bucket does not exist",
        ),
        (
            "ERROR: failed to transfer '95b348a62a100138f46c071a36ee07fb' - Failure",
            SSH,
            "its disk may be full",
        ),
        (
            "ERROR: unexpected error - [Errno 2] No storage files available: 'models/model.skops'",
            S3,
            "the remote does not hold the data",
        ),
    ],
)
def test_a_remote_failure_names_its_cause_the_remote_and_the_path(
    said: str, remote: Remote, meaning: str
) -> None:
    err = _remote_failure(said, remote, "push", "", MD5)
    assert err is not None
    assert meaning in err.message
    assert "DVC remote 'storage': " in err.message
    assert f"path tried: {remote.url}/files/md5/95/b348a62a100138f46c071a36ee07fb" in err.message
    assert err.message.endswith(f"DVC said: {said}")
    assert err.hint


def test_without_an_object_the_path_tried_is_the_remote_url() -> None:
    err = _remote_failure("NoSuchBucket", S3, "pull", "data/raw", None)
    assert err is not None and f"path tried: {S3.url};" in err.message
    assert err.message.startswith("cannot pull data/raw through DVC remote 'storage'")


def test_failures_that_are_not_the_remote_s_stay_as_dvc_said_them() -> None:
    assert (
        _remote_failure("ERROR: failed to reproduce 'train': exit 1", S3, "pull", "", None) is None
    )
    assert _remote_failure("NoSuchBucket", None, "pull", "", None) is None


def test_a_worktree_gets_the_local_remote_settings_but_keeps_its_cache(tmp_path: Path) -> None:
    """`gitml reproduce` and `gitml retrain` work in a worktree, which Git gives no
    `.dvc/config.local`: the key file, user and URL overrides come along; the cache that
    `share_dvc_cache` set stays (the original's own cache setting does not)."""
    target = tmp_path / ".dvc" / "config.local"
    target.parent.mkdir()
    target.write_text("[cache]\n    dir = /shared/cache\n")
    local = (
        "[core]\n    remote = storage\n[cache]\n    dir = /elsewhere\n"
        "['remote \"storage\"']\n    keyfile = /home/me/.ssh/key\n    user = dvc\n"
    )
    _add_local_sections(local, target)
    assert target.read_text() == (
        "[cache]\n    dir = /shared/cache\n[core]\n    remote = storage\n"
        "['remote \"storage\"']\n    keyfile = /home/me/.ssh/key\n    user = dvc\n"
    )
