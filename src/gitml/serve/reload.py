"""The models `gitml serve` names, built at start and built again on SIGHUP.

`gitml serve --ref NAME#prod --ref NAME#staging --shadow NAME#candidate` names models by
references that move: a stage tag (`gitml promote`, `gitml rollback`) or `@latest`.
`DeploymentBuilder.build` resolves each reference through the registry (the repository's
tags), fetches and verifies the release (`load_released_model`: the SHA-256 recorded at
release) and builds its runtime; on a rebuild, a reference that names a version already
being served (in the same role) takes its running runtime. References that resolve to the
same version share one runtime.

`Reloader` runs on SIGHUP (single-process `gitml serve`): it builds in a thread, so the event
loop keeps answering; starts the new runtimes; swaps them in at once; lets requests that
started before the swap finish on the runtimes they found; then closes the old runtimes'
prediction logs. A failed build (a tag that names an unknown version, a model that fails
verification) changes nothing: the old versions go on serving and the server log says why.
`HangUp` ties SIGHUP to the `Reloader` for as long as the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitml.errors import ConfigError, GitmlError

if TYPE_CHECKING:  # runtime and deployment: imported where built (a supervisor only describes)
    from gitml.config.schema import Params
    from gitml.project import Project
    from gitml.serve.bundle import WorkerModel
    from gitml.serve.context import ServeContext
    from gitml.serve.deployment import Deployment
    from gitml.serve.runtime import ModelRuntime, Role

_log = logging.getLogger(__name__)

_DRAIN_SECONDS = 30.0  # requests that started before a swap get this long to finish


@dataclass(frozen=True)
class Plan:
    """What to serve after a build: the primaries in order, the shadow, and which of them are
    new (not started yet)."""

    runtimes: list[ModelRuntime]
    shadow: ModelRuntime | None
    fresh: list[ModelRuntime]

    def deployment(self) -> Deployment:
        from gitml.serve.deployment import Deployment

        return Deployment(self.runtimes, shadow=self.shadow)


class DeploymentBuilder:
    """Builds the runtimes of `--model` / `--ref ...` / `--shadow`, and owns the temporary
    directories their releases were fetched into (`discard`, `close`)."""

    def __init__(
        self,
        project: Project,
        params: Params,
        *,
        model: Path | None = None,
        refs: Sequence[str] = (),
        shadow: str | None = None,
    ) -> None:
        if model is not None and refs:
            raise ConfigError("give --model or --ref, not both")
        self.project = project
        self.params = params
        self.model = model
        self.refs: list[str | None] = list(refs) or [None]
        self.shadow = shadow
        self._dirs: dict[int, tempfile.TemporaryDirectory[str]] = {}

    def describe(self) -> dict[str, Any]:
        """What `from_description` rebuilds this builder from (JSON: a worker process's)."""
        return {
            "project": str(self.project.root),
            "params": self.params.model_dump(mode="json"),
            "model": str(self.model) if self.model is not None else None,
            "refs": [ref for ref in self.refs if ref is not None],
            "shadow": self.shadow,
        }

    @classmethod
    def from_description(cls, described: dict[str, Any]) -> DeploymentBuilder:
        from gitml.config.schema import Params
        from gitml.project import Project

        return cls(
            Project(Path(described["project"])),
            Params.model_validate(described["params"]),
            model=Path(described["model"]) if described["model"] else None,
            refs=described["refs"],
            shadow=described["shadow"],
        )

    @property
    def moving(self) -> bool:
        """Whether any reference can name another version later (a stage, `@latest`)."""
        return any(_moves(ref) for ref in [*self.refs, self.shadow] if ref is not None)

    def build(self, current: Deployment | None = None) -> Plan:
        """Resolve, fetch, verify and build every model (blocking: run it off the event loop).
        With `current`, runtimes still naming the version their reference resolves to are
        kept. Raises GitmlError and leaves nothing behind when any model fails.

        The references are built side by side (a fetch is mostly waiting for `dvc get`)."""
        fresh: list[ModelRuntime] = []
        wanted: list[tuple[str | None, Role]] = [(ref, "primary") for ref in self.refs]
        if self.shadow is not None:
            wanted.append((self.shadow, "shadow"))
        with ThreadPoolExecutor(len(wanted), thread_name_prefix="gitml-build") as pool:
            jobs = [pool.submit(self._runtime, ref, role, current, fresh) for ref, role in wanted]
        failed = next((job.exception() for job in jobs if job.exception() is not None), None)
        if failed is not None:
            self.discard(fresh)
            raise failed
        built = [job.result() for job in jobs]
        shadow = built.pop() if self.shadow is not None else None
        primaries: list[ModelRuntime] = []
        for ref, runtime in zip(self.refs, built, strict=True):
            twin = next((r for r in primaries if r.key == runtime.key), None)
            if twin is None:
                primaries.append(runtime)
            elif twin is not runtime:
                _log.info("%s names %s, as %s does: served once", ref, runtime.key, twin.ref)
        kept = [r for r in fresh if r in primaries or r is shadow]
        self.discard([r for r in fresh if r not in kept])  # a second reference to one version
        return Plan(primaries, shadow, kept)

    def check(self) -> tuple[list[WorkerModel], WorkerModel | None]:
        """The models as `gitml serve --workers N` hands them to its workers: each fetched
        (into a directory this builder owns until `close`) and checked without loading it
        (`bundle.check_model_files`), so the supervisor never builds a pipeline. Two
        references to one version hand it over once, as `build` serves it once."""
        from gitml.serve.bundle import WorkerModel, check_project_model, fetch_released_model

        def checked(ref: str | None, role: Role) -> WorkerModel:
            if ref is None:
                files = check_project_model(self.project.root, self.model)
            else:
                directory = tempfile.TemporaryDirectory(prefix="gitml-release-")
                self._dirs[id(directory)] = directory  # removed by `close`
                files = fetch_released_model(self.project, ref, Path(directory.name) / "model")
            # a release keeps the threshold it was evaluated with
            threshold = self.params.threshold_for(files.threshold)
            return WorkerModel(files, threshold, ref=ref, role=role)

        primaries: list[WorkerModel] = []
        for ref in self.refs:
            model = checked(ref, "primary")
            if all(
                (m.files.name, m.files.version) != (model.files.name, model.files.version)
                for m in primaries
            ):
                primaries.append(model)
        shadow = checked(self.shadow, "shadow") if self.shadow is not None else None
        return primaries, shadow

    def discard(self, runtimes: Sequence[ModelRuntime]) -> None:
        """Remove the fetched releases of runtimes no longer served."""
        for runtime in runtimes:
            directory = self._dirs.pop(id(runtime), None)
            if directory is not None:
                directory.cleanup()

    def close(self) -> None:
        """Remove every fetched release (the server has stopped)."""
        for directory in self._dirs.values():
            directory.cleanup()
        self._dirs.clear()

    def _runtime(
        self,
        ref: str | None,
        role: Role,
        current: Deployment | None,
        fresh: list[ModelRuntime],
    ) -> ModelRuntime:
        if current is not None:
            running = self._still_current(ref, role, current)
            if running is not None:
                return running
        from gitml.serve.bundle import load_project_model, load_released_model
        from gitml.serve.runtime import ModelRuntime

        settings = self.params.serve
        if ref is None:
            served = load_project_model(self.project.root, self.model)  # refuses a bad model
            runtime = ModelRuntime(
                served, settings, threshold=self.params.threshold_for(None), role=role
            )
            fresh.append(runtime)
            return runtime
        directory = tempfile.TemporaryDirectory(prefix="gitml-release-")
        try:
            served, recorded = load_released_model(
                self.project, ref, Path(directory.name) / "model"
            )
            # a release keeps the threshold it was evaluated with
            runtime = ModelRuntime(
                served, settings, threshold=self.params.threshold_for(recorded), ref=ref, role=role
            )
        except BaseException:
            directory.cleanup()
            raise
        self._dirs[id(runtime)] = directory
        fresh.append(runtime)
        return runtime

    def _still_current(
        self, ref: str | None, role: Role, current: Deployment
    ) -> ModelRuntime | None:
        """A running runtime (of `role`) that `ref` still names: its own, for a model file or
        a fixed version; for a moving reference, whichever serves the version it names now."""
        candidates = [r for r in (current.runtimes if role == "primary" else [current.shadow]) if r]
        own = next((r for r in candidates if r.ref == ref), None)
        if ref is None or not _moves(ref):
            return own  # a model file, or a fixed version, is reloaded by a restart
        from gitml.registry.catalog import load_registry
        from gitml.registry.tags import parse_ref

        wanted = parse_ref(ref)
        history = load_registry(self.project.root).get(wanted.name)
        if history is None:
            return None  # the fetch names what is missing
        version = history.resolve(wanted).version
        return next(
            (r for r in candidates if r.key.name == wanted.name and r.key.version == version),
            None,
        )


def _moves(ref: str) -> bool:
    """A stage (`NAME#prod`), `NAME@latest` or a bare `NAME`: not one fixed version."""
    return "#" in ref or "@" not in ref or ref.endswith("@latest")


class Reloader:
    """Rebuilds a running server's deployment on SIGHUP (see the module docstring)."""

    def __init__(self, builder: DeploymentBuilder) -> None:
        self.builder = builder
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._swapped = False  # the running reload has swapped (its old versions to close)

    def request(self, ctx: ServeContext) -> None:
        """Reload soon (the SIGHUP handler): one reload at a time; a signal during a reload
        makes one more follow it."""
        if self._task is not None and not self._task.done():
            _log.info("SIGHUP during a reload: another reload follows this one")
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(ctx))

    async def _run(self, ctx: ServeContext) -> None:
        while True:
            self._again = False
            await self.reload(ctx)
            if not self._again:
                return

    async def stop(self, timeout: float) -> None:
        """The server is stopping: a reload still building is abandoned; one that has swapped
        is given `timeout` to close the old versions' logs."""
        task = self._task
        if task is None or task.done():
            return
        self._again = False
        if not self._swapped:
            task.cancel()
            return
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def reload(self, ctx: ServeContext) -> bool:
        """Build, start, swap, drain, close; False (and the old versions still serving) if the
        build failed."""
        deployment = ctx.deployment
        before = _served(deployment)
        self._swapped = False
        _log.info("SIGHUP: resolving %s again", ", ".join(_refs(self.builder)))
        loop = asyncio.get_running_loop()
        try:
            plan = await loop.run_in_executor(None, self.builder.build, deployment)
        except Exception as err:
            ctx.metrics.reloads.labels("failed").inc()
            reason = err.message if isinstance(err, GitmlError) else repr(err)
            hint = f" (hint: {err.hint})" if isinstance(err, GitmlError) and err.hint else ""
            _log.error("reload failed; still serving %s: %s%s", before, reason, hint)
            return False
        for runtime in plan.fresh:
            runtime.metrics = ctx.metrics
            served = runtime.served
            ctx.metrics.add_model(served.name, served.version, served.commit)
            runtime.start(ctx.log_dir)
        gone = deployment.swap(plan.runtimes, plan.shadow)
        self._swapped = True
        ctx.declare_fields()
        ctx.metrics.reloads.labels("ok").inc()
        after = _served(deployment)
        _log.info(
            "reloaded: serving %s" + (" (was %s)" if after != before else " (unchanged)"),
            after,
            *([before] if after != before else []),
        )
        if not gone:
            return True
        drained = await deployment.drained(_DRAIN_SECONDS)
        if any(r.role == "shadow" for r in gone):
            await deployment.wait_shadow(ctx.settings.shadow_timeout_s)
        for runtime in gone:
            if drained:  # a request still holding one must not be refused
                runtime.stop_scoring()
        timeout = ctx.settings.shutdown_timeout_s
        await loop.run_in_executor(None, _close_logs, gone, timeout)
        serving = {r.key for r in deployment.all()}
        for runtime in gone:
            served = runtime.served
            if runtime.key not in serving:  # a shadow and a primary may share a version
                ctx.metrics.remove_model(served.name, served.version, served.commit)
            if runtime.log is not None:
                deployment.retired_logs.append(replace(runtime.log.stats(), failing=None))
        self.builder.discard(gone)
        return True


def _close_logs(runtimes: list[ModelRuntime], timeout: float) -> None:
    for runtime in runtimes:
        runtime.close_log(timeout)


def _served(deployment: Deployment) -> str:
    text = ", ".join(str(r.key) for r in deployment.runtimes)
    if deployment.shadow is not None:
        text += f" (shadow {deployment.shadow.key})"
    return text


def _refs(builder: DeploymentBuilder) -> list[str]:
    refs = [ref or "the project's model" for ref in builder.refs]
    return refs + ([f"{builder.shadow} (shadow)"] if builder.shadow else [])


class HangUp:
    """SIGHUP while the app runs: a reload with a `Reloader` (`gitml serve`, one process),
    else ignored (its default would kill the server: with `--workers N`, SIGHUP goes to
    uvicorn's supervisor, which replaces the workers one by one). Signals reach only the main
    thread: an app served from a thread (tests) installs nothing."""

    def __init__(self, ctx: ServeContext, reloader: Reloader | None) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        if reloader is None:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGHUP, reloader.request, ctx)

    def restore(self) -> None:
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the last steps of the shutdown
