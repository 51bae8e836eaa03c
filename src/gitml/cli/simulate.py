"""`gitml simulate`: production-like batches with known shifts (tests, docs, demos)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gitml.cli import ProjectOption, app
from gitml.errors import DataError
from gitml.project import OUTPUTS

if TYPE_CHECKING:
    import pandas as pd

    from gitml.monitor.simulate import Shift


@app.command()
def simulate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The batch to write (.csv or .parquet).")
    ],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Rows in the batch.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source",
            help=f"CSV or Parquet with the target to draw from (default: {OUTPUTS['train']}).",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Also write the labels (request_id, record, target)."),
    ] = None,
    scale: Annotated[
        list[str] | None, typer.Option("--scale", metavar="COL=F", help="Numeric column times F.")
    ] = None,
    shift: Annotated[
        list[str] | None, typer.Option("--shift", metavar="COL=D", help="Numeric column plus D.")
    ] = None,
    mix: Annotated[
        list[str] | None,
        typer.Option(
            "--mix",
            metavar="COL=CAT:+P",
            help="Move P (0-1) of the column's mass to CAT, from the others in proportion.",
        ),
    ] = None,
    label_shift: Annotated[
        str | None,
        typer.Option("--label-shift", metavar="CLASS=SHARE", help="Resample to this class share."),
    ] = None,
    concept: Annotated[
        float | None,
        typer.Option("--concept", metavar="F", help="Replace the target of a fraction F of rows."),
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where", metavar="COL=VALUE", help="Apply the row shifts only where COL is VALUE."
        ),
    ] = None,
    days: Annotated[
        float, typer.Option("--days", help="Timestamps spread over this many days.")
    ] = 1.0,
    jitter: Annotated[
        float,
        typer.Option(
            "--jitter",
            help="Noise on float columns, as a share of their std (new observations, not "
            "copies of the source's rows); 0: exact copies.",
        ),
    ] = 0.01,
    end: Annotated[
        str | None,
        typer.Option("--end", help="Timestamp of the window's end, UTC (default: now)."),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Draw a batch from the training split (or --source), with known shifts.

    Rows are drawn with replacement, seeded; each gets a fresh request_id (sim-SEED-N),
    record 0 and a timestamp spread evenly over --days ending at --end. The batch has the
    model's features and no target; --labels writes the target separately, as late labels
    arrive. Example: gitml simulate -o batch.csv --labels labels.csv --scale tenure=1.3"""
    import pandas as pd

    from gitml.config.compose import load_params
    from gitml.data.io import read_source, read_table
    from gitml.monitor.simulate import simulate_batch
    from gitml.project import find_project

    proj = find_project(project)
    params = load_params(proj.params_path)
    data = params.data
    _check_suffix("--out", out)
    if labels is not None:
        _check_suffix("--labels", labels)
    condition = _pair("--where", where) if where else None
    shifts = _shifts(scale, shift, mix, label_shift, concept, condition)
    if source is None:
        frame = read_table(proj.root / OUTPUTS["train"]).reset_index(drop=True)
    else:
        frame = read_source(source, text_columns=data.categorical).to_pandas()
    try:
        stop = pd.Timestamp(end) if end else pd.Timestamp(datetime.now(UTC))
    except ValueError as err:
        raise DataError(f"--end {end}: not a date or time ({err})") from err
    start = (stop.tz_localize("UTC") if stop.tzinfo is None else stop) - timedelta(days=days)
    batch, truth = simulate_batch(
        frame,
        rows=rows,
        seed=seed,
        target=data.target,
        task=data.task,
        shifts=shifts,
        start=start,
        days=days,
        features=[c for c in data.features if c in frame.columns] or None,
        jitter=jitter,
    )
    _write(out, batch)
    shown = ", ".join(s.describe() for s in shifts) or "no shift"
    typer.echo(f"wrote {out} ({rows:,} rows; {shown})")
    if labels is not None:
        _write(labels, truth)
        typer.echo(f"wrote {labels} ({rows:,} labels of {data.target!r})")


def _shifts(
    scale: list[str] | None,
    shift: list[str] | None,
    mix: list[str] | None,
    label_shift: str | None,
    concept: float | None,
    where: tuple[str, str] | None,
) -> list[Shift]:
    from gitml.monitor.simulate import Shift

    shifts: list[Shift] = []
    if label_shift is not None:
        cls, share = _pair("--label-shift", label_shift)
        shifts.append(
            Shift("label", value=_number("--label-shift", label_shift, share), category=cls)
        )
    for option, kind, given in (("--scale", "scale", scale), ("--shift", "shift", shift)):
        for text in given or []:
            column, value = _pair(option, text)
            shifts.append(Shift(kind, column, _number(option, text, value), where=where))  # type: ignore[arg-type]
    for text in mix or []:
        column, rest = _pair("--mix", text)
        category, sep, share = rest.rpartition(":")
        if not sep or not category:
            raise DataError(
                f"--mix {text}: expected COL=CATEGORY:+SHARE, e.g. contract=Two year:+0.2"
            )
        shifts.append(Shift("mix", column, _number("--mix", text, share), category, where))
    if concept is not None:
        shifts.append(Shift("concept", value=concept, where=where))
    return shifts


def _pair(option: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise DataError(f"{option} {text}: expected NAME=VALUE")
    return key.strip(), value.strip()


def _number(option: str, text: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{option} {text}: {value!r} is not a number") from None


def _check_suffix(option: str, path: Path) -> None:
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"{option} {path}: write .csv or .parquet (the suffix picks the format)")


def _write(path: Path, frame: pd.DataFrame) -> None:
    import pyarrow as pa

    from gitml.data.io import write_arrow
    from gitml.files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        write_arrow(path, pa.Table.from_pandas(frame, preserve_index=False))
    else:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
