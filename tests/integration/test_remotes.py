"""The reference project through real DVC remotes: moto's S3 API server and Debian's sshd,
both on 127.0.0.1, started and stopped here.

One test per remote walks a team's path: refusals first (unreachable, wrong credentials,
missing bucket, a full disk: no tag, nothing changed), then `gitml release` (which pushes), a
fresh clone's `make repro` restored from the remote, `gitml fetch` and the release bundle
from a second clone with an empty cache, `gitml reproduce`, and a grep of every committed
file, every tag and the bundle for the credentials used. The source data is DVC-tracked (as
in a project `gitml init` makes), so `gitml reproduce` must pull it from the remote.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.remotes import (
    S3Server,
    SshServer,
    free_port,
    s3_server,
    ssh_server,
    tiny_filesystem,
)
from tests.support import copy_repo, dvc, git, gitml, ran_stages, run

NAME = "churn-classifier"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = "data/external/telco_churn.csv.gz"
MODEL = "models/model.skops"


@dataclass
class Remote:
    """One remote as a test drives it: how to configure a clone, what its secrets are."""

    kind: str
    name: str
    url: str
    secrets: list[str]
    server: S3Server | SshServer

    def configure(self, repo: Path, *, commit: bool) -> None:
        """What a team commits (URL, endpoint) and what each member keeps local."""
        if commit:
            dvc("remote", "add", "-d", self.name, self.url, cwd=repo)
            if isinstance(self.server, S3Server):
                dvc("remote", "modify", self.name, "endpointurl", self.server.endpoint, cwd=repo)
        if isinstance(self.server, SshServer):
            dvc("remote", "modify", "--local", self.name, "user", self.server.user, cwd=repo)
            keyfile = str(self.server.keyfile)
            dvc("remote", "modify", "--local", self.name, "keyfile", keyfile, cwd=repo)


@pytest.fixture(scope="module", params=["s3", "ssh"])
def remote(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Remote]:
    if request.param == "s3":
        with s3_server() as s3, pytest.MonkeyPatch.context() as env:
            for key, value in s3.env.items():
                env.setenv(key, value)  # credentials travel in the environment only
            yield Remote("s3", "storage", s3.url("churn"), [s3.access_key, s3.secret_key], s3)
        return
    with ssh_server(tmp_path_factory.mktemp("sshd")) as ssh:
        key_lines = ssh.keyfile.read_text().splitlines()[1:-1]
        secrets = [line for line in key_lines if len(line) > 20] + [str(ssh.keyfile)]
        yield Remote("ssh", "storage", ssh.url("churn"), secrets, ssh)


def _refused(*args: str, cwd: Path) -> str:
    proc = gitml(*args, cwd=cwd, check=False)
    assert proc.returncode != 0, f"gitml {' '.join(args)} should have failed:\n{proc.stdout}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "hint: " in proc.stderr, proc.stderr
    return proc.stderr


def _unchanged(repo: Path, head: str) -> None:
    """A refused command left no tag, the same HEAD and a clean tree."""
    assert git("tag", "--list", cwd=repo).stdout == ""
    assert git("rev-parse", "HEAD", cwd=repo).stdout.strip() == head
    assert git("status", "--porcelain", cwd=repo).stdout == ""


def _clone(origin: Path, dst: Path, remote: Remote) -> Path:
    git("clone", "-q", str(origin), str(dst), cwd=origin.parent)
    remote.configure(dst, commit=False)
    return dst


def _set_local(repo: Path, name: str, key: str, value: str) -> None:
    dvc("remote", "modify", "--local", name, key, value, cwd=repo)


def _unset_local(repo: Path) -> None:
    (repo / ".dvc" / "config.local").unlink(missing_ok=True)


def test_project_through_remote(
    remote: Remote, built_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_repo(built_repo, tmp_path / "origin")
    # the source data in DVC, as `gitml init` leaves it: reproduce must pull it
    git("rm", "-q", "--cached", SOURCE, cwd=repo)
    dvc("add", "-q", SOURCE, cwd=repo)
    remote.configure(repo, commit=True)
    (repo / "Makefile").write_bytes((ROOT / "Makefile").read_bytes())
    git("add", "-A", cwd=repo)
    git("commit", "-qm", f"DVC remote: {remote.kind}", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    model_md5 = _model_md5(repo)

    # a refused release: a clear error naming the remote and the path, no tag, nothing changed
    if isinstance(remote.server, S3Server):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        err = _refused("release", cwd=repo)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", remote.server.secret_key)
        assert "the remote refused the credentials" in err
        assert f"path tried: {remote.url}/files/md5/" in err
    else:  # a full disk on the server: some objects stored, the model not, no tag
        server = remote.server
        with tiny_filesystem(server.storage / "full", "64k") as full:
            _set_local(repo, remote.name, "url", f"ssh://127.0.0.1:{server.port}{full}")
            err = _refused("release", cwd=repo)
            assert not any(p.name == model_md5[2:] for p in full.rglob("*"))
        _unset_local(repo)
        remote.configure(repo, commit=False)
        assert "disk may be full" in err
        tried = f"ssh://127.0.0.1:{server.port}{full}/files/md5/{model_md5[:2]}/{model_md5[2:]}"
        assert f"path tried: {tried}" in err
    assert f"refusing to tag {NAME}@v1.0.0: cannot push through DVC remote 'storage'" in err
    assert "nothing was tagged" in err
    _unchanged(repo, head)

    # release pushes to the remote, which then holds every output, the model above all
    out = gitml("release", cwd=repo).stdout
    assert f"released {NAME}@v1.0.0" in out
    assert dvc("status", "--cloud", "--json", cwd=repo).stdout.strip() in ("{}", "")

    # a fresh clone restores everything from the remote: `make repro` runs no stage
    first = _clone(repo, tmp_path / "first", remote)
    proc = run("make", "--no-print-directory", "repro", f"VENV={sys.prefix}", cwd=first)
    assert "data and models restored from the DVC cache or remote" in proc.stdout
    assert ran_stages(proc.stdout) == [], proc.stdout
    assert (first / MODEL).read_bytes() == (repo / MODEL).read_bytes()
    assert git("status", "--porcelain", cwd=first).stdout == ""

    # a second clone with an empty cache builds the release bundle (`gitml fetch` inside)
    if isinstance(remote.server, SshServer):  # as the workflows do, from secrets
        git("clone", "-q", str(repo), str(tmp_path / "second"), cwd=tmp_path)
        second = tmp_path / "second"
        monkeypatch.setenv("DVC_REMOTE_SSH_KEY", remote.server.keyfile.read_text())
        monkeypatch.setenv("DVC_REMOTE_SSH_USER", remote.server.user)
        monkeypatch.setenv("RUNNER_TEMP", str(tmp_path / "runner"))
        run(ROOT / ".ci" / "dvc-remote-auth", cwd=second)
        for name in ("DVC_REMOTE_SSH_KEY", "DVC_REMOTE_SSH_USER", "RUNNER_TEMP"):
            monkeypatch.delenv(name)
        written = tmp_path / "runner" / "gitml-dvc-ssh" / "key"
        assert written.stat().st_mode & 0o777 == 0o600
        assert f"keyfile = {written}" in (second / ".dvc" / "config.local").read_text()
    else:
        second = _clone(repo, tmp_path / "second", remote)
    dist = tmp_path / "dist"
    run(ROOT / ".ci" / "release-bundle", f"{NAME}@v1.0.0", str(dist), cwd=second)
    assert (dist / "bundle" / "model.skops").read_bytes() == (repo / MODEL).read_bytes()
    assert not (second / ".dvc" / "cache").exists()  # it came from the remote

    # the credentials are nowhere in Git (files, tag messages) nor in the bundle
    tags = git("for-each-ref", "--format=%(contents)", "refs/tags", cwd=repo).stdout
    texts = {"tags": tags.encode()}
    for path in git("ls-files", cwd=repo).stdout.splitlines():
        texts[path] = (repo / path).read_bytes()
    with tarfile.open(dist / f"{NAME}-v1.0.0.tar.gz") as packed:
        for member in packed.getmembers():
            data = packed.extractfile(member)
            texts[f"bundle:{member.name}"] = data.read() if data else b""
    assert "bundle:bundle/model.skops" in texts and ".dvc/config" in texts
    for secret in remote.secrets:
        leaks = [name for name, data in texts.items() if secret.encode() in data]
        assert leaks == [], f"a credential is in {leaks}"

    # fetch through bad remotes: clear errors, and the destination keeps what it had
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "model.skops").write_bytes(b"the previous model")
    object_path = f"files/md5/{model_md5[:2]}/{model_md5[2:]}"
    dead = f"127.0.0.1:{free_port()}"
    if isinstance(remote.server, S3Server):
        _set_local(second, remote.name, "endpointurl", f"http://{dead}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore retries a refused connection
        unreachable = _refused("fetch", f"{NAME}@v1.0.0", "-o", str(kept), cwd=second)
        monkeypatch.delenv("AWS_MAX_ATTEMPTS")
        _unset_local(second)
        _set_local(second, remote.name, "url", "s3://no-such-bucket/churn")
        bucket = _refused("fetch", f"{NAME}@v1.0.0", "-o", str(kept), cwd=second)
        assert "the bucket does not exist" in bucket
        assert f"path tried: s3://no-such-bucket/churn/{object_path}" in bucket
        tried = f"{remote.url}/{object_path}"
    else:
        other_key = tmp_path / "other_key"  # a key the server never authorised
        cmd = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)]
        subprocess.run(cmd, check=True, capture_output=True)
        _set_local(second, remote.name, "keyfile", str(other_key))
        wrong = _refused("fetch", f"{NAME}@v1.0.0", "-o", str(kept), cwd=second)
        assert "the remote refused the credentials" in wrong, wrong
        assert f"path tried: {remote.url}/{object_path}" in wrong
        tried = f"ssh://{dead}{remote.server.storage}/churn"
        _set_local(second, remote.name, "url", tried)
        unreachable = _refused("fetch", f"{NAME}@v1.0.0", "-o", str(kept), cwd=second)
        tried += f"/{object_path}"
    assert f"cannot fetch {NAME}@v1.0.0" in unreachable and "unreachable" in unreachable
    assert "DVC remote 'storage'" in unreachable and f"path tried: {tried}" in unreachable
    assert (kept / "model.skops").read_bytes() == b"the previous model"

    # reproduce pulls the source data from the remote into a fresh worktree
    if isinstance(remote.server, SshServer):
        _set_local(first, remote.name, "url", f"ssh://{dead}{remote.server.storage}/churn")
        err = _refused("reproduce", f"{NAME}@v1.0.0", cwd=first)
        assert "cannot reproduce" in err and "DVC remote 'storage'" in err, err
        assert "unreachable" in err and f"path tried: ssh://{dead}" in err
        _set_local(first, remote.name, "url", remote.url)
    out = gitml("reproduce", f"{NAME}@v1.0.0", cwd=first).stdout
    assert f"{NAME}@v1.0.0 reproduces" in out


def _model_md5(repo: Path) -> str:
    import yaml

    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == MODEL)
