"""The one exception hierarchy of gitml.

GitmlError                  base; carries a hint and an exit code
├── ProjectError            not inside a gitml project, missing files
├── ConfigError             conf/ or params.yaml is invalid or stale
│   └── StaleParamsError    params.yaml differs from the composition of conf/
├── DataError               a data file cannot be read or written
│   └── ValidationError     data breaks the declared schema or quality rules
│       └── InputError      records or rows to score break the model's signature
├── ModelError              a model cannot be built, saved or loaded
│   └── UntrustedModelError the model file is not a skops file or holds untrusted types
├── RegistryError           a release, promotion, fetch or reproduction is refused
├── VcsError                git or dvc failed
│   └── RemoteError         a DVC remote cannot be reached or refused a transfer
└── ClusterError            a Dask scheduler cannot be reached, or a task on it failed
"""

from __future__ import annotations


class GitmlError(Exception):
    """Base of every error gitml raises on purpose; the CLI prints it without a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        """Return the message as the CLI prints it: `error: ...` and an optional `hint: ...`."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled with its hint and fields, so an error raised on a Dask worker reaches the
        client whole (Exception's default pickling keeps only the message)."""
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[GitmlError], message: str, state: dict[str, object]) -> GitmlError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ProjectError(GitmlError):
    """The current directory is not a gitml project, or a required file is missing."""


class ConfigError(GitmlError):
    """Configuration in conf/ or params.yaml is invalid."""

    exit_code = 2


class StaleParamsError(ConfigError):
    """params.yaml is not what conf/ composes to."""

    exit_code = 1


class DataError(GitmlError):
    """A data file cannot be read, parsed or written."""


class ValidationError(DataError):
    """Data breaks the declared schema or a quality rule."""


class InputError(ValidationError):
    """Records or rows to score break the model's signature; `problems` lists each one."""

    def __init__(self, message: str, *, problems: list | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class ModelError(GitmlError):
    """A model cannot be built, saved or loaded."""


class UntrustedModelError(ModelError):
    """A model file is not a skops file, or holds types outside the trusted list."""


class RegistryError(GitmlError):
    """A release, promotion, rollback, fetch or reproduction is refused or failed."""


class VcsError(GitmlError):
    """A git or dvc command failed."""


class RemoteError(VcsError):
    """A DVC remote cannot be reached, refused the credentials, lacks its bucket or path, or
    failed a transfer; the message names the remote and the path tried."""


class ClusterError(GitmlError):
    """A Dask scheduler cannot be reached, or a task on the cluster failed."""


def os_reason(err: BaseException) -> str:
    """The OS's words for a failed read or write ('No space left on device'), from its errno;
    else the error's first line (pyarrow wraps errno in longer text)."""
    import os

    code = getattr(err, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return first_line(err)


def first_line(err: BaseException) -> str:
    """An error's first line of text, for one-line messages (its type when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
