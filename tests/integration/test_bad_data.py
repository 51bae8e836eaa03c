"""Bad data is refused with an actionable message, and the last good outputs survive."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.support import dvc, gitml, ran_stages

KEPT = ["models/model.skops", "reports/metrics.json", "reports/validation.json"]


def _digest(repo: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((repo / rel).read_bytes()).hexdigest() for rel in KEPT}


def _telco(repo: Path) -> pd.DataFrame:
    return pd.read_csv(repo / "data/external/telco_churn.csv.gz", keep_default_na=False)


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _missing_column(repo: Path, path: Path) -> None:
    _write(_telco(repo).drop(columns=["tenure"]), path)


def _text_in_numeric(repo: Path, path: Path) -> None:
    frame = _telco(repo).astype({"tenure": object})
    frame.loc[4, "tenure"] = "twelve"
    _write(frame, path)


def _unseen_category(repo: Path, path: Path) -> None:
    frame = _telco(repo)
    frame.loc[[9, 20, 30], "contract"] = "Weekly"
    _write(frame, path)


def _negative_tenure(repo: Path, path: Path) -> None:
    frame = _telco(repo)
    frame.loc[[117, 200], "tenure"] = [-4, -1]
    _write(frame, path)


def _empty_target(repo: Path, path: Path) -> None:
    frame = _telco(repo)
    frame.loc[2, "churn"] = ""
    _write(frame, path)


def _empty_file(repo: Path, path: Path) -> None:
    path.write_bytes(b"")


def _header_only(repo: Path, path: Path) -> None:
    _write(_telco(repo).head(0), path)


def _truncated(repo: Path, path: Path) -> None:
    text = (repo / "data/external/telco_churn.csv.gz").read_bytes()
    import gzip

    raw = gzip.decompress(text)
    path.write_bytes(raw[: len(raw) // 2 + 17])  # cut in the middle of a line


def _garbled(repo: Path, path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _semicolons(repo: Path, path: Path) -> None:
    _telco(repo).head(300).to_csv(path, index=False, sep=";")


def _duplicated_rows(repo: Path, path: Path) -> None:
    frame = _telco(repo)
    _write(pd.concat([frame, frame.head(500)], ignore_index=True), path)


# case -> (writer, substrings the error output must contain)
CASES: dict[str, tuple[Callable[[Path, Path], None], list[str]]] = {
    "missing column": (_missing_column, ["[column_present]", "'tenure' is missing"]),
    "text in a numeric column": (
        _text_in_numeric,
        ["[type]", "column 'tenure' must be int but holds text: 1 row", "row 5, line 6, 'twelve'"],
    ),
    "unseen category": (
        _unseen_category,
        ["[categories]", "column 'contract'", "3 rows", "row 10, line 11, 'Weekly'"],
    ),
    "negative tenure": (
        _negative_tenure,
        ["[min]", "column 'tenure' must be >= 0: 2 rows", "row 118, line 119, -4"],
    ),
    "empty target": (_empty_target, ["[target_present]", "column 'churn' is empty", "row 3"]),
    "empty file": (_empty_file, ["the file is empty (0 bytes)"]),
    "header only": (_header_only, ["[not_empty]", "no data rows"]),
    "truncated CSV": (_truncated, ["not a well-formed CSV file", "Expected 20 columns"]),
    "garbled CSV": (_garbled, ["not a well-formed CSV file"]),
    "duplicated rows": (_duplicated_rows, ["[duplicates]", "522 rows", "allowed up to 1.00%"]),
    "semicolon-separated": (
        _semicolons,
        ["looks ';'-separated", "hint: convert it to comma-separated CSV"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_refused_and_nothing_is_overwritten(repo: Path, case: str) -> None:
    writer, expected = CASES[case]
    bad = repo / "data/external/bad.csv"
    writer(repo, bad)
    gitml("params", "data.source=data/external/bad.csv", cwd=repo)
    before = _digest(repo)
    proc = dvc("repro", cwd=repo, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "data/external/bad.csv" in output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    if case == "semicolon-separated":  # one clear error, not one per missing column
        assert "[column_present]" not in output
    assert not {"split", "train", "evaluate"} & set(ran_stages(proc.stdout))
    assert _digest(repo) == before


def test_unknown_extra_column_is_a_warning(repo: Path) -> None:
    frame = _telco(repo)
    frame["customer_note"] = "n/a"
    _write(frame, repo / "data/external/extra.csv")
    gitml("params", "data.source=data/external/extra.csv", cwd=repo)
    proc = dvc("repro", cwd=repo)
    assert "[unknown_column] column 'customer_note' is not declared" in proc.stderr + proc.stdout
    report = json.loads((repo / "reports/validation.json").read_text())
    assert report["status"] == "passed"
    assert [f["column"] for f in report["findings"] if f["rule"] == "unknown_column"] == [
        "customer_note"
    ]
