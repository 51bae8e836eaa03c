"""skops persistence: round trips for every model family, and refusal of unsafe files."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from gitml.config.compose import compose_params, parse_params
from gitml.data.io import read_source
from gitml.errors import ModelError, UntrustedModelError
from gitml.model.build import build_pipeline
from gitml.model.persist import (
    TRUSTED_TYPES,
    canonical_archive,
    check_model_file,
    load_model,
    save_model,
)
from gitml.model.scoring import fix_summation_order

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    frame = read_source(ROOT / "data/external/telco_churn.csv.gz").to_pandas()
    return frame.sample(1500, random_state=0)


@pytest.mark.parametrize(
    "overrides",
    [
        ["model=logistic_regression"],
        ["model=random_forest", "model.params.n_estimators=20"],
        ["model=hist_gradient_boosting", "model.params.max_iter=20"],
    ],
)
def test_round_trip_needs_only_trusted_types(
    tmp_path: Path, sample: pd.DataFrame, overrides: list[str]
) -> None:
    params = parse_params(compose_params(ROOT / "conf", overrides), source="t")
    data = params.data
    pipeline = build_pipeline(params.model, data).fit(sample[data.features], sample[data.target])
    path = tmp_path / "model.skops"
    payload = save_model(pipeline, path)
    assert set(sio.get_untrusted_types(data=payload)) <= set(TRUSTED_TYPES)
    check_model_file(path, _hash(path))  # what a --workers supervisor checks: passes
    loaded = load_model(path)
    # a parallel forest sums its trees in any order: equal up to float rounding
    np.testing.assert_allclose(
        loaded.predict_proba(sample[data.features]),
        pipeline.predict_proba(sample[data.features]),
        rtol=0,
        atol=1e-12,
    )


class _Payload:
    """An object whose unpickling has a visible side effect."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_file_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UntrustedModelError, match="a pickle file"):
        load_model(path)
    assert not marker.exists()


class _Untrusted:
    """A type no allow-list contains; building it would leave a marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def test_skops_file_with_untrusted_type_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "constructed"
    path = tmp_path / "model.skops"
    sio.dump({"model": _Untrusted(str(marker))}, path)
    with pytest.raises(UntrustedModelError) as info:
        load_model(path)
    assert "_Untrusted" in info.value.message
    assert not marker.exists()


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"definitely not a model")
    with pytest.raises(UntrustedModelError, match="not a skops file"):
        load_model(path)


def test_canonical_archive_ignores_object_ids_times_and_record_padding() -> None:
    # the same values as two processes hold them: different objects (ids), different
    # stale bytes in the padding of structured records
    records = np.dtype({"names": ["a", "b"], "formats": ["<i8", "u1"], "itemsize": 16})

    def archive(fill: int) -> bytes:
        raw = bytearray([fill] * 32)
        nodes = np.frombuffer(raw, dtype=records).copy()
        nodes["a"], nodes["b"] = [1, 2], [3, 4]
        shared = np.arange(5.0)
        return sio.dumps({"nodes": nodes, "x": shared, "y": shared, "blob": b"\x00\x01"})

    first, second = archive(0x00), archive(0xFF)
    assert first != second  # skops alone: ids, UUID names, times and padding differ
    canonical = canonical_archive(first)
    assert canonical == canonical_archive(second)
    with zipfile.ZipFile(io.BytesIO(canonical)) as zf:
        assert zf.namelist()[0] == "schema.json"
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    loaded = sio.loads(canonical, trusted=["builtins.bytes"])
    assert loaded["x"] is loaded["y"]  # shared objects stay shared
    assert loaded["nodes"].tolist() == [(1, 3), (2, 4)] and loaded["blob"] == b"\x00\x01"


def test_forest_scores_are_the_same_bits_on_every_run(sample: pd.DataFrame) -> None:
    params = parse_params(
        compose_params(ROOT / "conf", ["model=random_forest", "model.params.n_estimators=40"]),
        source="t",
    )
    data = params.data
    pipeline = build_pipeline(params.model, data).fit(sample[data.features], sample[data.target])
    assert pipeline.named_steps["estimator"].n_jobs == -1  # the preset predicts in parallel
    fixed = fix_summation_order(pipeline)
    runs = {fixed.predict_proba(sample[data.features]).tobytes() for _ in range(10)}
    assert len(runs) == 1


def _hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_check_model_file_refuses_foreign_types_without_building_them(tmp_path: Path) -> None:
    """The cheap check `gitml serve --workers N` runs before its workers load the model."""
    marker = tmp_path / "constructed"
    path = tmp_path / "model.skops"
    sio.dump({"model": _Untrusted(str(marker))}, path)
    with pytest.raises(UntrustedModelError) as info:
        check_model_file(path, _hash(path))
    assert "test_model_persist._Untrusted" in info.value.message
    assert not marker.exists()


def test_check_model_file_checks_the_hash_then_the_format(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelError, match=r"does not match metadata\.json"):
        check_model_file(path, "0" * 64, recorded_in="metadata.json")
    with pytest.raises(UntrustedModelError, match="a pickle file"):
        check_model_file(path, _hash(path))
