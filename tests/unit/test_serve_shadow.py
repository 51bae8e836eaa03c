"""Pure pieces of several-version serving: the shadow's records, the log counters summed over
versions, which references move on a reload."""

from __future__ import annotations

import dataclasses

import numpy as np

from gitml.serve.predlog import DROP_REASONS, ERROR_KINDS, LogStats
from gitml.serve.reload import _moves
from gitml.serve.shadow import records_of
from gitml.serve.telemetry import sum_stats
from tests.unit.test_serve_inputs import GOOD, SCHEMA


def test_records_of_gives_back_records_that_check_to_the_same_columns() -> None:
    nullable = next(r.name for r in SCHEMA.fields if r.nullable)
    records = [GOOD, GOOD | {"tenure": 3, "multiple_lines": "No", nullable: None}]
    columns = SCHEMA.check_records(records)
    again = SCHEMA.check_records(records_of(columns, SCHEMA))
    assert again.n == columns.n == 2
    for name, values in columns.values.items():
        np.testing.assert_array_equal(again.values[name], values)  # NaN (null) included
    for name, codes in columns.codes.items():
        np.testing.assert_array_equal(again.codes[name], codes)
    assert {k: list(v) for k, v in again.raw.items()} == {
        k: list(v) for k, v in columns.raw.items()
    }


def test_a_shadow_with_fewer_inputs_reads_only_its_own() -> None:
    fewer = dataclasses.replace(SCHEMA, fields=SCHEMA.fields[:5])
    columns = SCHEMA.check_records([GOOD])
    checked = fewer.check_records(records_of(columns, SCHEMA), extra_fields="accept")
    assert set(checked.values) | set(checked.codes) == {r.name for r in fewer.fields}


def test_summed_log_counters_keep_every_reason_even_at_zero() -> None:
    quiet = LogStats(
        written_rows=3,
        dropped_rows=dict.fromkeys(DROP_REASONS, 0),
        errors=dict.fromkeys(ERROR_KINDS, 0),
        buffered_rows=1,
        failing=None,
    )
    busy = dataclasses.replace(quiet, dropped_rows=quiet.dropped_rows | {"buffer_full": 2})
    total = sum_stats([quiet, busy])
    assert total.dropped_rows == dict.fromkeys(DROP_REASONS, 0) | {"buffer_full": 2}
    assert total.errors == dict.fromkeys(ERROR_KINDS, 0)
    assert (total.written_rows, total.buffered_rows) == (6, 2)


def test_stage_and_latest_references_move_versions_do_not() -> None:
    assert _moves("churn-classifier#prod") and _moves("churn-classifier@latest")
    assert _moves("churn-classifier")
    assert not _moves("churn-classifier@v1.2.0")
