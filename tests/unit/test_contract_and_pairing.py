"""Breaking signature changes as clients see them, and when two revisions can be paired."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from gitml.review.compare import compare
from gitml.review.contract import diff_signatures
from gitml.review.revision import Revision

SIGNATURE = {
    "inputs": [
        {"name": "tenure", "type": "int", "nullable": False, "min": 0, "max": 120},
        {"name": "charges", "type": "float", "nullable": True, "min": 0},
        {"name": "female", "type": "int", "nullable": False, "allowed": [0, 1]},
        {"name": "contract", "type": "category", "nullable": False, "categories": ["a", "b"]},
    ],
    "output": {"classes": ["No", "Yes"], "positive_class": "Yes"},
}


def _changed(edit) -> dict:
    head = copy.deepcopy(SIGNATURE)
    edit(head)
    return head


def _inputs(sig: dict) -> dict:
    return {i["name"]: i for i in sig["inputs"]}


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda s: s["output"].update(positive_class="No"), "positive class changed"),
        (lambda s: s["output"].update(classes=["No", "Maybe"]), "output classes changed"),
        (lambda s: _inputs(s)["contract"].update(categories=["a"]), "categories removed ['b']"),
        (lambda s: _inputs(s)["tenure"].update(min=1), "minimum raised 0 -> 1"),
        (lambda s: _inputs(s)["tenure"].update(max=100), "maximum lowered 120 -> 100"),
        (lambda s: _inputs(s)["charges"].update(max=500), "maximum lowered none -> 500"),
        (lambda s: _inputs(s)["female"].update(allowed=[1]), "allowed values removed [0]"),
        (lambda s: _inputs(s)["charges"].update(type="int"), "type float -> int"),
        (lambda s: _inputs(s)["tenure"].update(type="category"), "type int -> category"),
        (lambda s: _inputs(s)["charges"].update(nullable=False), "no longer nullable"),
        (lambda s: s["inputs"].pop(0), "input 'tenure' removed"),
        (
            lambda s: s["inputs"].append({"name": "x", "type": "int", "nullable": False}),
            "new required input 'x'",
        ),
    ],
)
def test_changes_that_break_clients_are_breaking(edit, reason) -> None:
    diff = diff_signatures(SIGNATURE, _changed(edit))
    assert any(reason in text for text in diff.breaking), diff.breaking


@pytest.mark.parametrize(
    ("edit", "shown"),
    [
        (lambda s: _inputs(s)["tenure"].update(type="float"), "type int -> float"),
        (lambda s: _inputs(s)["tenure"].update(max=200), None),
        (lambda s: _inputs(s)["contract"].update(categories=["a", "b", "c"]), "categories added"),
        (lambda s: _inputs(s)["tenure"].update(nullable=True), "now nullable"),
        (lambda s: _inputs(s)["tenure"].update(observed={"min": 5, "max": 9}), None),
    ],
)
def test_widening_is_a_change_not_a_break(edit, shown) -> None:
    diff = diff_signatures(SIGNATURE, _changed(edit))
    assert diff.breaking == []
    if shown:
        assert any(shown in text for text in diff.changed)


def test_a_new_nullable_input_is_a_new_optional_input() -> None:
    head = _changed(lambda s: s["inputs"].append({"name": "x", "type": "float", "nullable": True}))
    diff = diff_signatures(SIGNATURE, head)
    assert diff.breaking == [] and diff.optional_added == ["x"] and diff.added == []


def test_a_signature_gaining_its_explanation_is_no_change_for_clients() -> None:
    """Models trained before explanations were recorded have no `explanation`: a head that
    has one (or explains on another scale) breaks no request of the base's clients."""
    explanation = {"method": "linear", "output": "log_odds", "baseline": -1.7}
    head = _changed(lambda s: s.update(explanation=explanation))
    assert diff_signatures(SIGNATURE, head) == diff_signatures(SIGNATURE, SIGNATURE)
    rescaled = _changed(lambda s: s.update(explanation=explanation | {"output": "probability"}))
    assert diff_signatures(head, rescaled).breaking == []


def _rev(label: str, ids, labels, *, fingerprint: str | None = "fp") -> Revision:
    predictions = pd.DataFrame(
        {
            "row_id": list(ids),
            "actual": list(labels),
            "predicted": list(labels),
            "score": [0.9 if a == "Yes" else 0.1 for a in labels],
        }
    )
    metrics = {
        "threshold": 0.5,
        "metrics": {"roc_auc": 1.0},
        "test_set": {"fingerprint": fingerprint} if fingerprint else {},
    }
    signature = {"inputs": [], "output": {"classes": ["No", "Yes"], "positive_class": "Yes"}}
    return Revision(label, None, metrics, None, predictions, None, signature, None, None, None, {})


def _compare(base: Revision, head: Revision):
    return compare(base, head, resamples=100, confidence=0.95, seed=0)


LABELS = ["No", "Yes"] * 500


def test_paired_rows_are_comparable() -> None:
    result = _compare(_rev("main", range(1000), LABELS), _rev("pr", range(1000), LABELS))
    assert result.status == "comparable"
    assert result.metrics[0].low is not None


def test_a_missing_fingerprint_is_not_equal() -> None:
    base = _rev("main", range(1000), LABELS, fingerprint=None)
    head = _rev("pr", range(1000), LABELS, fingerprint=None)
    result = _compare(base, head)
    assert result.status == "not_comparable"
    assert "fingerprint is missing" in result.reason
    assert result.metrics[0].low is None  # no paired interval is made up


def test_rows_that_barely_overlap_are_not_compared() -> None:
    base = _rev("main", range(1000), LABELS)
    head = _rev("pr", range(990, 1990), LABELS)  # 10 shared row ids, same fingerprint claimed
    result = _compare(base, head)
    assert result.status == "not_comparable"
    assert "only 10 row ids match (1,000 base rows, 1,000 head rows)" in result.reason


def test_duplicated_ids_and_different_labels_are_not_compared() -> None:
    dup = _compare(_rev("main", [0, 0, 1, 2], ["No"] * 4), _rev("pr", range(4), ["No"] * 4))
    assert dup.status == "not_comparable"
    assert "1 duplicated row_id values in base's predictions" in dup.reason
    flipped = ["Yes" if a == "No" else "No" for a in LABELS]
    relabelled = _compare(_rev("main", range(1000), LABELS), _rev("pr", range(1000), flipped))
    assert relabelled.status == "not_comparable"
    assert "1,000 of 1,000 matched rows have different labels" in relabelled.reason
