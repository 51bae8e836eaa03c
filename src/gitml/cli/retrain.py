"""`gitml retrain`: add a labelled production batch to the training data and retrain on a branch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from gitml.cli import ProjectOption, app

if TYPE_CHECKING:
    from gitml.monitor.retrain import Policy


@app.command()
def retrain(
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="CSV or Parquet file: request id, record and the true value (named as "
            "data.target); columns named by monitor.labels.",
        ),
    ],
    batch: Annotated[
        Path | None,
        typer.Option(
            "--batch",
            help="The production batch: CSV or Parquet file, or a directory of Parquet files "
            "(prediction log); default: monitor.current.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="append (keep every row) or window (keep the newest --window-rows); "
            "default: monitor.retrain.policy.",
        ),
    ] = None,
    window_rows: Annotated[
        int | None,
        typer.Option("--window-rows", min=1, help="Policy window: rows to keep."),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch",
            help="Branch to create (default: monitor.retrain.branch_prefix + UTC date and time).",
        ),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push", help="dvc push, then git push the branch to origin.")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Append the batch's labelled rows (joined by request id and record) to the DVC-tracked
    training data data/retrain/<data set>.parquet, run `dvc repro` and commit it all on a new
    branch, in a temporary worktree: your working tree and branch stay as they are. Refuses a
    dirty tree, labels that match no batch row, a batch without a required column and rows
    that fail validation, leaving no branch; a failing `dvc repro` leaves the attempt
    committed on the branch for inspection."""
    from gitml.monitor.retrain import retrain as run_retrain
    from gitml.project import find_project

    if policy not in (None, "append", "window"):
        raise typer.BadParameter(f"--policy must be append or window, got {policy!r}")
    done = run_retrain(
        find_project(project),
        batch=batch.resolve() if batch is not None else None,
        labels=labels.resolve(),
        policy=cast("Policy | None", policy),
        window_rows=window_rows,
        branch=branch,
        push=push,
    )
    dropped = f", the oldest {done.dropped:,} dropped (window)" if done.dropped else ""
    typer.echo(
        f"added {done.added:,} labelled rows from {done.batch} to {done.data_path} "
        f"({done.rows:,} rows now{dropped})"
    )
    if done.unlabelled or done.unmatched:
        typer.echo(
            f"  left out: {done.unlabelled:,} batch rows without a label; "
            f"{done.unmatched:,} labels matching no batch row"
        )
    if done.previous_source:
        typer.echo(f"  data.source: {done.previous_source} -> {done.data_path}")
    typer.echo(
        f"branch {done.branch} at {done.commit[:12]} (from {done.base_branch} at "
        f"{done.base[:12]}): data, dvc.lock, model and reports retrained"
    )
    if done.pushed:
        typer.echo(f"pushed: dvc push, git push origin {done.branch}")
    else:
        typer.echo(f"to publish it: dvc push && git push origin {done.branch}")
    # the appended rows change the split: production is scored on the new test set
    base = done.production[0] if done.production else done.base_branch
    typer.echo(
        f"next: git switch {done.branch} && dvc checkout && gitml report --base {base} "
        f"--recompute --out report.md (against {'production' if done.production else base}), "
        f"then open a pull request for {done.branch}"
    )
