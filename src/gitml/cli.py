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


def main() -> None:
    """Console-script entry point: run the app, turning GitmlError into a short message."""
    try:
        app()
    except GitmlError as err:
        if _state["verbose"]:
            raise
        typer.echo(err.format(), err=True)
        sys.exit(err.exit_code)
