"""params.yaml and dvc.lock as any revision committed them: one typed reader each."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitml.config.compose import parse_committed_params
from gitml.errors import ConfigError, DataError
from gitml.project import OUTPUTS
from gitml.vcs import parse_lock

ROOT = Path(__file__).resolve().parents[2]


def test_an_old_revisions_params_read_section_by_section() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for newer in ("promotion", "card", "serve"):  # sections an old base predates
        del raw[newer]
    raw["train"] = {"legacy": True}  # and one a later revision dropped
    old = parse_committed_params(yaml.safe_dump(raw), source="params.yaml at 1a2b3c4d")
    assert old.promotion is None
    assert old.data is not None and old.data.positive_class == "Yes"
    assert old.raw["train"] == {"legacy": True}  # shown in the report's params diff

    raw["promotion"] = {"bootstrap": {"resamples": 5}}
    bad = parse_committed_params(yaml.safe_dump(raw), source="params.yaml at 1a2b3c4d")
    assert bad.data is not None  # a bad section stops only its own readers
    with pytest.raises(ConfigError) as err:
        bad.promotion  # noqa: B018
    assert (
        "params.yaml at 1a2b3c4d: promotion.bootstrap.resamples: Input should be greater than "
        "or equal to 100 (got 5)" in err.value.message
    )


def test_dvc_lock_reader_gives_the_hashes_every_reader_uses() -> None:
    lock = parse_lock((ROOT / "dvc.lock").read_text(), source="dvc.lock")
    model = lock.out_md5(OUTPUTS["model"])
    assert model and lock.hashes()[OUTPUTS["model"]] == model
    assert next(iter(lock.stages)) == "ingest"  # file order: the report's raw-data md5
    assert all(entry.md5 for entry in lock.outs())
    assert parse_lock("", source="dvc.lock").hashes() == {}
    with pytest.raises(DataError, match=r"dvc.lock at 1a2b3c4d is not valid YAML"):
        parse_lock("stages: [", source="dvc.lock at 1a2b3c4d")
