"""`gitml monitor`: drift, data quality and performance of production data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gitml.cli import (
    DaskWorkersOption,
    ProjectOption,
    SchedulerOption,
    _check_engine,
    _state,
    app,
)
from gitml.errors import GitmlError

ERROR_EXIT = 2  # every error exits at least 2: 1 is an alert


@app.command()
def monitor(
    current: Annotated[
        Path | None,
        typer.Option(
            "--current",
            help="A CSV or Parquet batch, a prediction-log directory, or a DVC-tracked path "
            "(pulled when missing).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Log rows at or after this ISO date or time (UTC)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Log rows before this ISO date or time (UTC)."),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="NAME#STAGE or NAME@vX.Y.Z (that release's training split and model), a Git "
            "revision (its model and training split), or a CSV/Parquet file (with the working "
            "tree's model). Default: the release that served the data; the working tree "
            "before any release.",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="CSV or Parquet of true values by request id (monitor.labels)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Directory for monitor.json/md/html (monitor.out)."),
    ] = None,
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Do not append this run to monitor.history.")
    ] = False,
    no_estimate: Annotated[
        bool,
        typer.Option(
            "--no-estimate",
            help="Skip estimated performance (CBPE) when no --labels are given: drift and "
            "quality only, in memory that does not grow with the number of rows.",
        ),
    ] = False,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Print the history of runs and write history.html; monitor nothing."
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local: read the data in this process; dask: count its partitions on a Dask "
            "cluster and merge the counts here (same statistics; docs/scale-out.md).",
        ),
    ] = "local",
    scheduler: SchedulerOption = None,
    workers: DaskWorkersOption = 2,
    project: ProjectOption = None,
) -> None:
    """Compare production data with the training split of the model that served it: drift
    per column (calibrated, corrected across columns, with a minimum effect), data quality
    against the signature, performance from late labels and estimated from calibrated
    scores. Writes monitor.json, monitor.md and monitor.html. Exit 0 quiet, 1 alert, 2 or
    more on an error (nothing written)."""
    try:
        if history:
            _show_history(project, out)
            return
        if current is None:
            raise typer.BadParameter("give --current PATH (or --history)")
        _check_engine(engine, scheduler)
        cluster = (scheduler, workers) if engine == "dask" else None
        code = _monitor(
            current, since, until, reference, labels, out, no_history, project, no_estimate,
            cluster,
        )  # fmt: skip
    except GitmlError as err:
        if _state["verbose"]:
            raise
        typer.echo(err.format(), err=True)
        raise typer.Exit(max(ERROR_EXIT, err.exit_code)) from err
    except (typer.Exit, typer.BadParameter, typer.Abort):
        raise
    except BrokenPipeError:
        # the reader closed the pipe (`gitml monitor | head`): not a failed run, and not an
        # alert (1, click's code for it); stop quietly as a process killed by SIGPIPE would
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(141) from None
    except Exception as err:  # a failure of the run itself is an error, never "alert" (1)
        if _state["verbose"]:
            raise
        typer.echo(f"error: the monitoring run failed: {type(err).__name__}: {err}", err=True)
        typer.echo("hint: rerun with `gitml -v monitor ...` for the traceback", err=True)
        raise typer.Exit(3) from err
    raise typer.Exit(code)


def _monitor(
    current: Path,
    since: str | None,
    until: str | None,
    reference: str | None,
    labels: Path | None,
    out: Path | None,
    no_history: bool,
    project: Path | None,
    no_estimate: bool = False,
    cluster: tuple[str | None, int] | None = None,
) -> int:
    import tempfile
    from contextlib import nullcontext

    from gitml.config.compose import load_params
    from gitml.monitor.history import append_history, history_row
    from gitml.monitor.ranking import UNRANKED
    from gitml.monitor.run import run_monitor, write_outputs
    from gitml.monitor.sources import Window, parse_time
    from gitml.project import find_project

    proj = find_project(project)
    params = load_params(proj.params_path)
    window = Window(
        parse_time(since, "--since") if since else None,
        parse_time(until, "--until") if until else None,
    )
    if window.since and window.until and window.since >= window.until:
        raise typer.BadParameter(f"--since {since} must be before --until {until}")
    if cluster is None:
        engine: Any = nullcontext()
    else:
        from gitml.cluster import connect

        preload = ["gitml.monitor.partial", "gitml.model.persist", "sklearn.pipeline"]
        engine = connect(cluster[0], workers=cluster[1], preload=preload)
    with tempfile.TemporaryDirectory(prefix="gitml-monitor-") as tmp, engine as connected:
        outcome = run_monitor(
            proj,
            params,
            current=current,
            window=window,
            reference=reference,
            labels=labels,
            workdir=Path(tmp),
            estimate=not no_estimate,
            engine=connected,
        )
    result = outcome.result
    directory = out if out is not None else proj.root / params.monitor.out
    written = write_outputs(result, directory)
    if not no_history:
        append_history(proj.root / params.monitor.history, history_row(result))
    drifted = sum(c.drifted for r in result.drift for c in r.columns)
    tested = sum(len(r.columns) for r in result.drift)
    if result.alert:
        typer.echo(f"ALERT: {len(result.reasons)} alarm(s) on {result.current_rows:,} rows")
    else:
        typer.echo(
            f"quiet: no alarm on {result.current_rows:,} rows ({tested} column tests, "
            f"{drifted} drifted)"
        )
    for reason in result.reasons:
        typer.echo(f"  {reason}")
    for report in result.drift:  # the alarm lines lead with what the model relies on, if known
        if report.ranking.startswith(UNRANKED):
            typer.echo(f"note: {report.model_version}: {report.ranking}", err=True)
    for note in outcome.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")
    return 1 if result.alert else 0


def _show_history(project: Path | None, out: Path | None) -> None:
    from gitml.config.compose import load_params
    from gitml.files import write_text
    from gitml.monitor.history import (
        HISTORY_HTML,
        history_table,
        read_history,
        render_history_html,
    )
    from gitml.project import find_project

    proj = find_project(project)
    params = load_params(proj.params_path)
    rows = read_history(proj.root / params.monitor.history)
    _print_table(history_table(rows))
    target = (out if out is not None else proj.root / params.monitor.out) / HISTORY_HTML
    write_text(target, render_history_html(rows))
    typer.echo(f"wrote {target}")


def _print_table(table: list[list[Any]]) -> None:
    widths = [max(len(str(line[i])) for line in table) for i in range(len(table[0]))]
    for line in table:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
