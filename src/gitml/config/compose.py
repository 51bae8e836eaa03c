"""Compose conf/ (Hydra) into params.yaml exactly as `dvc exp run` does, and check it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from gitml.config.schema import (
    DataParams,
    EvaluateParams,
    Params,
    ProjectParams,
    PromotionParams,
    validate_model,
)
from gitml.errors import ConfigError, StaleParamsError
from gitml.files import write_text
from gitml.project import CONFIG_NAME, Project


def compose_params(conf_dir: Path, overrides: Sequence[str] = ()) -> str:
    """Return the YAML text that `conf_dir` composes to with `overrides`.

    Same calls as DVC's Hydra integration (`dvc.utils.hydra.compose_and_dump`): Hydra's
    compose API, `OmegaConf.resolve`, then `OmegaConf.to_yaml`; so the bytes are identical
    to what `dvc exp run -S ...` writes into params.yaml.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(Path(conf_dir).resolve()), version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(
            f"{conf_dir}: cannot compose the configuration: {_one_paragraph(err)}",
            hint="overrides use Hydra syntax: group=option (model=random_forest) or "
            "key.path=value (model.params.C=0.5); an unknown key needs a '+' prefix, "
            "but params are validated, so add new keys to conf/ instead",
        ) from err
    except yaml.YAMLError as err:  # a conf/ file Hydra could not load (OmegaConf raises it)
        raise _yaml_error(err, conf_dir) from err
    return OmegaConf.to_yaml(cfg)


def _yaml_error(err: yaml.YAMLError, conf_dir: Path) -> ConfigError:
    """A YAML error in a conf/ file as a ConfigError naming the file, line and problem."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return ConfigError(f"{conf_dir}: a file is not valid YAML: {err}")
    where = Path(mark.name)
    if where.is_relative_to(conf_dir.resolve().parent):
        where = where.relative_to(conf_dir.resolve().parent)
    problem = getattr(err, "problem", None) or str(err)
    duplicate = re.fullmatch(r"found duplicate key (.+)", problem)
    if duplicate is None:
        return ConfigError(f"{where}, line {mark.line + 1}: not valid YAML: {problem}")
    key = duplicate.group(1)
    context = getattr(err, "context_mark", None)
    mapping = f" in the mapping that starts at line {context.line + 1}" if context else ""
    return ConfigError(
        f"{where}, line {mark.line + 1}: duplicate key '{key}'{mapping}",
        hint=f"keep one '{key}' entry in {where} and run `gitml params` again",
    )


def _parse_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        # libyaml's loader when PyYAML has it: the review reads two revisions' params
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    return raw


_FIX_HINT = "fix the value in conf/ and run `gitml params` (allowed values are listed above)"


def parse_params(text: str, *, source: str) -> Params:
    """Parse and validate params YAML text; every problem is listed with its key path."""
    return validate_model(
        Params, _parse_mapping(text, source), source=source, what="configuration", hint=_FIX_HINT
    )


_Section = TypeVar("_Section", bound=BaseModel)


@dataclass(frozen=True)
class CommittedParams:
    """params.yaml as a revision committed it (any revision, old ones too), read by section.

    Review and the registry read the base's params as well as the head's, and a base may
    predate a section (`promotion`, `card`, `serve`) or a key. So, unlike `Params`, a
    section is validated when it is read, by the same model the stages use, and a section
    the revision lacks reads as None: each reader says what that means. Other sections never
    stand in the way. `raw` is the YAML as committed, to show what changed between revisions.
    """

    raw: Mapping[str, Any]
    source: str  # for messages, e.g. "params.yaml at 1a2b3c4d"

    @property
    def project(self) -> ProjectParams | None:
        return self._section("project", ProjectParams)

    @property
    def data(self) -> DataParams | None:
        return self._section("data", DataParams)

    @property
    def evaluate(self) -> EvaluateParams | None:
        return self._section("evaluate", EvaluateParams)

    @property
    def promotion(self) -> PromotionParams | None:
        return self._section("promotion", PromotionParams)

    def _section(self, key: str, model: type[_Section]) -> _Section | None:
        value = self.raw.get(key)
        if value is None:
            return None
        return validate_model(
            model, value, source=self.source, what=f"`{key}` section", hint=_FIX_HINT, loc=(key,)
        )


def parse_committed_params(text: str, *, source: str) -> CommittedParams:
    """Parse params.yaml as committed at some revision; sections are validated when read."""
    return CommittedParams(_parse_mapping(text, source), source)


def load_params(path: Path) -> Params:
    """Read and validate params.yaml."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found", hint="run `gitml params` to compose it from conf/")
    return parse_params(path.read_text(encoding="utf-8"), source=str(path.name))


def write_params(
    project: Project,
    overrides: Sequence[str] = (),
    *,
    check: Callable[[Params], None] | None = None,
) -> str:
    """Compose, validate and write params.yaml; refuse (writing nothing) if it is invalid.

    `check` runs on the validated params before anything is written (e.g. that the model's
    name agrees with dvc.yaml) and refuses by raising.
    """
    text = compose_params(project.conf_dir, overrides)
    params = parse_params(text, source="composed configuration")
    if check is not None:
        check(params)
    write_text(project.params_path, text)
    return text


def check_params(project: Project, overrides: Sequence[str] = ()) -> Params:
    """The params, validated; StaleParamsError, with a unified diff, when params.yaml is not
    the composition."""
    expected = compose_params(project.conf_dir, overrides)
    path = project.params_path
    actual = path.read_text(encoding="utf-8") if path.is_file() else ""
    if actual == expected:
        return parse_params(actual, source=path.name)
    diff = "".join(
        difflib.unified_diff(
            actual.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{path.name} (committed)",
            tofile=f"{path.name} (composed from conf/)",
        )
    )
    shown = " ".join(overrides)
    raise StaleParamsError(
        f"{path.name} is stale: it differs from what conf/ composes to"
        + (f" with overrides '{shown}'" if shown else "")
        + f"\n{diff}",
        hint="run `gitml params` (with the same overrides) and commit the result; "
        "to keep an experiment's choice, put it in conf/ (e.g. a conf/experiment/ preset)",
    )


def _one_paragraph(err: BaseException) -> str:
    text = str(err).strip().split("\nConfig search path:")[0]
    return text.replace("\n\n", "\n").strip()
