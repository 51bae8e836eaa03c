"""Tag grammar and registry state: pure functions, no git."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gitml.config.compose import load_params
from gitml.config.schema import CardParams, ProjectParams
from gitml.errors import RegistryError
from gitml.registry.card import UNRELEASED, render_card, stamp_release
from gitml.registry.state import TagRecord, build_registry
from gitml.registry.tags import parse_ref, parse_tag, parse_version, stage_tag, version_tag
from gitml.review.bootstrap import bootstrap_intervals


@pytest.mark.parametrize(
    ("tag", "kind", "version", "stage", "counter"),
    [
        ("churn@v1.2.3", "register", "v1.2.3", None, None),
        ("churn@v1.2.3-rc.1", "register", "v1.2.3-rc.1", None, None),
        ("churn@v1.2.3!", "deregister", "v1.2.3", None, None),
        ("churn#prod#7", "assign", None, "prod", 7),
        ("churn#prod!#8", "unassign", None, "prod", 8),
        ("churn#prod", "assign", None, "prod", None),
        ("churn@deprecated", "deprecate", None, None, None),
    ],
)
def test_gto_tags_parse(tag, kind, version, stage, counter) -> None:
    event = parse_tag(tag)
    assert event is not None
    assert (event.name, event.kind, event.version, event.stage, event.counter) == (
        "churn", kind, version, stage, counter
    )  # fmt: skip


@pytest.mark.parametrize("tag", ["v1.0.0", "churn@1.0.0", "churn@v1.0", "-bad@v1.0.0", "x#"])
def test_other_tags_are_not_registry_events(tag: str) -> None:
    assert parse_tag(tag) is None


def test_versions_order_like_semver() -> None:
    texts = ["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v0.9.9", "v2.0.0"]
    ordered = [str(v) for v in sorted(parse_version(t) for t in texts)]
    assert ordered == ["v0.9.9", "v1.2.0-rc.1", "v1.2.0", "v1.10.0", "v2.0.0"]
    assert str(parse_version("v1.2.3").bump("minor")) == "v1.3.0"
    assert str(parse_version("v1.2.3").bump("major")) == "v2.0.0"
    assert str(parse_version("v1.2.3").bump("patch")) == "v1.2.4"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("1.0.0", "invalid version '1.0.0'"),
        ("v1.0", "invalid version 'v1.0'"),
        ("v01.0.0", "invalid version 'v01.0.0'"),
    ],
)
def test_invalid_versions_name_the_rule(bad: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_version(bad)


def test_names_follow_gto_rules() -> None:
    assert version_tag("churn-classifier", "v1.0.0") == "churn-classifier@v1.0.0"
    assert stage_tag("churn-classifier", "prod", 3) == "churn-classifier#prod#3"
    for bad in ("Churn Classifier", "", "-churn", "churn-", "a@b"):
        with pytest.raises(RegistryError, match="GTO's naming rule"):
            version_tag(bad, "v1.0.0")
    with pytest.raises(RegistryError, match="invalid stage name"):
        stage_tag("churn", "prod!", 1)
    assert parse_ref("churn#prod").stage == "prod"
    assert parse_ref("churn@latest").version == "latest"
    with pytest.raises(RegistryError, match="invalid model reference"):
        parse_ref("churn@v1@v2 x")


def _registry(*tags: tuple[str, str, int]):
    return build_registry([TagRecord(tag, commit, created) for tag, commit, created in tags])


def test_latest_assignment_holds_the_stage_and_rollback_finds_the_previous_one() -> None:
    registry = _registry(
        ("m@v1.0.0", "c1", 1),
        ("m@v1.1.0", "c2", 2),
        ("m#prod#1", "c1", 3),
        ("m#staging#2", "c2", 4),
        ("m#prod#3", "c2", 5),
    )
    history = registry["m"]
    assert history.current("prod").version == "v1.1.0"
    assert history.versions["v1.0.0"].stages == []
    assert sorted(history.versions["v1.1.0"].stages) == ["prod", "staging"]
    assert history.previous("prod").version == "v1.0.0"
    assert history.max_counter == 3
    assert history.latest().version == "v1.1.0"


def test_equal_timestamps_are_ordered_by_the_counter() -> None:
    history = _registry(
        ("m@v1.0.0", "c1", 1), ("m@v1.1.0", "c2", 1), ("m#prod#2", "c1", 5), ("m#prod#1", "c2", 5)
    )["m"]  # fmt: skip
    assert history.current("prod").version == "v1.0.0"


def test_deregistered_versions_and_unassigned_stages_drop_out() -> None:
    history = _registry(
        ("m@v1.0.0", "c1", 1),
        ("m@v1.1.0", "c2", 2),
        ("m#prod#1", "c1", 3),
        ("m#prod#2", "c2", 4),
        ("m@v1.1.0!", "c2", 5),
        ("m#dev#3", "c1", 6),
        ("m#dev!#4", "c1", 7),
    )["m"]
    assert [v.version for v in history.live_versions()] == ["v1.0.0"]
    assert history.current("prod") is None
    assert history.current("dev") is None
    with pytest.raises(RegistryError, match=r"unknown version m@v1\.1\.0"):
        history.resolve(parse_ref("m@v1.1.0"))
    with pytest.raises(RegistryError, match="no version of m is in stage 'prod'"):
        history.resolve(parse_ref("m#prod"))
    assert history.previous("prod").version == "v1.0.0"


def test_bootstrap_intervals_cover_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    score = np.clip(y * 0.3 + rng.uniform(0, 0.7, 2000), 0, 1)
    names = ["roc_auc", "accuracy", "log_loss"]
    intervals = bootstrap_intervals(y, score, threshold=0.5, names=names, resamples=300)
    again = bootstrap_intervals(y, score, threshold=0.5, names=names, resamples=300)
    assert intervals == again  # seeded: the card is reproducible
    accuracy = float(np.mean((score >= 0.5) == y))
    low, high = intervals["accuracy"]
    assert low < accuracy < high and high - low < 0.06


def test_card_names_purpose_data_metrics_and_lineage_and_takes_a_release_stamp() -> None:
    reference = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    params = reference.model_copy(
        update={
            "project": ProjectParams(name="churn", model_name="churn-classifier"),
            "data": reference.data.model_copy(update={"source": "data/external/x.csv.gz"}),
            "card": CardParams(intended_use="Rank customers.", out_of_scope=["credit"]),
        }
    )
    card = render_card(
        params=params,
        metadata={"model_name": "churn-classifier", "training": {"rows": 10}, "versions": {}},
        signature={"inputs": [{"name": "tenure", "type": "int"}], "output": {"score": "p"}},
        metrics={"metrics": {"roc_auc": 0.84}, "threshold": 0.5},
        intervals={"roc_auc": (0.82, 0.86)},
        slices={"slices": {"contract": {"groups": {"a": {"rows": 5, "too_small": True}}}}},
        validation={"status": "passed", "rows": 12},
        lineage={"dvc_lock": {"models/model.skops": "f00"}},
    )
    for needle in (
        "## Intended use", "Rank customers.", "- credit", "| roc_auc | 0.8400 | 0.8200 – 0.8600 |",
        "Too few test rows to judge `contract` groups: a.",
        "`models/model.skops`: md5 `f00`", UNRELEASED, "gitml fetch churn-classifier#prod",
    ):  # fmt: skip
        assert needle in card
    # the committed card names no commit or date: only released and fetched copies do
    assert "commit" not in card and "| trained |" not in card
    stamped = stamp_release(card, "v1.2.0", "2026-11-22", "0123456789abcdef")
    assert "| release | v1.2.0 (2026-11-22, commit `0123456789ab`) |" in stamped
    assert UNRELEASED not in stamped


def test_only_the_latest_assignment_of_a_stage_is_in_force() -> None:
    """What the release workflow deploys: superseded assignment tags are not in force."""
    tags = [("m@v1.0.0", "c1", 1), ("m@v1.1.0", "c2", 2), ("m#prod#1", "c1", 3)]
    assert _registry(*tags)["m"].in_force("prod").tag == "m#prod#1"
    tags.append(("m#prod#2", "c2", 4))  # a newer promotion
    assert _registry(*tags)["m"].in_force("prod").tag == "m#prod#2"
    tags.append(("m#prod#3", "c1", 5))  # a rollback: a new tag, though m#prod#1 named v1.0.0 too
    assert _registry(*tags)["m"].in_force("prod").tag == "m#prod#3"
    tags.append(("m#prod!#4", "c2", 6))  # unassigning a version that is not in prod: no change
    assert _registry(*tags)["m"].in_force("prod").tag == "m#prod#3"
    assert _registry(*tags, ("m#prod!#5", "c1", 7))["m"].in_force("prod") is None
    assert _registry(*tags, ("m@v1.0.0!", "c1", 7))["m"].in_force("prod") is None
    assert _registry(*tags)["m"].in_force("staging") is None
