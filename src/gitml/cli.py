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


def main() -> None:
    """Console-script entry point: run the app, turning GitmlError into a short message."""
    try:
        app()
    except GitmlError as err:
        if _state["verbose"]:
            raise
        typer.echo(err.format(), err=True)
        sys.exit(err.exit_code)
