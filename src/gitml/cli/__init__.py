"""The `gitml` command line: the only place that prints, reads argv or exits.

Imports of heavy libraries happen inside the commands so that `gitml --help` stays fast.
Command groups that grew their own module register themselves on `app` when imported at the
end of this one: `monitor` (gitml monitor), `simulate` (gitml simulate), `retrain`
(gitml retrain).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from gitml import __version__
from gitml.errors import GitmlError

if TYPE_CHECKING:
    from gitml.registry.tags import Bump as VersionPart

app = typer.Typer(
    name="gitml",
    help="Git-centric, declarative MLOps: compose config, run and review DVC pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_state = {"verbose": False}

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-C", help="Project directory (default: search upward from cwd)."),
]

# --engine dask's cluster, for every command that takes --engine
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="With --engine dask: a running scheduler (tcp://HOST:PORT); default: a "
        "local cluster started for this run.",
    ),
]
DaskWorkersOption = Annotated[
    int, typer.Option("--workers", min=1, help="Workers of the local Dask cluster.")
]


RefOption = Annotated[
    str | None,
    typer.Option(
        "--ref",
        help="A release instead of the working tree: NAME@vX.Y.Z or NAME#STAGE "
        "(fetched from the DVC cache or remote, SHA-256 verified).",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gitml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    _state["verbose"] = verbose


@app.command()
def params(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Hydra overrides, e.g. model=random_forest model.params.C=0.5"),
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 with a diff if params.yaml is stale; write nothing."),
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Compose conf/ into params.yaml (byte-identical to what `dvc exp run -S` writes).

    Also checks that the model's name (project.model_name) is the model artifact's name in
    dvc.yaml: release tags, the registry and the served name follow from both."""
    from gitml.config.compose import check_params, write_params
    from gitml.project import find_project
    from gitml.registry.catalog import check_model_name

    proj = find_project(project)
    if check:
        checked = check_params(proj, overrides or [])
        check_model_name(proj.root, checked.project.model_name)
        typer.echo(f"{proj.params_path.name} is up to date with conf/")
        return
    write_params(
        proj, overrides or [], check=lambda p: check_model_name(proj.root, p.project.model_name)
    )
    shown = " ".join(overrides or []) or "no overrides"
    typer.echo(f"wrote {proj.params_path} ({shown})")
    if overrides:
        typer.echo(
            "note: `gitml params --check` compares with conf/ as it is; to keep these "
            "overrides, put them in conf/ (e.g. a conf/experiment/ preset in the defaults)",
            err=True,
        )


@app.command()
def report(
    base: Annotated[str, typer.Option("--base", help="Base revision: branch, tag or commit.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Markdown file to write.")],
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="Head revision (default: the working tree, read from its commit when clean).",
        ),
    ] = None,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute", help="Score the base model on head's test set (fetches it via DVC)."
        ),
    ] = False,
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Also write PNG plots (matplotlib) here and link them."),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Write the pull-request report: verdict, metrics with intervals, slices, params, data,
    model, plots and lineage, comparing head with base. Exit 0 when written, whatever the
    verdict; 1 or 2 on an error."""
    from gitml.files import write_text
    from gitml.project import find_project
    from gitml.review.review import build_review

    review = build_review(
        find_project(project),
        base=base,
        head=head,
        recompute=recompute,
        images=images,
        link_from=out.parent,
    )
    write_text(out, review.markdown)
    typer.echo(f"wrote {out}: {review.verdict.status}")


@app.command()
def gate(
    base: Annotated[str, typer.Option("--base", help="Base revision: branch, tag or commit.")],
    head: Annotated[
        str | None,
        typer.Option(
            "--head",
            help="Head revision (default: the working tree, read from its commit when clean).",
        ),
    ] = None,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Score the base model on head's test set.")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Apply the base's promotion policy (params `promotion` at --base). Exit 0 promote,
    1 blocked, 2 not comparable, 3 when the review itself failed (bad revision, stale params,
    unreadable outputs, anything else)."""
    from gitml.project import find_project
    from gitml.review.review import build_review

    try:
        review = build_review(find_project(project), base=base, head=head, recompute=recompute)
    except GitmlError as err:
        typer.echo(err.format(), err=True)
        raise typer.Exit(3) from err
    except Exception as err:  # any failure of the review itself is 3, never 1 ("blocked")
        if _state["verbose"]:
            raise
        typer.echo(f"error: the review failed: {type(err).__name__}: {err}", err=True)
        typer.echo("hint: rerun with `gitml -v gate ...` for the traceback", err=True)
        raise typer.Exit(3) from err
    verdict = review.verdict
    typer.echo(f"gate: {verdict.status}")
    if verdict.significant_regressions:
        typer.echo("  significantly worse: " + "; ".join(verdict.significant_regressions))
    for rule in verdict.rules:
        typer.echo(f"  {'pass' if rule.passed else 'FAIL'}  {rule.rule}: {rule.detail}")
    if verdict.reason:
        typer.echo(f"  note: {verdict.reason}")
    raise typer.Exit(verdict.exit_code)


Bump = typer.Option("--bump", help="Which part to raise: major, minor or patch.")
PushOption = Annotated[bool, typer.Option("--push", help="Push the new tag to origin.")]
TargetOption = Annotated[str, typer.Option("--target", help="The column to predict.")]
TaskOption = Annotated[
    str, typer.Option("--task", help="auto (from the target), binary, multiclass or regression.")
]
PositiveClassOption = Annotated[
    str | None,
    typer.Option(
        "--positive-class",
        help="Binary target: the positive class (default: 1/yes/true, else the minority).",
    ),
]
MessageOption = Annotated[str | None, typer.Option("--message", "-m", help="Tag message.")]


@app.command()
def release(
    name: Annotated[
        str | None, typer.Argument(help="Model artifact (default: the one in dvc.yaml).")
    ] = None,
    bump: Annotated[str | None, Bump] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Exact version, e.g. v1.3.0.")
    ] = None,
    message: MessageOption = None,
    push: PushOption = False,
    project: ProjectOption = None,
) -> None:
    """Register HEAD's model as a new version: a GTO tag NAME@vX.Y.Z. Refuses a dirty tree,
    a stale pipeline or params.yaml, a failing gate against the latest release, and model
    data that is not in the DVC remote (it runs `dvc push` first)."""
    from gitml.project import find_project
    from gitml.registry.release import release as make_release

    if bump not in (None, "major", "minor", "patch"):
        raise typer.BadParameter(f"--bump must be major, minor or patch, got {bump!r}")
    part = cast("VersionPart | None", bump)  # checked above: typer options cannot be Literal types
    done = make_release(
        find_project(project), name=name, version=version, bump=part, message=message, push=push
    )
    typer.echo(f"released {done.tag} at {done.commit[:12]} ({done.gate})")
    pushed = f"pushed {done.tag} to origin"
    typer.echo(pushed if done.pushed else f"to publish it: git push origin {done.tag}")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Model name, e.g. churn-classifier.")],
    version: Annotated[str, typer.Argument(help="Version to promote, e.g. v1.3.0.")],
    stage: Annotated[str, typer.Option("--stage", help="Target stage (from .gto).")],
    message: MessageOption = None,
    push: PushOption = False,
    project: ProjectOption = None,
) -> None:
    """Assign a stage to a version: a GTO tag NAME#STAGE#N, in the order .gto lists stages."""
    from gitml.project import find_project
    from gitml.registry.promotion import promote as assign

    done = assign(find_project(project), name, version, stage, message=message, push=push)
    was = f" (was {done.replaced})" if done.replaced else ""
    typer.echo(f"{name}@{done.version} is now in {stage}{was}: tag {done.tag}")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="Model name, e.g. churn-classifier.")],
    stage: Annotated[str, typer.Option("--stage", help="Stage to roll back.")] = "prod",
    message: MessageOption = None,
    push: PushOption = False,
    project: ProjectOption = None,
) -> None:
    """Re-assign a stage to the version that held it before the current one."""
    from gitml.project import find_project
    from gitml.registry.promotion import rollback as roll

    done = roll(find_project(project), name, stage, message=message, push=push)
    typer.echo(f"{stage} rolled back from {done.replaced} to {name}@{done.version}: tag {done.tag}")


@app.command("check-assignment")
def check_assignment(
    tag: Annotated[str, typer.Argument(help="A stage assignment tag, e.g. NAME#prod#7.")],
    project: ProjectOption = None,
) -> None:
    """Is TAG the stage assignment in force? Exit 0 yes, 1 when a later promotion, rollback,
    unassignment or deregistration superseded it, 3 on errors (not an assignment tag, unknown
    tag). The release workflow deploys a prod assignment only on 0."""
    from gitml.project import find_project
    from gitml.registry.promotion import assignment_status

    try:
        status = assignment_status(find_project(project), tag)
    except GitmlError as err:
        typer.echo(err.format(), err=True)
        raise typer.Exit(3) from err
    if status.in_force:
        typer.echo(f"{tag} is in force: {status.stage} holds {status.name}@{status.holder}")
        return
    now = (
        f"{status.name}@{status.holder} (tag {status.in_force_tag or 'none in force'})"
        if status.holder
        else "no version"
    )
    typer.echo(
        f"{tag} is superseded: it assigned {status.version or 'no live version'} to "
        f"{status.stage}, which now holds {now}"
    )
    raise typer.Exit(1)


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    project: ProjectOption = None,
) -> None:
    """Every registered model version: stages, date, commit and headline metrics."""
    import json

    from gitml.project import find_project
    from gitml.registry.catalog import list_models
    from gitml.tasks import HEADLINE, task_of_metrics

    rows = list_models(find_project(project).root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no model versions yet: create one with `gitml release`")
        return
    # the newest version's task picks the metric columns (a project has one task)
    headline = HEADLINE[task_of_metrics(rows[-1]["metrics"])]
    # plain aligned text: a rich table takes ~1 s to lay out 500 rows, this takes ~5 ms
    header = ["name", "version", "stages", "released", "commit", *headline]
    table = [header] + [
        [
            row["name"],
            row["version"],
            ",".join(row["stages"]) or "-",
            row["created"][:10],
            row["commit"][:10],
            *(_metric(row["metrics"].get(m)) for m in headline),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    numeric = len(header) - len(headline)
    for line in table:
        cells = [
            cell.rjust(width) if i >= numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command()
def fetch(
    ref: Annotated[str, typer.Argument(help="NAME@vX.Y.Z, NAME#STAGE or NAME (latest).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write.")],
    project: ProjectOption = None,
) -> None:
    """Materialise a released model (model.skops, signature, metadata, metrics, card) from the
    DVC cache or remote, verified against the SHA-256 recorded at release."""
    from gitml.project import find_project
    from gitml.registry.fetch import fetch_model

    done = fetch_model(find_project(project), ref, out)
    typer.echo(f"fetched {done.tag} ({done.commit[:12]}, sha256 {done.sha256[:16]}...) -> {out}")


@app.command()
def reproduce(
    ref: Annotated[str, typer.Argument(help="NAME@vX.Y.Z (or NAME#STAGE) to rebuild.")],
    tolerance: Annotated[
        float | None,
        typer.Option("--tolerance", help="Largest metric difference accepted (default: config)."),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Rebuild a release from its tag in a temporary worktree (`dvc repro --force`) and
    compare metrics and slice metrics with the recorded ones. Exit 1 when they differ."""
    from gitml.project import find_project
    from gitml.registry.reproduce import reproduce as rebuild

    done = rebuild(find_project(project), ref, tolerance=tolerance)
    if done.matches:
        typer.echo(
            f"{done.tag} reproduces: {done.compared} values within {done.tolerance:g} "
            f"of the recorded ones"
        )
        return
    typer.echo(f"{done.tag} does NOT reproduce: {len(done.differences)} of {done.compared} differ")
    for diff in done.differences[:30]:
        typer.echo(f"  {diff.file}: {diff.key}: recorded {diff.recorded}, got {diff.reproduced}")
    raise typer.Exit(1)


@contextlib.contextmanager
def _model_for(
    proj: Any, model: Path | None, ref: str | None
) -> Iterator[tuple[Any, float | None]]:
    """The model to serve or score, and the threshold its release recorded (None: config's).

    A --ref release is fetched into a temporary directory that lives as long as the server.
    """
    from gitml.serve.bundle import load_project_model, load_released_model

    _refuse_model_and_ref(model, ref)
    if ref is None:
        yield load_project_model(proj.root, model), None  # refuses a bad model early
        return
    with tempfile.TemporaryDirectory(prefix="gitml-release-") as tmp:
        yield load_released_model(proj, ref, Path(tmp) / "model")


def _refuse_model_and_ref(model: Path | None, ref: str | None) -> None:
    from gitml.errors import ConfigError

    if model is not None and ref is not None:
        raise ConfigError("give --model or --ref, not both")


@app.command()
def serve(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model file (signature.json and metadata.json beside it); "
            "default: the project's models/model.skops.",
        ),
    ] = None,
    refs: Annotated[
        list[str] | None,
        typer.Option(
            "--ref",
            help="A release instead of the working tree: NAME@vX.Y.Z or NAME#STAGE "
            "(fetched from the DVC cache or remote, SHA-256 verified). Repeat it to serve "
            "several versions; a bare model name routes to the first one given.",
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option(
            "--shadow",
            help="A release (NAME@vX.Y.Z or NAME#STAGE) that scores every request too, "
            "after the answer; both predictions go to the prediction log.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes; each loads the models, and /metrics adds up all of them.",
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (slower).")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Serve models over HTTP (FastAPI on uvicorn): gitml's /v1/predict, the Open Inference
    Protocol V2 (/v2/...), MLflow's /invocations, and /healthz, /readyz, /metrics. Settings:
    params `serve`. Stops on SIGINT or SIGTERM after answering the requests in flight and
    flushing the prediction log, within serve.shutdown_timeout_s. On SIGHUP, resolves each
    --ref and --shadow again (after `gitml promote`) and swaps the new versions in without
    dropping a request; a failed reload keeps the old ones."""
    import gc

    gc.disable()  # until the models are loaded (gitml.serve.server.freeze_heap turns it on)
    try:
        _serve_models(project, model, refs or [], shadow, host, port, workers, access_log)
    finally:
        gc.enable()


def _serve_models(
    project: Path | None,
    model: Path | None,
    refs: list[str],
    shadow: str | None,
    host: str,
    port: int,
    workers: int,
    access_log: bool,
) -> None:
    import os

    from gitml.config.compose import load_params
    from gitml.project import find_project
    from gitml.serve.reload import DeploymentBuilder, Reloader
    from gitml.serve.server import MULTIPROCESS_ENV, configure_logging, run_server, run_workers

    # one process keeps its metrics in memory; run_workers sets a private directory itself
    os.environ.pop(MULTIPROCESS_ENV, None)
    os.environ.pop(MULTIPROCESS_ENV.lower(), None)
    proj = find_project(project)
    params = load_params(proj.params_path)
    settings = params.serve
    log_dir = proj.root / settings.prediction_log.dir if settings.prediction_log.enabled else None
    configure_logging()
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_dir": log_dir,
        "access_log": access_log,
    }
    # each --ref is fetched into a temporary directory the builder removes when we stop
    builder = DeploymentBuilder(proj, params, model=model, refs=refs, shadow=shadow)
    shown: list[tuple[Any, str]]  # (a ServedModel or ModelFiles: name, version, path; role)
    try:
        if workers == 1:  # loaded and verified before the port is bound
            deployment = builder.build().deployment()
            shown = [(r.served, r.role) for r in deployment.all()]
            run = functools.partial(
                run_server, deployment, settings, reloader=Reloader(builder), **options
            )
        else:  # the supervisor checks the models; each worker loads them
            primaries, candidate = builder.check()
            shown = [(m.files, m.role) for m in [*primaries, *([candidate] if candidate else [])]]
            run = functools.partial(
                run_workers,
                primaries,
                settings,
                shadow=candidate,
                workers=workers,
                source=builder.describe(),  # a worker SIGHUP starts resolves them again
                **options,
            )
        _serve(shown, run, f"http://{host}:{port} with {workers} worker(s)", log_dir)
    finally:
        builder.close()


def _serve(
    shown: list[tuple[Any, str]], run: Callable[[], None], where: str, log_dir: Path | None
) -> None:
    """Say what is served (each model's name, version and path, and its role), then `run`
    the server until SIGINT or SIGTERM."""
    import signal

    stopped: list[int] = []
    # uvicorn re-raises the signal that stopped it once it is done; record it and exit 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopped.append(signum))
    _ignore_file_size_signal()
    for model, role in shown:
        typer.echo(
            f"serving {model.name} {model.version} ({model.path})"
            + (" as a shadow" if role == "shadow" else ""),
            err=True,
        )
    typer.echo(f"at {where}; prediction log: {log_dir or 'off'}", err=True)
    run()
    if stopped:
        typer.echo(f"stopped on {signal.Signals(stopped[0]).name}", err=True)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="The project directory (created if absent).")],
    data: Annotated[
        Path, typer.Option("--data", help="CSV (optionally compressed) or Parquet file.")
    ],
    target: TargetOption,
    task: TaskOption = "auto",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Project name (default: the directory's); the model's "
            "name follows from it (NAME-classifier or NAME-regressor).",
        ),
    ] = None,
    positive_class: PositiveClassOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Add the project to a non-empty directory (never overwrites a file)."
        ),
    ] = False,
) -> None:
    """Create a gitml project from a data file: schema, config, pipeline, tests, CI; run the
    pipeline once and commit. Nothing is written if the data or the directory is refused."""
    from gitml.scaffold.create import FLOOR_FILE, init_project

    result = init_project(
        directory,
        data=data,
        target=target,
        task=task,
        name=name,
        positive_class=positive_class,
        force=force,
        progress=typer.echo,
    )
    spec, floor = result.plan.spec, result.floor
    typer.echo(
        f"created {result.root}: project {spec.project_name}, model {spec.model_name} "
        f"({spec.task}), data schema conf/data/{spec.data_name}.yaml"
    )
    typer.echo(
        f"first run: {floor['metric']} {floor['first_run']}; quality floor {floor['floor']} "
        f"({FLOOR_FILE})"
    )
    enter = "" if directory.resolve() == Path.cwd() else f"cd {directory} && "
    typer.echo(f"next: {enter}make repro && make test (review conf/data/ first)")


schema_app = typer.Typer(
    help="Infer and write data schemas (conf/data/).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(schema_app, name="schema")


@schema_app.command("infer")
def schema_infer(
    path: Annotated[Path, typer.Argument(help="CSV (optionally compressed) or Parquet file.")],
    target: TargetOption,
    name: Annotated[
        str | None, typer.Option("--name", help="Schema name (default: from the file name).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="File to write (default: conf/data/NAME.yaml)."),
    ] = None,
    positive_class: PositiveClassOption = None,
    task: TaskOption = "auto",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    project: ProjectOption = None,
) -> None:
    """Profile a data file (streaming, bounded memory) and write a commented, editable
    conf/data/NAME.yaml: column types, categories, widened ranges, nullability, excluded
    columns with the reason, slice candidates. Prints the inferred task."""
    from gitml.config.data_yaml import render_data_yaml
    from gitml.data.inference import infer_schema, schema_name
    from gitml.errors import ConfigError, ProjectError
    from gitml.files import write_text
    from gitml.project import find_project

    if task not in ("auto", "binary", "multiclass", "regression"):
        raise typer.BadParameter(
            f"--task must be auto, binary, multiclass or regression, got {task!r}"
        )
    name = name or schema_name(path)
    try:
        root: Path | None = find_project(project).root
    except ProjectError:
        if out is None:
            raise
        root = None
    source = path.as_posix()
    if root is not None:
        try:  # the source as ingest reads it: relative to the project root
            source = path.resolve().relative_to(root).as_posix()
        except ValueError:
            raise ConfigError(
                f"{path}: the data file is outside the project {root}",
                hint="copy it under data/external/ (or `dvc add` it) and infer from there",
            ) from None
    target_file = out if out is not None else (root or Path()) / "conf" / "data" / f"{name}.yaml"
    if target_file.exists() and not force:
        raise ConfigError(
            f"{target_file}: already exists; nothing written",
            hint="pass --force to overwrite it, or --name/--out for another file",
        )
    draft = infer_schema(
        path, target=target, name=name, source=source, positive_class=positive_class, task=task
    )
    typer.echo(f"task: {draft.task}")
    text = render_data_yaml(draft)
    write_text(target_file, text)
    declared = [c for c in draft.columns if c.spec is not None and not c.excluded]
    excluded = [c.name for c in draft.columns if c.excluded]
    typer.echo(
        f"wrote {target_file}: {len(declared)} columns declared, {len(excluded)} excluded"
        + (f" ({', '.join(excluded)})" if excluded else "")
    )
    typer.echo(f"next: review it, then `gitml params data={name}` and `dvc repro`")


@app.command()
def predict(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV or Parquet file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV or Parquet file to write (by its suffix).")
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model file; default: the project's models/model.skops."),
    ] = None,
    ref: RefOption = None,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows per chunk.")
    ] = 100_000,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="fail: stop at the first bad row and write nothing; skip: score the good rows "
            "and write the bad ones to OUTPUT.rejected.csv.",
        ),
    ] = "fail",
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Input column to copy into the output (repeatable)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: this process; dask: a Dask cluster, INPUT a Parquet dataset "
            "(directory, glob or file), OUTPUT a directory of parts (docs/scale-out.md).",
        ),
    ] = "local",
    scheduler: SchedulerOption = None,
    workers: DaskWorkersOption = 2,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Also write each row's explanation: explanation:baseline, explanation:value "
            "and contribution:<column> per input (multiclass: per class, "
            "explanation:value:<class>, contribution:<class>:<column>); --engine local only.",
        ),
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Score a CSV or Parquet file in chunks with the served model and the API's input rules.
    Output: row (input data row number from 1), _row when present, --keep columns, then by
    task: score, label (binary); label, score:<class> per class (multiclass); value
    (regression); with --explain, the explanation columns (README "Why this row"). With
    --engine dask, one part per input file, each row numbered within its file."""
    from gitml.config.compose import load_params
    from gitml.errors import ConfigError
    from gitml.project import find_project

    if on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error must be 'fail' or 'skip' (got {on_error!r})")
    _check_engine(engine, scheduler)
    if explain and engine != "local":
        raise ConfigError(
            f"--explain works with --engine local only (got --engine {engine}); nothing written",
            hint="explain a sample with --engine local, or drop --explain",
        )
    proj = find_project(project)
    params = load_params(proj.params_path)
    if explain:
        from gitml.serve.explanations import batch_explainer

        with _model_for(proj, model, ref) as (served, recorded):
            explainer = batch_explainer(served)  # refuses a model that cannot explain
            threshold = params.threshold_for(recorded)
            _predict(
                served, params, threshold, input_path, output, chunk_size, on_error, keep,
                explain=explainer,
            )  # fmt: skip
            typer.echo(
                f"explained: output {explainer.explainer.output}, method "
                f"{explainer.explainer.method}, reference {explainer.explainer.reference}"
            )
        return
    if engine == "dask":
        _predict_on_cluster(
            proj,
            params,
            model,
            ref,
            input_path,
            output,
            chunk_size,
            on_error,
            keep,
            scheduler,
            workers,
        )
        return
    with _batch_model_for(proj, model, ref) as (served, recorded):
        threshold = params.threshold_for(recorded)
        _predict(served, params, threshold, input_path, output, chunk_size, on_error, keep)


@contextlib.contextmanager
def _batch_model_for(
    proj: Any, model: Path | None, ref: str | None
) -> Iterator[tuple[Any, float | None]]:
    """`_model_for`, except that the checked model files (the working tree's, or a release
    fetched with its SHA-256 verified) are scored through their stored fast path when they
    have one (`gitml.serve.fastpath_store`): no scikit-learn."""
    from gitml.serve.bundle import check_project_model, fetch_released_model
    from gitml.serve.fastpath_store import open_for_batch

    _refuse_model_and_ref(model, ref)
    if ref is None:
        yield open_for_batch(check_project_model(proj.root, model)), None
        return
    with tempfile.TemporaryDirectory(prefix="gitml-release-") as tmp:
        files = fetch_released_model(proj, ref, Path(tmp) / "model")
        yield open_for_batch(files), files.threshold


def _predict(
    served: Any,
    params: Any,
    threshold: float,
    input_path: Path,
    output: Path,
    chunk_size: int,
    on_error: str,
    keep: list[str] | None,
    *,
    explain: Any = None,
) -> None:
    from gitml.serve.batch import score_file

    _ignore_file_size_signal()
    with _progress_bar() as update:
        summary = score_file(
            served,
            input_path,
            output,
            threshold=threshold,
            chunk_size=chunk_size,
            on_error=on_error,  # type: ignore[arg-type]
            unknown_category=params.serve.unknown_category,
            keep=keep or [],
            progress=update,
            explain=explain,
        )
    head = f"scored {summary.scored:,} of {summary.rows:,} rows -> {output}"
    _echo_scored(summary, f"{head} ({summary.seconds:.1f} s)", summary.rejected_path)


def _check_engine(engine: str, scheduler: str | None) -> None:
    from gitml.cluster import ENGINES
    from gitml.errors import ConfigError

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if scheduler is not None and engine != "dask":
        raise ConfigError("--scheduler needs --engine dask")


def _predict_on_cluster(
    proj: Any,
    params: Any,
    model: Path | None,
    ref: str | None,
    input_path: Path,
    output: Path,
    chunk_size: int,
    on_error: str,
    keep: list[str] | None,
    scheduler: str | None,
    workers: int,
) -> None:
    """`gitml predict --engine dask`: the model checked here (not loaded), loaded and
    verified again by each worker (gitml.serve.partitioned)."""
    from gitml.cluster import connect
    from gitml.serve.partitioned import PartOptions, score_dataset, ship_model

    _ignore_file_size_signal()
    preload = ["gitml.serve.partitioned", "gitml.model.persist", "sklearn.pipeline"]
    with (
        _model_files_for(proj, model, ref) as files,
        connect(scheduler, workers=workers, preload=preload) as eng,
    ):
        options = PartOptions(
            threshold=params.threshold_for(files.threshold),
            chunk_size=chunk_size,
            on_error=on_error,  # type: ignore[arg-type]
            unknown_category=params.serve.unknown_category,
            keep=tuple(keep or ()),
        )
        summary = score_dataset(
            eng, ship_model(files, with_bytes=eng.remote), input_path, output, options
        )
    head = f"scored {summary.scored:,} of {summary.rows:,} rows in {summary.parts} parts"
    head += f" -> {output} ({summary.seconds:.1f} s, {summary.workers} Dask workers)"
    _echo_scored(summary, head, f"{output}/*.rejected.csv")


def _echo_scored(summary: Any, head: str, rejected_at: object) -> None:
    """The one line `gitml predict` ends with, either engine: what was scored, then what was
    rejected (and where) and which unknown categories were accepted."""
    line = head
    if summary.rejected:
        line += f"; rejected {summary.rejected:,} (see {rejected_at})"
    if summary.unknown_categories:
        shown = ", ".join(f"{k}: {v:,}" for k, v in summary.unknown_categories.items())
        line += f"; unknown categories accepted ({shown})"
    typer.echo(line)


@contextlib.contextmanager
def _model_files_for(proj: Any, model: Path | None, ref: str | None) -> Iterator[Any]:
    """The checked, unloaded model files (`ModelFiles`) of --model, --ref or the project."""
    from gitml.errors import ConfigError
    from gitml.serve.bundle import check_project_model, fetch_released_model

    if model is not None and ref is not None:
        raise ConfigError("give --model or --ref, not both")
    if ref is None:
        yield check_project_model(proj.root, model)
        return
    with tempfile.TemporaryDirectory(prefix="gitml-release-") as tmp:
        yield fetch_released_model(proj, ref, Path(tmp) / "model")


def _ignore_file_size_signal() -> None:
    """Past a file size limit (`ulimit -f`), a write then fails with EFBIG, which gitml reports
    (and the prediction log counts), instead of SIGXFSZ killing the process with a core dump."""
    import signal

    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int | None], None] | None]:
    """A progress bar on stderr when it is a terminal (rich is imported only then: 0.14 s)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("score", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


# the command modules register on `app`; imported last, once `app` and the options exist
from gitml.cli import monitor, retrain, simulate  # noqa: E402, F401


def main() -> None:
    """Console-script entry point: run the app, turning GitmlError into a short message."""
    try:
        app()
    except GitmlError as err:
        if _state["verbose"]:
            raise
        typer.echo(err.format(), err=True)
        sys.exit(err.exit_code)
