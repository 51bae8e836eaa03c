"""The scaffold of `gitml init`: templates, per-task files, the quality floor (pure)."""

from __future__ import annotations

import re

import pytest
import yaml

from gitml.errors import ConfigError
from gitml.scaffold.create import FLOOR_MARGIN, floor_value, project_slug, set_minimum
from gitml.scaffold.render import ProjectSpec, fill, render_files
from gitml.tasks import ESTIMATORS, HEADLINE, METRICS, PLOTS, PRIMARY_METRIC, higher_is_better


def _spec(task: str, target: str = "price (usd)") -> ProjectSpec:
    positive = "yes" if task == "binary" else None
    return ProjectSpec("shop", f"shop-{task}", task, "sales", target, positive)  # type: ignore[arg-type]


def test_a_placeholder_without_a_value_is_an_error_naming_the_template() -> None:
    with pytest.raises(ValueError, match=r"scaffold template x.yaml: no value for @@nope@@"):
        fill("a: @@nope@@\n", {}, source="x.yaml")
    assert fill("  @@block@@\nb: @@v@@\n", {"block": ["- 1", "- 2"], "v": "z"}, source="t") == (
        "  - 1\n  - 2\nb: z\n"
    )
    assert fill("a\n    @@empty@@\nb\n", {"empty": []}, source="t") == "a\nb\n"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_task_gets_its_own_models_plots_and_a_valid_dvc_yaml(task: str) -> None:
    files = render_files(_spec(task))
    assert not [rel for rel, text in files.items() if "@@" in text]
    models = sorted(r.split("/")[-1][:-5] for r in files if r.startswith("conf/model/"))
    assert models == sorted(ESTIMATORS[task])
    assert f"  - model: {ESTIMATORS[task][0]}\n" in files["conf/config.yaml"]
    pipeline = yaml.safe_load(files["dvc.yaml"])
    outs = [next(iter(o)) for o in pipeline["stages"]["evaluate"]["outs"]]
    assert outs[2] == "reports/calibrator.json"  # every task's: a regressor's says none applies
    assert outs[3:] == [f"reports/plots/{name}" for name in PLOTS[task]]
    assert ("data.positive_class" in files["dvc.yaml"]) == (task == "binary")
    assert list(pipeline["artifacts"]) == [f"shop-{task}"]
    labels = [
        label
        for plot in pipeline["plots"]
        for spec in plot.values()
        for label in (spec.get("x_label", ""), spec.get("y_label", ""))
    ]
    assert "churn" not in files["dvc.yaml"]
    if task != "binary":
        assert any("price (usd)" in label for label in labels)  # axis labels name the target


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_make_exps_keeps_the_model_the_headline_metrics_and_other_changed_params(
    task: str,
) -> None:
    """The columns `dvc exp show --only-changed` has after a model swap (plus a changed
    threshold): `make exps` drops all but these, as DVC applies --drop (re.match)."""
    makefile = render_files(_spec(task))["Makefile"]
    drop = re.compile(re.search(r"^EXPS_DROP \?= (.+)$", makefile, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert "dvc exp show --only-changed --no-pager --drop '$(EXPS_DROP)'" in makefile
    columns = [
        "Experiment",
        "Created",
        *("model_name", "estimator", "task", "threshold", "test_set.rows"),
        *("test_set.class_counts.a", "per_class.a.precision", "per_class.a.support"),
        *(f"metrics.{m}" for m in METRICS[task]),
        *("model.name", "model.preprocessing.numeric", "model.params.C"),
        *("model.params.n_estimators", "evaluate.threshold", "data.slices"),
        *("models/model.skops", "reports/metrics.json", "src/gitml/model"),
    ]
    shown = [c for c in columns if not drop.match(c)]
    assert shown == [
        "Experiment",
        *(f"metrics.{m}" for m in METRICS[task] if m in HEADLINE[task]),
        "model.name",
        "evaluate.threshold",
        "data.slices",
    ]


def test_project_names_are_slugs_and_bad_ones_are_refused() -> None:
    assert project_slug("My Churn_Project") == "my-churn-project"
    with pytest.raises(ConfigError, match="project name '123'"):
        project_slug("123")


def test_the_floor_is_the_first_run_made_worse_by_the_margin_rounded() -> None:
    assert floor_value("roc_auc", 0.842101) == 0.80  # Telco: the reference's minimum
    assert floor_value("rmse", 54.3) == 57.0  # a ceiling for lower-is-better metrics
    assert floor_value("rmse", 0.0123) == 0.0129
    assert floor_value("f1_macro", 0.05) <= 0.05


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_each_policy_states_the_floor_rule_init_applies(task: str) -> None:
    """The comment over `minimums` says what `gitml init` writes there: one rule, the quality
    floor's (floor_value), for every task."""
    policy = render_files(_spec(task))["conf/promotion/default.yaml"]
    metric = PRIMARY_METRIC[task]
    factor = 1 - FLOOR_MARGIN if higher_is_better(metric) else 1 + FLOOR_MARGIN
    comment = " ".join(
        line.strip().removeprefix("# ") for line in policy.splitlines() if line.startswith("  # ")
    )
    assert f"the first run's {metric} made {FLOOR_MARGIN:.0%} worse, x {factor:g}," in comment
    assert floor_value(metric, 0.9) == round(0.9 * factor, 2)  # the factor is init's
    first = 54.3 if task == "regression" else 0.8421
    edited = set_minimum(
        policy, {"metric": metric, "floor": floor_value(metric, first), "first_run": first}
    )
    assert yaml.safe_load(edited)["minimums"][metric] == floor_value(metric, first)


def test_set_minimum_edits_the_policy_line_and_keeps_its_comments() -> None:
    policy = (
        "# policy\nminimums:  # floors\n  r2: 0.0  # chance\n  # rmse: <first run x 1.1>\n"
        "max_regression: {}\n"
    )
    edited = set_minimum(policy, {"metric": "rmse", "floor": 57.0, "first_run": 54.3})
    assert "  rmse: 57  # the first run's rmse (54.3), 5% worse\n" in edited
    assert "  r2: 0.0  # chance\n" in edited and edited.startswith("# policy\n")
    again = set_minimum(edited, {"metric": "rmse", "floor": 60.0, "first_run": 57.1})
    assert "  rmse: 60  # the first run's rmse (54.3), 5% worse\n" in again
    added = set_minimum(
        "minimums:\n  r2: 0.0\nx: 1\n", {"metric": "f1_macro", "floor": 0.9, "first_run": 0.95}
    )
    assert yaml.safe_load(added)["minimums"] == {"f1_macro": 0.9, "r2": 0.0}


def test_the_wheel_carries_every_template() -> None:
    """[tool.setuptools.package-data] matches every file of the scaffold: a new template
    left out of it would be missing from an installed gitml's `gitml init`."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    scaffold = root / "src/gitml/scaffold"
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["gitml.scaffold"]
    carried = {p for pattern in patterns for p in scaffold.glob(pattern) if p.is_file()}
    templates = {
        p
        for p in scaffold.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and not p.name.startswith(".")
        and not (p.parent == scaffold and p.suffix == ".py")
    }
    assert sorted(str(p.relative_to(scaffold)) for p in templates - carried) == []
