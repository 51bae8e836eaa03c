"""The monitor's calibration: false-alarm and power tables for docs/monitoring-calibration.md.

Usage (project venv on PATH, from the repository root):

    python bench/monitor_power.py [--batches 200] [--power-batches 100] [--out FILE]

False alarms: batches drawn independently from the reference's own population, at 500,
2,000, 10,000 and 50,000 rows, judged as one `gitml monitor` run judges them (every input
tested, Holm at monitor.alpha, minimum effects): the share of batches with any alarm. Three
settings: a synthetic population (reference 20,000 rows, and a reference of 2,000 rows,
smaller than most batches), and the Telco training split with batches from `simulate_batch`.

Power: one column shifted (a numeric column times 1.1 or 1.3, a category's share up by 15 or
50 points), 100 batches per cell: the share of batches whose alarm names that column and no
other. Prints markdown tables; writes them to --out when given. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.monitor_population: the population the tests use too

from tests import monitor_population as population  # noqa: E402

from gitml.config.schema import MonitorParams  # noqa: E402
from gitml.monitor.simulate import Shift, simulate_batch  # noqa: E402
from gitml.monitor.sketch import monitored_columns, profile_reference  # noqa: E402

SIZES = (500, 2_000, 10_000, 50_000)
SYNTHETIC_SHIFTS = [
    *[(c, "scale", f) for c in population.NUMERIC for f in (1.1, 1.3)],
    *[
        (c, "mix", p, k)
        for c, k in (("plan", "enterprise"), ("region", "r05"), ("flag", "1"))
        for p in (0.15, 0.5)
    ],
]
TELCO_SHIFTS = [
    *[(c, "scale", f) for c in ("tenure", "monthly_charges", "total_charges") for f in (1.1, 1.3)],
    *[
        (c, "mix", p, k)
        for c, k in (
            ("contract", "Two year"),
            ("payment_method", "Mailed check"),
            ("internet_service", "No"),
            ("senior_citizen", "1"),
        )
        for p in (0.15, 0.5)
    ],
]


def _synthetic_batch(shift: tuple | None) -> Callable[[int, int], pd.DataFrame]:
    def draw(rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(10_000 + seed)
        batch = population.draw(rows, rng)
        if shift is None:
            return batch
        column, kind, value, *category = shift
        if kind == "scale":
            batch[column] = batch[column] * value
        elif column == "flag":
            share = batch["flag"].mean()
            moved = (batch["flag"] == 0) & (rng.random(rows) < value / (1 - share))
            batch.loc[moved, "flag"] = 1
        else:
            batch[column] = population.mix(batch[column], category[0], value, rng)
        return batch

    return draw


def _telco_batch(
    train: pd.DataFrame, shift: tuple | None, params
) -> Callable[[int, int], pd.DataFrame]:
    shifts = []
    if shift is not None:
        column, kind, value, *category = shift
        shifts = [Shift(kind, column, value, category[0] if category else None)]

    def draw(rows: int, seed: int) -> pd.DataFrame:
        batch, _ = simulate_batch(
            train,
            rows=rows,
            seed=seed,
            target=params.data.target,
            task=params.data.task,
            shifts=shifts,
            start="2026-11-01",
            days=1,
            features=params.data.features,
        )
        return batch

    return draw


def _rate(profile, draw, rows: int, batches: int, params: MonitorParams, want: str | None) -> float:
    hits = 0
    for seed in range(batches):
        named = population.alarms(profile, draw(rows, seed), params)
        hits += bool(named) if want is None else named == {want}
    return hits / batches


def bench(args: argparse.Namespace) -> str:
    params = MonitorParams()
    rng = np.random.default_rng(0)
    columns = monitored_columns(population.SIGNATURE)
    synthetic = profile_reference(population.draw(20_000, rng), columns, params)
    small = profile_reference(population.draw(2_000, rng), columns, params)
    train, signature, project = population.telco_split(ROOT)
    telco = profile_reference(train, monitored_columns(signature), params)
    lines = [
        f"False alarms: share of {args.batches} i.i.d. batches with any drift alarm "
        f"(alpha {params.alpha}, {params.correction}; target <= 2 %).",
        "",
        "| setting | " + " | ".join(f"{n:,} rows" for n in SIZES) + " |",
        "| --- |" + " --- |" * len(SIZES),
    ]
    settings = [
        ("synthetic, reference 20,000 rows (8 inputs)", synthetic, _synthetic_batch(None)),
        ("synthetic, reference 2,000 rows (8 inputs)", small, _synthetic_batch(None)),
        (
            f"Telco training split ({telco.rows:,} rows, 19 inputs), `simulate_batch`",
            telco,
            _telco_batch(train, None, project),
        ),
    ]
    for name, profile, draw in settings:
        started = time.perf_counter()
        rates = [_rate(profile, draw, n, args.batches, params, None) for n in SIZES]
        lines.append(f"| {name} | " + " | ".join(f"{r:.1%}" for r in rates) + " |")
        print(f"[false alarms] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for title, profile, shifts, make in (
        ("synthetic population (reference 20,000 rows)", synthetic, SYNTHETIC_SHIFTS, None),
        (f"Telco training split ({telco.rows:,} rows)", telco, TELCO_SHIFTS, train),
    ):
        lines += [
            "",
            f"Power, {title}: share of {args.power_batches} batches whose alarm names the "
            "shifted column and no other.",
            "",
            "| column | shift | " + " | ".join(f"{n:,} rows" for n in SIZES) + " |",
            "| --- | --- |" + " --- |" * len(SIZES),
        ]
        for shift in shifts:
            column, kind, value, *category = shift
            draw = _synthetic_batch(shift) if make is None else _telco_batch(make, shift, project)
            rates = [_rate(profile, draw, n, args.power_batches, params, column) for n in SIZES]
            said = f"x {value:g}" if kind == "scale" else f"{category[0]} +{value:.0%}"
            lines.append(f"| {column} | {said} | " + " | ".join(f"{r:.0%}" for r in rates) + " |")
            print(f"[power] {column} {said}", file=sys.stderr)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="i.i.d. batches per size")
    parser.add_argument("--power-batches", type=int, default=100, help="shifted batches per cell")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tables = bench(args)
    print(tables)
    if args.out:
        args.out.write_text(tables, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
