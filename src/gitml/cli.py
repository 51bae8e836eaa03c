"""The `gitml` command line: the only place that prints, reads argv or exits.

Imports of heavy libraries happen inside the commands so that `gitml --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from gitml import __version__
from gitml.errors import GitmlError

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
    """Compose conf/ into params.yaml (byte-identical to what `dvc exp run -S` writes)."""
    from gitml.config.compose import check_params, write_params
    from gitml.project import find_project

    proj = find_project(project)
    if check:
        check_params(proj, overrides or [])
        typer.echo(f"{proj.params_path.name} is up to date with conf/")
        return
    write_params(proj, overrides or [])
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
        str | None, typer.Option("--head", help="Head revision (default: the working tree).")
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
    from gitml.data.io import write_text
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
        str | None, typer.Option("--head", help="Head revision (default: the working tree).")
    ] = None,
    recompute: Annotated[
        bool, typer.Option("--recompute", help="Score the base model on head's test set.")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Apply the promotion policy (params `promotion`). Exit 0 promote, 1 blocked,
    2 not comparable, 3 when the review itself failed (bad revision, stale params, ...)."""
    from gitml.project import find_project
    from gitml.review.review import build_review

    try:
        review = build_review(find_project(project), base=base, head=head, recompute=recompute)
    except GitmlError as err:
        typer.echo(err.format(), err=True)
        raise typer.Exit(3) from err
    verdict = review.verdict
    typer.echo(f"gate: {verdict.status}")
    for rule in verdict.rules:
        typer.echo(f"  {'pass' if rule.passed else 'FAIL'}  {rule.rule}: {rule.detail}")
    if verdict.reason:
        typer.echo(f"  note: {verdict.reason}")
    raise typer.Exit(verdict.exit_code)


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
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes (each loads the model).")
    ] = 1,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (slower).")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Serve the model over HTTP (FastAPI on uvicorn): POST /v1/predict, GET /v1/model,
    /healthz, /readyz, /metrics. Settings: params `serve`. Stops on SIGINT or SIGTERM after
    answering the requests in flight and flushing the prediction log."""
    import signal

    from gitml.config.compose import load_params
    from gitml.project import find_project
    from gitml.serve.bundle import load_project_model

    proj = find_project(project)
    params = load_params(proj.params_path)
    served = load_project_model(proj.root, model)  # refuses a bad model before binding

    from gitml.serve.app import run_server

    settings = params.serve
    log_dir = None
    if settings.prediction_log.enabled:
        log_dir = proj.root / settings.prediction_log.dir
    stopped: list[int] = []
    # uvicorn re-raises the signal that stopped it once it is done; record it and exit 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopped.append(signum))
    typer.echo(
        f"serving {served.name} {served.version} ({served.path}) at http://{host}:{port} "
        f"with {workers} worker(s); prediction log: {log_dir or 'off'}",
        err=True,
    )
    run_server(
        served,
        settings,
        threshold=params.serve_threshold,
        host=host,
        port=port,
        workers=workers,
        log_dir=log_dir,
        access_log=access_log,
    )
    if stopped:
        typer.echo(f"stopped on {signal.Signals(stopped[0]).name}", err=True)


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
    project: ProjectOption = None,
) -> None:
    """Score a CSV or Parquet file in chunks with the served model and the API's input rules.
    Output: row (input data row number from 1), _row when present, --keep columns, score,
    label."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gitml.config.compose import load_params
    from gitml.errors import ConfigError
    from gitml.project import find_project
    from gitml.serve.batch import score_file
    from gitml.serve.bundle import load_project_model

    if on_error not in ("fail", "skip"):
        raise ConfigError(f"--on-error must be 'fail' or 'skip' (got {on_error!r})")
    proj = find_project(project)
    params = load_params(proj.params_path)
    served = load_project_model(proj.root, model)
    console = Console(stderr=True)
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("score", total=None)
        summary = score_file(
            served,
            input_path,
            output,
            threshold=params.serve_threshold,
            chunk_size=chunk_size,
            on_error=on_error,  # type: ignore[arg-type]
            unknown_category=params.serve.unknown_category,
            keep=keep or [],
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    line = f"scored {summary.scored:,} of {summary.rows:,} rows -> {output}"
    line += f" ({summary.seconds:.1f} s)"
    if summary.rejected:
        line += f"; rejected {summary.rejected:,} (see {summary.rejected_path})"
    if summary.unknown_categories:
        shown = ", ".join(f"{k}: {v:,}" for k, v in summary.unknown_categories.items())
        line += f"; unknown categories accepted ({shown})"
    typer.echo(line)


def main() -> None:
    """Console-script entry point: run the app, turning GitmlError into a short message."""
    try:
        app()
    except GitmlError as err:
        if _state["verbose"]:
            raise
        typer.echo(err.format(), err=True)
        sys.exit(err.exit_code)
