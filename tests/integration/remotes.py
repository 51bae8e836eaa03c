"""Real DVC remote servers on 127.0.0.1 for tests and benchmarks: the one doorway to moto's
S3 API server and to Debian's sshd.

Each server is started by a context manager and stopped when it exits. The credentials are
made up per server and handed to DVC only as the environment (S3) or through
`.dvc/config.local` (SSH), as a team would: `configure_s3` / `configure_ssh` write a project's
remote that way, and tests grep committed files for the secrets.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
MISSING_SSHD = (
    f"{SSHD} not found: the SSH remote tests run Debian's sshd; install it with "
    "`apt-get install -y openssh-server` (.ci/run does when it runs as root)"
)
START_TIMEOUT = 15.0
# create_user, put_user_policy, create_access_key: moto checks signatures after these
_BOOTSTRAP_REQUESTS = 3


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it; a race is retried by callers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} on start: {err.strip()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT} s")


@dataclass(frozen=True)
class S3Server:
    """A moto S3 API server: its endpoint, one bucket, and the credentials it was given."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    @property
    def env(self) -> dict[str, str]:
        """What a DVC user exports: credentials only ever travel in the environment."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


@contextmanager
def s3_server(bucket: str = "gitml-dvc") -> Iterator[S3Server]:
    """moto in server mode (`moto_server`, its own process) on a free loopback port.

    moto accepts any credentials unless told otherwise. `INITIAL_NO_AUTH_ACTION_COUNT`
    lets the first requests (the IAM calls that make a user and its access key) through
    unsigned checks and turns moto's authentication on after them, so a wrong secret is
    refused with SignatureDoesNotMatch, as AWS does.
    """
    port = free_port()
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(_BOOTSTRAP_REQUESTS),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = Path(sys.executable).parent / "moto_server"
    cmd = [str(server), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        _wait_listening(port, proc, "moto_server")
        endpoint = f"http://127.0.0.1:{port}"
        access_key, secret_key = _make_s3_user(endpoint, bucket)
        yield S3Server(endpoint, bucket, access_key, secret_key)
    finally:
        _stop(proc)


def _make_s3_user(endpoint: str, bucket: str) -> tuple[str, str]:
    """An IAM user allowed everything, its access key, and the bucket (made with that key):
    exactly _BOOTSTRAP_REQUESTS unauthenticated requests, then everything is signed."""
    import boto3

    root = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "root-bootstrap",
        "aws_secret_access_key": "root-bootstrap",
    }
    iam = boto3.client("iam", **root)
    user = f"gitml-{secrets.token_hex(4)}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="all",
        PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Action":"*","Resource":"*"}]}',
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    access, secret = key["AccessKeyId"], key["SecretAccessKey"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
    )
    s3.create_bucket(Bucket=bucket)
    return access, secret


@dataclass(frozen=True)
class SshServer:
    """Debian's sshd on a loopback port, a client key it accepts, and a storage directory."""

    port: int
    user: str
    keyfile: Path
    host_key_pub: Path
    storage: Path
    directory: Path = field(repr=False)

    def url(self, prefix: str) -> str:
        return f"ssh://127.0.0.1:{self.port}{self.storage / prefix}"

    def known_hosts_line(self) -> str:
        """The line `~/.ssh/known_hosts` needs for this server (`[host]:port keytype key`)."""
        kind, key = self.host_key_pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}"


def require_sshd() -> None:
    """Fail (never skip) when sshd is missing: the SSH remote is tested, not optional."""
    if not SSHD.is_file():
        raise RuntimeError(MISSING_SSHD)


@contextmanager
def ssh_server(directory: Path) -> Iterator[SshServer]:
    """`sshd -D -e -f CONFIG -p PORT` with a host key and a client key made in `directory`.

    Only the client key may log in (no passwords, no PAM), as the user running the tests;
    sshd runs in the foreground as our child and is terminated on exit.
    """
    require_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(
            [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "gitml-test", "-f", str(key)],
            check=True,
            capture_output=True,
        )
    authorized = directory / "authorized_keys"
    shutil.copyfile(client_key.with_suffix(".pub"), authorized)
    storage = directory / "storage"
    storage.mkdir(exist_ok=True)
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        # sshd as root insists on its privilege separation directory (Debian's service
        # unit creates it; a container without systemd has none)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = None
    for _attempt in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config), "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_listening(port, proc, "sshd")
            break
        except RuntimeError:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if _attempt == 2:
                raise
    assert proc is not None
    try:
        yield SshServer(
            port,
            getpass.getuser(),
            client_key,
            host_key.with_suffix(".pub"),
            storage,
            directory,
        )
    finally:
        _stop(proc)


@contextmanager
def tiny_filesystem(path: Path, size: str = "64k") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path`: a remote disk that fills up after a few files.

    Needs root (`mount -t tmpfs`); anyone else gets a clear error rather than a test that
    pretends to cover a full disk.
    """
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"cannot mount a {size} tmpfs on {path} to simulate a full remote disk "
            f"(needs root; running as uid {os.geteuid()}): {proc.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a test server: SIGTERM, SIGKILL after 10 s, its stderr pipe closed."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()
