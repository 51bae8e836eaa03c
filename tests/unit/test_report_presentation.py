"""What the review report shows a reviewer: readable charts, and no noise where nothing changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gitml.config.compose import load_params
from gitml.config.schema import BootstrapParams, CardParams, ProjectParams
from gitml.evaluate.metrics import compute_slices
from gitml.labels import MISSING_LABEL, label_category
from gitml.registry.card import render_card
from gitml.registry.catalog import in_promotion_order
from gitml.review.compare import Comparison, MetricRow, SignatureDiff
from gitml.review.gate import PROMOTE, Verdict
from gitml.review.markdown import render_report
from gitml.review.revision import Revision

BASE_SHA = "1a2b3c4d5e6f" + "0" * 28
HEAD_SHA = "9f8e7d6c5b4a" + "0" * 28
ROC = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.2, "tpr": 0.7}, {"fpr": 1.0, "tpr": 1.0}]
PR = [{"recall": 0.0, "precision": 1.0}, {"recall": 0.5, "precision": 0.7}, {"recall": 1.0}]
PR[-1]["precision"] = 0.3
PROFILE_SHIFT = [
    {"column": "tenure", "statistic": "normed Wasserstein", "distance": 0.0, "shifted": False},
    {"column": "contract", "statistic": "Jensen-Shannon", "distance": 0.0, "shifted": False},
]


def _revision(
    label: str,
    sha: str | None,
    *,
    estimator: str = "logistic_regression",
    hyper: dict | None = None,
    curves: bool = True,
    predictions: pd.DataFrame | None = None,
    validation: dict | None = None,
) -> Revision:
    metadata = {"estimator": estimator, "hyperparameters": hyper or {"C": 1.0}}
    return Revision(
        label, sha, {"serving": {}}, None, predictions, validation, None, metadata, None, None,
        {"roc": ROC, "precision_recall": PR} if curves else {},
    )  # fmt: skip


def _report(
    base: Revision | None = None,
    head: Revision | None = None,
    **fields,
) -> str:
    comparison = Comparison(
        base=base or _revision("main", BASE_SHA),
        head=head or _revision("pr", HEAD_SHA),
        status="comparable",
        reason=None,
        metrics=[MetricRow("roc_auc", True, 0.84, 0.85, 0.01, 0.001, 0.02)],
        slices=fields.pop("slices", {}),
        params_changed=[],
        data_changed=fields.pop("data_changed", []),
        signature=fields.pop("signature", SignatureDiff()),
        model_changed=True,
        **fields,
    )
    return render_report(comparison, Verdict(PROMOTE, []), model_name="churn-classifier")


def _charts(report: str) -> list[tuple[str, str]]:
    """(the line above each Mermaid block, the block)."""
    return re.findall(r"\n([^\n]+)\n\n```mermaid\n(.*?)```", report, flags=re.DOTALL)


def test_charts_carry_a_colour_palette_and_a_legend_naming_base_and_head() -> None:
    charts = _charts(_report())
    assert [legend.split(":")[0] for legend, _ in charts] == ["**ROC**", "**Precision-recall**"]
    for legend, block in charts:
        assert legend.endswith("🟦 base `main` (1a2b3c4d) · 🟧 head `pr` (9f8e7d6c)")
        directive = block.splitlines()[0]
        assert directive.startswith("%%{init: ") and directive.endswith("}%%")
        init = json.loads(directive[len("%%{init: ") : -len("}%%")])
        palette = init["themeVariables"]["xyChart"]["plotColorPalette"]
        assert palette == "#2f81f7, #e8710a"  # blue base, orange head: the legend's squares
        assert "theme" not in init  # GitHub's light or dark theme still sets text and background
        assert block.count("\n    line [") == 2


def test_a_single_curve_keeps_its_own_colour() -> None:
    """With no base curve (a first model), head is still orange, not the palette's first."""
    charts = _charts(_report(base=_revision("main", BASE_SHA, curves=False)))
    legend, block = charts[0]
    assert legend == "**ROC**: 🟧 head `pr` (9f8e7d6c)"
    assert '"plotColorPalette": "#e8710a"' in block and block.count("\n    line [") == 1


def test_a_head_named_by_its_commit_is_named_once_and_the_working_tree_by_name() -> None:
    head = _revision(HEAD_SHA, HEAD_SHA)
    assert "🟧 head `9f8e7d6c`" in _charts(_report(head=head))[0][0]
    workspace = _revision("workspace", None)
    assert _charts(_report(head=workspace))[0][0].endswith("🟧 head `workspace`")


def test_unchanged_data_is_one_line_without_a_shift_table() -> None:
    same = {"rows": 7043, "columns": 20, "warnings": 1}
    report = _report(
        base=_revision("main", BASE_SHA, validation=same),
        head=_revision("pr", HEAD_SHA, validation=same),
        data_shift=PROFILE_SHIFT,
    )
    data = report.split("### Data")[1].split("###")[0]
    assert "No DVC-tracked data changed; the training data did not shift" in data
    assert "| column |" not in data and "0.0000" not in data
    assert "Rows: 7,043; columns: 20; validation warnings: 1." in data
    assert "→" not in data


def test_changed_data_keeps_the_shift_table_and_marks_changed_counts() -> None:
    shifted = [{**PROFILE_SHIFT[0], "distance": 0.3, "shifted": True}, PROFILE_SHIFT[1]]
    report = _report(
        base=_revision("main", BASE_SHA, validation={"rows": 7043}),
        head=_revision("pr", HEAD_SHA, validation={"rows": 6000}),
        data_changed=[("data/raw/telco_churn.parquet", "aaa", "bbb")],
        data_shift=shifted,
    )
    assert "1 of 2 columns shifted" in report
    assert "| `tenure` | normed Wasserstein | 0.3000 | ⚠️ yes |" in report
    assert "Rows: 7,043 → **6,000**" in report


def test_an_unchanged_estimator_is_named_once_and_a_changed_one_as_a_change() -> None:
    report = _report(head=_revision("pr", HEAD_SHA, hyper={"C": 0.5}))
    assert "Estimator: logistic_regression\n" in report
    assert "logistic_regression → **logistic_regression**" not in report
    assert "Hyperparameters changed: `C` `1.0` → `0.5`" in report
    report = _report(head=_revision("pr", HEAD_SHA, estimator="random_forest"))
    assert "Estimator: logistic_regression → **random_forest**" in report


def test_missing_groups_and_classes_read_missing() -> None:
    group = {"rows": 120, "too_small": False, "roc_auc": 0.8, "recall": 0.5}
    side = {
        "groups": {"DSL": group, "<missing>": group, "nan": group},
        "max_gap": {"roc_auc": 0.0, "recall": 0.25},
    }
    predictions = pd.DataFrame(
        {
            "row_id": [1, 2, 3, 4],
            "actual": ["Yes", "No", np.nan, "No"],
            "predicted": ["Yes", "No", "No", None],
            "score": [0.9, 0.1, 0.2, 0.3],
        }
    )
    report = _report(
        head=_revision("pr", HEAD_SHA, predictions=predictions),
        slices={"internet_service": {"head": side, "base": side}},
    )
    assert "| DSL | 120 |" in report
    assert report.count(f"| {MISSING_LABEL} | 120 |") == 2
    assert "| <missing> |" not in report and "| nan |" not in report
    assert "Largest gap between groups: roc_auc 0.0000, recall 0.2500" in report  # unchanged
    matrix = report.split("**head `pr` (9f8e7d6c)**")[1]
    assert f"| actual \\ predicted | No | Yes | {MISSING_LABEL} |" in matrix
    assert f"| {MISSING_LABEL} | 1 | 0 | 0 |" in matrix  # the row with no label is kept
    assert "| No | 1 | 0 | 1 |" in matrix


def test_the_slice_key_of_missing_values_is_labelled_missing() -> None:
    frame = pd.DataFrame({"contract": ["a", "b", None, "a"]})
    slices = compute_slices(
        frame, np.array([1, 0, 1, 0]), np.array([0.9, 0.2, 0.6, 0.4]),
        columns=["contract"], threshold=0.5, names=["recall"], min_rows=1,
    )  # fmt: skip
    labels = [label_category(g) for g in slices["contract"]["groups"]]
    assert labels == ["a", "b", MISSING_LABEL]
    assert label_category(float("nan")) == label_category(None) == label_category("") == "(missing)"
    assert label_category("No internet service") == "No internet service"


def test_the_printed_confidence_level_is_the_policys() -> None:
    assert "| 95 % interval of Δ |" in _report()
    report = _report(confidence=0.9)
    assert "| 90 % interval of Δ |" in report and "95 %" not in report
    reference = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    promotion = reference.promotion.model_copy(
        update={"bootstrap": BootstrapParams(confidence=0.975)}
    )
    params = reference.model_copy(
        update={
            "project": ProjectParams(name="churn", model_name="churn-classifier"),
            "data": reference.data.model_copy(update={"source": "x.csv"}),
            "card": CardParams(intended_use="Rank customers."),
            "promotion": promotion,
        }
    )
    card = render_card(
        params=params, metadata={}, signature={}, metrics={"metrics": {"roc_auc": 0.84}},
        intervals={"roc_auc": (0.82, 0.86)}, validation={}, lineage={},
        slices={"slices": {"c": {"groups": {"<missing>": {"rows": 3, "too_small": True}}}}},
    )  # fmt: skip
    assert "| metric | value | 97.5 % interval |" in card and "95 %" not in card
    assert "| c | (missing) (too small) | 3 |" in card
    assert "Too few test rows to judge `c` groups: (missing)." in card


def test_stages_list_in_promotion_order_then_unknown_ones_by_name() -> None:
    order = ["dev", "staging", "prod"]
    assert in_promotion_order(["prod", "dev", "staging"], order) == order
    assert in_promotion_order(["qa", "prod", "canary"], order) == ["prod", "canary", "qa"]
    assert in_promotion_order(["prod", "dev"], []) == ["dev", "prod"]  # unrestricted: by name


def test_a_new_nullable_input_is_shown_as_optional_not_breaking() -> None:
    report = _report(signature=SignatureDiff(optional_added=["discount"]))
    assert "- new optional input: `discount` (nullable)" in report
    assert "Features: +`discount` (optional)" in report
    assert "BREAKING" not in report
