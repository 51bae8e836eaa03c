"""Arrow to numpy without pyarrow's pandas-based converter: the same arrays it gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from gitml.data.coercion import _numpy
from gitml.serve.batch import _arrow

BITS = [True, False, True, False, True, True, False, False, True, True]
ARRAYS = {
    "mask": pa.array([True, False, None, True]).is_null(),
    "bools, sliced off a byte boundary": pa.array(BITS)[3:],
    "int8": pa.array([1, -2, 3], pa.int8()),
    "uint16, sliced": pa.array([1, 2, 3], pa.uint16())[1:],
    "int64 with a null (floats)": pa.array([1, None], pa.int64()),
    "doubles with nulls, sliced": pa.array([1.5, None, 2.5, 3.5, None, 1.0, 2.0, 3.0, 4.0])[1:],
    "float32 with a null": pa.array([1.0, None], pa.float32()),
    "all null doubles": pa.array([None, None], pa.float64()),
    "bools with a null (objects)": pa.array([None, True]),
    "chunked ints": pa.chunked_array([[1, 2], [3]]),
    "chunked bools": pa.chunked_array([[True], [False, True]]),
    "empty bools": pa.array([], pa.bool_()),
    "empty chunked doubles": pa.chunked_array([], pa.float64()),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrow_buffers_read_as_pyarrow_converts_them(name: str) -> None:
    array = ARRAYS[name]
    got, expected = _numpy(array), np.asarray(array.to_numpy(zero_copy_only=False))
    assert got.dtype == expected.dtype
    if got.dtype == object:
        assert got.tolist() == expected.tolist()
    else:
        assert np.array_equal(got, expected, equal_nan=True)


def test_batch_output_columns_are_what_pa_array_makes() -> None:
    labels = np.array(["Yes", "No", "No", "Yes", "No"])
    cases = [
        (np.arange(5, dtype=np.int64), pa.int64()),
        (np.linspace(0, 1, 5), pa.float64()),
        (labels, pa.string()),
        (labels[:0], pa.string()),
        (np.array(BITS), None),
    ]
    for values, kind in cases:
        assert _arrow(values, kind).equals(pa.array(values, kind))
