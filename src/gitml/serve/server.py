"""Running the app: in this process (`run_server`), or as a supervisor and N worker
processes (`run_workers`, uvicorn's multiprocess supervisor; `app_from_environment` is
each worker's app).

The supervisor never loads a model: the CLI fetches and checks each model's files
(`bundle.check_model_files`: hash, signature, the archive's types) without scikit-learn, and
hands the workers their paths. Each worker loads the models (skops' full audit of trusted
types included), builds the app and freezes its heap. So N workers hold N copies of the
models, and the supervisor stays small. A worker that cannot load a model records why and
exits with uvicorn's start-up failure code; the supervisor then stops every worker and
`run_workers` raises that reason: a server is wholly up or not at all.

Garbage collection: the collector is off while a server starts (`defer_collection`): the
imports and the model load allocate hundreds of thousands of long-lived objects, and the
collections they would trigger only scan them again (a third of a second of a 2 s start).
Once the models are loaded and the app is built, `freeze_heap` moves every object alive to
the collector's permanent generation (`gc.freeze`) and turns the collector back on, with a
higher first-generation threshold. Later collections then scan only what requests allocate,
not the models, the libraries and the app: a full collection over that heap took tens of
milliseconds in the middle of a request, the tail of the latency under load (p99 at
concurrency 8 under `wrk`: 150 ms before, 13-18 ms after, on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import logging.config
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.config.schema import ServeParams
from gitml.errors import GitmlError, ModelError
from gitml.serve.bundle import WorkerModel, check_model_files, load_model_files

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gitml.serve.deployment import Deployment
    from gitml.serve.reload import Reloader
    from gitml.serve.runtime import ModelRuntime

_log = logging.getLogger(__name__)

_SPEC_ENV = "GITML_SERVE_SPEC"
# prometheus-client's multiprocess mode (`gitml.serve.telemetry` reads it in the workers)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_FAILURE_FILE = "worker-failure.json"
# on SIGHUP a new worker must be ready within this long, or the old ones stay (uvicorn's
# default 5 s is less than a worker takes to load, verify and check its models)
_WORKER_READY_S = 120
_GEN0_THRESHOLD = 10_000  # CPython 3.11's default is 700: fewer, still small, young passes


def run_server(
    deployment: Deployment,
    settings: ServeParams,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_dir: Path | None = None,
    access_log: bool = False,
    reloader: Reloader | None = None,
) -> None:
    """Serve `deployment` in this process until SIGINT or SIGTERM; then finish requests in
    flight and flush the log. SIGHUP runs `reloader` (if given)."""
    import uvicorn

    from gitml.serve.app import NoDelayH11Protocol, create_app

    app = create_app(deployment, settings, log_dir=log_dir, reloader=reloader)
    freeze_heap()
    uvicorn.run(app, http=NoDelayH11Protocol, **_uvicorn_options(settings, host, port, access_log))


def run_workers(
    models: list[WorkerModel],
    settings: ServeParams,
    *,
    shadow: WorkerModel | None = None,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_dir: Path | None = None,
    access_log: bool = False,
    source: dict[str, Any] | None = None,
) -> None:
    """Supervise `workers` processes that each load `models` and serve them on one socket,
    until SIGINT or SIGTERM. Raises the first worker's reason (a GitmlError) if a worker
    could not start; then no worker is left running.

    SIGHUP makes uvicorn replace the workers one by one, each new one ready before the old one
    stops. With `source` (`DeploymentBuilder.describe()`), a worker resolves the references
    again when it starts (the versions their tags name now); one that fails to start stops the
    replacement, and the old workers go on serving."""
    import uvicorn

    from gitml.serve.supervisor import patched_workers

    with tempfile.TemporaryDirectory(prefix="gitml-serve-") as private:
        shared = Path(private) / "metrics"
        shared.mkdir()
        failure = Path(private) / _FAILURE_FILE
        spec = {
            "models": [_model_spec(m) for m in models],
            "shadow": _model_spec(shadow) if shadow is not None else None,
            "settings": settings.model_dump(mode="json"),
            "log_dir": str(log_dir) if log_dir else None,
            "failure": str(failure),
            "source": source,  # what the references were (None: nothing moves)
        }
        # the workers are spawned: they inherit the environment, and prometheus-client reads
        # the directory when a worker imports it
        saved = {name: os.environ.get(name) for name in (_SPEC_ENV, MULTIPROCESS_ENV)}
        os.environ[_SPEC_ENV] = json.dumps(spec)
        os.environ[MULTIPROCESS_ENV] = str(shared)
        freeze_heap()  # the supervisor's collector back on (the CLI started with it off)
        try:
            with patched_workers():  # a worker's exit is seen at once
                uvicorn.run(
                    "gitml.serve.server:app_from_environment",
                    factory=True,
                    workers=workers,
                    timeout_worker_healthcheck=_WORKER_READY_S,
                    http="gitml.serve.app:NoDelayH11Protocol",
                    **_uvicorn_options(settings, host, port, access_log),
                )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            _reap_workers()
        if failure.is_file():
            raise _worker_failure(failure)


def _uvicorn_options(
    settings: ServeParams, host: str, port: int, access_log: bool
) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "log_level": "info",
        "access_log": access_log,
        "timeout_graceful_shutdown": settings.shutdown_timeout_s,
        "server_header": False,
        "log_config": _log_config(),
    }


def _model_spec(model: WorkerModel) -> dict[str, Any]:
    files = model.files
    return {
        "model": str(files.path),
        "name": files.name,
        "version": files.version,
        "commit": files.commit,
        "sha256": files.sha256,
        "metrics": files.metrics,
        "threshold": model.threshold,
        "ref": model.ref,
        "role": model.role,
    }


def _reap_workers() -> None:
    """Kill any worker uvicorn's supervisor left behind (one still starting when another
    failed, say): multiprocessing joins its live children when the interpreter exits, so one
    stuck worker would hang the supervisor's exit, and with it `gitml serve`."""
    import multiprocessing

    for child in multiprocessing.active_children():
        _log.warning("worker %s still running after the supervisor stopped: killed", child.pid)
        child.kill()
        child.join(5)


def app_from_environment() -> FastAPI:
    """The app of one worker process of `run_workers` (uvicorn's factory). A worker that
    cannot build it records why and exits with uvicorn's start-up failure code, which stops
    the supervisor and every other worker."""
    from uvicorn.config import STARTUP_FAILURE

    defer_collection()
    spec = json.loads(os.environ[_SPEC_ENV])
    try:
        app = _worker_app(spec)
    except Exception as err:
        _record_failure(Path(spec["failure"]), err)
        logging.shutdown()  # the reason is on stderr before the process goes
        # at once: while an interpreter winds down, uvicorn's supervisor waits out its
        # health check (_WORKER_READY_S) on a pipe still open before it sees the worker gone
        os._exit(STARTUP_FAILURE)
    freeze_heap()
    return app


def _worker_app(spec: dict[str, Any]) -> FastAPI:
    from gitml.serve.app import create_app
    from gitml.serve.deployment import Deployment

    settings = ServeParams.model_validate(spec["settings"])
    shadow = spec["shadow"]
    deployment = Deployment(
        [_runtime(item, settings) for item in spec["models"]],
        shadow=_runtime(shadow, settings) if shadow is not None else None,
    )
    builder = None
    if spec.get("source") is not None:
        from gitml.serve.reload import DeploymentBuilder

        builder = DeploymentBuilder.from_description(spec["source"])
        if builder.moving:  # the versions the references name now (after a SIGHUP)
            deployment = builder.build(deployment).deployment()
    log_dir = Path(spec["log_dir"]) if spec["log_dir"] else None
    app = create_app(deployment, settings, log_dir=log_dir)
    app.state.gitml_builder = builder  # its fetched releases live as long as the worker
    return app


def _runtime(item: dict[str, Any], settings: ServeParams) -> ModelRuntime:
    from gitml.serve.runtime import ModelRuntime

    files = check_model_files(
        item["model"],
        name=item["name"],
        version=item["version"],
        commit=item["commit"],
        metrics=item["metrics"],
    )
    if files.sha256 != item["sha256"]:  # e.g. `dvc repro` rewrote models/ meanwhile
        raise ModelError(
            f"{files.path}: changed since `gitml serve` checked it (SHA-256 "
            f"{item['sha256'][:12]}... then, {files.sha256[:12]}... now)",
            hint="start the server again to serve the new model",
        )
    served = load_model_files(files)
    return ModelRuntime(
        served, settings, threshold=item["threshold"], ref=item["ref"], role=item["role"]
    )


def _record_failure(path: Path, err: Exception) -> None:
    """Log why this worker cannot start and keep the first worker's reason for the
    supervisor (the others fail the same way, or are stopped)."""
    gitml_error = isinstance(err, GitmlError)
    message = err.message if isinstance(err, GitmlError) else f"{type(err).__name__}: {err}"
    _log.error("worker %d could not start: %s", os.getpid(), message, exc_info=not gitml_error)
    record = {
        "kind": type(err).__name__ if gitml_error else "GitmlError",
        "message": message,
        "hint": err.hint if isinstance(err, GitmlError) else None,
    }
    with contextlib.suppress(FileExistsError), open(path, "x", encoding="utf-8") as fh:
        json.dump(record, fh)


def _worker_failure(path: Path) -> GitmlError:
    from gitml import errors

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a worker died while writing it
        record = {"kind": "GitmlError", "message": "a worker failed while starting"}
    kind = getattr(errors, str(record.get("kind")), errors.GitmlError)
    if not (isinstance(kind, type) and issubclass(kind, errors.GitmlError)):
        kind = errors.GitmlError
    return kind(f"a worker could not start: {record['message']}", hint=record.get("hint"))


def defer_collection() -> None:
    """Turn the garbage collector off until `freeze_heap` (see the module docstring)."""
    gc.disable()


def freeze_heap() -> None:
    """Move every object alive (models, libraries, the app) out of the collector's reach
    (`gc.freeze`), raise the first generation's threshold and turn the collector on (see the
    module docstring). No collection first: a start leaves next to no cyclic garbage (a
    few dozen objects), and a full collection of that heap costs 0.1 s."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, older, oldest)
    gc.enable()


def configure_logging() -> None:
    """gitml's log lines printed the way uvicorn prints its own (call before building
    runtimes, which log the fast path's verdict; uvicorn applies it again)."""
    logging.config.dictConfig(_log_config())


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with gitml's own messages (the prediction log's, failed scoring)
    printed the same way."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["gitml"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
