"""gitml's servers as the benchmark starts them: `gitml serve` (every protocol), the same with
the small-input fast path off, and the in-process API serving a model with a shadow."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from serving.env import ENTRY, HOST, OUT_DIR, bench_env
from serving.models import Model
from serving.servers import ServerSpec
from serving.wire import gitml_routes


def gitml_spec(model: Model, workers: int) -> ServerSpec:
    """`gitml serve --model M -C PROJECT --workers N`, measured over /v1, V2 and /invocations."""
    base = [sys.executable, "-m", "gitml", "serve", "--model", str(model.path)]
    base += ["-C", str(model.project), "--workers", str(workers), "--host", HOST]
    return ServerSpec(
        name=f"{model.key}-gitml-w{workers}",
        label="gitml",
        kind="gitml",
        workers=workers,
        command=lambda port: [*base, "--port", str(port)],
        env=bench_env(),
        ready_path="/readyz",
        routes=gitml_routes(model),
    )


def gitml_nofast_spec(model: Model, workers: int) -> ServerSpec:
    """`gitml serve` with `serve.fast_path_max_rows: 0`: every request through the pipeline.

    The server reads its settings from a project's params.yaml; this one is a scratch copy of
    the project's conf/ and params.yaml (under bench/out/) with that one value changed.
    """
    import yaml

    scratch = OUT_DIR / f"project-fast-path-off-{model.key}"
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(model.project / "conf", scratch / "conf")
    params = yaml.safe_load((model.project / "params.yaml").read_text(encoding="utf-8"))
    params.setdefault("serve", {})["fast_path_max_rows"] = 0
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    base = [sys.executable, "-m", "gitml", "serve", "--model", str(model.path)]
    base += ["-C", str(scratch), "--workers", str(workers), "--host", HOST]
    return ServerSpec(
        name=f"{model.key}-gitml-nofast-w{workers}",
        label="gitml, fast path off",
        kind="gitml-nofast",
        workers=workers,
        command=lambda port: [*base, "--port", str(port)],
        env=bench_env(),
        ready_path="/readyz",
        routes={"v1": gitml_routes(model)["v1"]},
    )


def shadow_spec(model: Model, *, shadow: bool) -> ServerSpec:
    """The model served by the in-process API (`Deployment`, `run_server`), with the same
    model file as its own shadow or without one: `python bench/serve.py --shadow-server`."""
    base = [sys.executable, str(ENTRY), "--shadow-server", str(model.path), str(model.project)]
    return ServerSpec(
        name=f"{model.key}-deployment-{'shadow' if shadow else 'alone'}",
        label="gitml, with a shadow" if shadow else "gitml, no shadow",
        kind="shadow" if shadow else "alone",
        workers=1,
        command=lambda port: [*base, str(port), *(["--with-shadow"] if shadow else [])],
        env=bench_env(),
        ready_path="/readyz",
        routes={"v1": gitml_routes(model)["v1"]},
    )


def serve_deployment(model_path: Path, project: Path, port: int, *, with_shadow: bool) -> int:
    """Serve `model_path` as `gitml serve` does, with (or without) a second runtime of the
    same file as its shadow: what `--shadow REF` builds, without making a release."""
    from gitml.config.compose import load_params
    from gitml.project import find_project
    from gitml.serve.bundle import load_served_model
    from gitml.serve.deployment import Deployment
    from gitml.serve.runtime import ModelRuntime
    from gitml.serve.server import configure_logging, run_server

    proj = find_project(project)
    params = load_params(proj.params_path)
    settings = params.serve
    threshold = params.threshold_for(None)
    configure_logging()
    primary = ModelRuntime(load_served_model(model_path), settings, threshold=threshold)
    candidate = None
    if with_shadow:
        served = load_served_model(model_path)
        candidate = ModelRuntime(served, settings, threshold=threshold, role="shadow")
    log_dir = None
    if settings.prediction_log.enabled:
        log_dir = OUT_DIR / f"shadow-log-{'on' if with_shadow else 'off'}"
    deployment = Deployment([primary], shadow=candidate)
    run_server(deployment, settings, host=HOST, port=port, log_dir=log_dir)
    return 0
