"""Composition of conf/ into params.yaml, and the errors bad configuration gets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dvc.utils.hydra import compose_and_dump

from gitml.config.compose import check_params, compose_params, parse_params, write_params
from gitml.errors import ConfigError, StaleParamsError
from gitml.model.build import build_pipeline
from gitml.project import Project
from gitml.tasks import ESTIMATORS

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
# the presets the reference (binary) data can use; ridge is regression's (test_tasks.py)
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem in ESTIMATORS["binary"])
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return Project(tmp_path)


def test_committed_params_yaml_is_the_composition_of_conf() -> None:
    assert (ROOT / "params.yaml").read_text() == compose_params(CONF)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model=random_forest"],
        ["experiment=hgb_tuned"],
        ["model=hist_gradient_boosting", "model.params.max_iter=50", "seed=7"],
    ],
)
def test_composition_is_byte_identical_to_dvcs(tmp_path: Path, overrides: list[str]) -> None:
    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(CONF), None, "config", str(tmp_path), overrides)
    assert compose_params(CONF, overrides) == out.read_text()


@pytest.mark.parametrize(
    "overrides", [[f"model={m}"] for m in MODELS] + [[f"experiment={e}"] for e in EXPERIMENTS]
)
def test_every_config_option_composes_validates_and_builds(overrides: list[str]) -> None:
    params = parse_params(compose_params(CONF, overrides), source="test")
    pipeline = build_pipeline(params.model, params.data)
    assert pipeline.named_steps["estimator"].__class__.__name__


def test_seed_flows_into_split_and_model() -> None:
    params = parse_params(compose_params(CONF, ["model=random_forest", "seed=7"]), source="t")
    assert params.split.seed == 7
    assert params.model.params.random_state == 7


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=gradient_magic"], ["Could not find 'model/gradient_magic'", "random_forest"]),
        (["model.params.C=-1"], ["model.params.C: Input should be greater than 0 (got -1)"]),
        (["model.params.C=abc"], ["model.params.C: Input should be a valid number"]),
        (["split.test_size=1.5"], ["split.test_size: Input should be less than 1"]),
        (["validate.unknown_columns=maybe"], ["Input should be 'warn' or 'error'"]),
        (["+model.params.depth=3"], ["model.params.depth: unknown key (allowed here: C,"]),
        (["model.params.depth=3"], ["Could not override 'model.params.depth'"]),
        (["data.target=nope"], ["target 'nope' is not declared under 'columns'"]),
        (["evaluate.slices=[planet]"], ["evaluate.slices name undeclared columns: ['planet']"]),
        # data.task: the target's declaration, the model and every named metric must fit it
        (["data.task=regression"], ["positive_class applies to task binary only, not regression"]),
        (
            ["data.task=multiclass", "data.positive_class=null"],
            ["task multiclass: target 'churn' must be a category column with at least 3"],
        ),
        (
            ["data.task=regression", "data.positive_class=null"],
            ["task regression: target 'churn' must be an int or float column"],
        ),
        (["data.task=ordinal"], ["Input should be 'binary', 'multiclass' or 'regression'"]),
        (
            ["+promotion.minimums.rmse=1"],
            ["promotion.minimums names metrics of another task for data.task 'binary': ['rmse']"],
        ),
        (["data.positive_class=Maybe"], ["include positive_class 'Maybe'"]),
        (
            ["importance.repeats=0"],
            ["importance.repeats: Input should be greater than or equal to 1 (got 0)"],
        ),
        (["importance.confidence=1.5"], ["importance.confidence: Input should be less than 1"]),
        (
            ["+importance.shuffles=3"],
            ["importance.shuffles: unknown key (allowed here: repeats, resamples, confidence"],
        ),
    ],
)
def test_bad_configuration_names_the_key_and_allowed_values(
    project: Project, overrides: list[str], expected: list[str]
) -> None:
    before = project.params_path.read_text()
    with pytest.raises(ConfigError) as info:
        write_params(project, overrides)
    message = info.value.format()
    for text in expected:
        assert text in message
    assert project.params_path.read_text() == before  # nothing written


def test_check_reports_a_diff_and_writes_nothing(project: Project) -> None:
    check_params(project)
    edited = project.params_path.read_text().replace("test_size: 0.2", "test_size: 0.3")
    project.params_path.write_text(edited)
    with pytest.raises(StaleParamsError) as info:
        check_params(project)
    assert info.value.exit_code == 1
    assert "-  test_size: 0.3" in info.value.message
    assert "+  test_size: 0.2" in info.value.message
    assert project.params_path.read_text() == edited


def test_a_duplicate_key_in_conf_names_the_file_key_and_line_and_writes_nothing(
    project: Project,
) -> None:
    preset = project.conf_dir / "model/logistic_regression.yaml"
    preset.write_text(
        preset.read_text().replace("  C: 1.0\n", "  C: 1.0\n  max_iter: 50\n  C: 2.0\n")
    )
    before = project.params_path.read_text()
    for run in (check_params, write_params):
        with pytest.raises(ConfigError) as info:
            run(project)  # type: ignore[operator]
        assert info.value.exit_code == 2
        assert info.value.message == (
            "conf/model/logistic_regression.yaml, line 9: duplicate key 'C' "
            "in the mapping that starts at line 7"
        )
        assert "keep one 'C' entry" in (info.value.hint or "")
    assert project.params_path.read_text() == before  # nothing written


def test_check_with_overrides_matches_written_overrides(project: Project) -> None:
    write_params(project, ["model=random_forest"])
    check_params(project, ["model=random_forest"])
    with pytest.raises(StaleParamsError):
        check_params(project)
