"""Render the framework files of a project from the scaffold templates (values in, text out).

Templates are package data beside this module, laid out as in a project; a path component
`dot-NAME` becomes `.NAME` and a trailing `.in` is dropped (so that the scaffold's own
`.gitignore`, `.github/`, `.ci/`, `pyproject.toml` and `dvc.yaml` do not act on the gitml
repository: DVC reads every `dvc.yaml` in a repository).
`@@key@@` is the placeholder syntax (`${...}` belongs to DVC and Hydra, `${{ }}` to GitHub
Actions). A line holding only `@@key@@` is replaced by a block of lines at its indentation
(none for an empty block); elsewhere `@@key@@` is replaced inline.
An unknown or unfilled placeholder is an error, so a template cannot silently rot.

Two modes: `project` renders what `gitml init` writes; `framework` renders the reference
project at the root of the gitml repository, whose stages depend on gitml's own source files
instead of `requirements.lock` (tests/integration/test_init.py compares them byte for byte).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Literal

import yaml

from gitml import __version__
from gitml.tasks import ESTIMATORS, HEADLINE, METRICS, PLOTS, Task

Mode = Literal["project", "framework"]

_PLACEHOLDER = re.compile(r"@@([a-z_:]+)@@")
_BLOCK = re.compile(r"^(\s*)@@([a-z_:]+)@@\s*$")
# Each stage's code: the gitml source files it runs, the library modules it imports included
# (framework mode), or, in a project, the lock file that pins gitml and every library (a
# project has no source tree).
CODE_DEPS: dict[str, tuple[str, ...]] = {
    "ingest": (
        "src/gitml/stages/ingest.py",
        "src/gitml/data/io.py",
        "src/gitml/data/typing.py",
        "src/gitml/data/coercion.py",
    ),
    "validate": (
        "src/gitml/stages/validate.py",
        "src/gitml/data/io.py",
        "src/gitml/data/validation.py",
        "src/gitml/data/coercion.py",
        "src/gitml/tasks.py",
    ),
    "split": (
        "src/gitml/stages/split.py",
        "src/gitml/data/io.py",
        "src/gitml/data/split.py",
        "src/gitml/tasks.py",
    ),
    "train": (
        "src/gitml/stages/train.py",
        "src/gitml/data/io.py",
        "src/gitml/model",
        "src/gitml/data/profile.py",
        "src/gitml/tasks.py",
    ),
    "evaluate": (
        "src/gitml/stages/evaluate.py",
        "src/gitml/data/io.py",
        "src/gitml/evaluate",
        "src/gitml/model/scoring.py",
        "src/gitml/model/persist.py",
        "src/gitml/tasks.py",
    ),
    "importance": (
        "src/gitml/stages/importance.py",
        "src/gitml/data/io.py",
        "src/gitml/review/permutation.py",
        "src/gitml/review/bootstrap.py",
        "src/gitml/evaluate/metrics.py",
        "src/gitml/model/scoring.py",
        "src/gitml/model/persist.py",
        "src/gitml/tasks.py",
    ),
    "card": (
        "src/gitml/stages/card.py",
        "src/gitml/registry/card.py",
        "src/gitml/review/bootstrap.py",
        "src/gitml/evaluate",
        "src/gitml/labels.py",
        "src/gitml/tasks.py",
    ),
}
LOCK_FILE = "requirements.lock"
TASK_LABELS: dict[Task, str] = {
    "binary": "binary-classification",
    "multiclass": "multiclass-classification",
    "regression": "regression",
}
# conf/experiment/ presets and the tasks they fit (rf_balanced sets class weights and the
# binary threshold)
EXPERIMENTS: dict[str, tuple[Task, ...]] = {
    "hgb_tuned.yaml": ("binary", "multiclass", "regression"),
    "rf_balanced.yaml": ("binary",),
}
# Scaffold files that are not project files, or are rendered by code
_SKIP_SUFFIXES = (".py", ".pyc")
_PER_TASK = ("conf/promotion", "conf/evaluate")
_POLICY = "conf/promotion/default.yaml"


@dataclass(frozen=True)
class ProjectSpec:
    """What a project's framework files are rendered from: each name set once, here."""

    project_name: str  # `project.name`: the registry's and the DVC remote's prefix
    model_name: str  # `project.model_name`: dvc.yaml's model artifact, release tags
    task: Task
    data_name: str  # conf/data/<data_name>.yaml
    target: str
    positive_class: str | None = None  # binary only
    gitml_version: str = __version__  # the version a project pins (requirements.lock)
    # promotion.importance.forbid_top_k.columns: none from `gitml init` (which inputs are
    # sensitive is the team's call); the reference project names two of Telco's slice columns
    forbid_top_k: tuple[str, ...] = ()

    @property
    def default_model(self) -> str:
        return ESTIMATORS[self.task][0]


def model_name_for(project_name: str, task: Task) -> str:
    """The model artifact's name, derived from the project's: `churn` -> `churn-classifier`."""
    return f"{project_name}-{'regressor' if task == 'regression' else 'classifier'}"


def render_files(spec: ProjectSpec, *, mode: Mode = "project") -> dict[str, str]:
    """Every framework file of the project as {relative path: text}, in path order."""
    values = _values(spec, mode)
    root = resources.files("gitml.scaffold")
    files: dict[str, str] = {}
    for rel, item in sorted(_walk(root, "")):
        target = _project_path(rel, spec.task, root)
        if target is None:
            continue
        files[target] = fill(item.read_text(encoding="utf-8"), values, source=rel)
    if spec.forbid_top_k:
        files[_POLICY] = forbid_in_top_k(files[_POLICY], spec.forbid_top_k)
    return dict(sorted(files.items()))


def forbid_in_top_k(policy: str, columns: tuple[str, ...]) -> str:
    """The promotion policy's text with `importance.forbid_top_k.columns` set to `columns`
    (the templates hold `[]` there, and stay YAML that composes as they are)."""
    empty = "    columns: []\n"
    if policy.count(empty) != 1:
        raise ValueError(f"{_POLICY}: expected one line {empty.strip()!r} under forbid_top_k")
    return policy.replace(empty, f"    columns: [{', '.join(columns)}]\n")


def fill(template: str, values: dict[str, str | list[str]], *, source: str) -> str:
    """Replace every `@@key@@` of `template`; a key without a value is a ValueError."""
    out: list[str] = []
    for line in template.splitlines(keepends=True):
        block = _BLOCK.match(line)
        if block:
            indent, key = block.groups()
            value = _lookup(values, key, source)
            lines = value if isinstance(value, list) else [value]
            out += [f"{indent}{item}\n" if item else "\n" for item in lines]
            continue
        out.append(_PLACEHOLDER.sub(lambda m: _inline(values, m.group(1), source), line))
    return "".join(out)


def _lookup(values: dict[str, str | list[str]], key: str, source: str) -> str | list[str]:
    if key not in values:
        raise ValueError(f"scaffold template {source}: no value for @@{key}@@")
    return values[key]


def _inline(values: dict[str, str | list[str]], key: str, source: str) -> str:
    value = _lookup(values, key, source)
    if isinstance(value, list):
        raise ValueError(
            f"scaffold template {source}: @@{key}@@ is a block; put it on its own line"
        )
    return value


def _walk(node: Traversable, prefix: str) -> list[tuple[str, Traversable]]:
    found = []
    for child in node.iterdir():
        if child.name.startswith("."):  # tool caches, never templates
            continue
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                found += _walk(child, f"{rel}/")
        elif not child.name.endswith(_SKIP_SUFFIXES) or rel.startswith("tests/"):
            found.append((rel, child))
    return found


def _project_path(rel: str, task: Task, root: Traversable) -> str | None:
    """Where the template `rel` goes in a project of `task`; None: not for this task."""
    path = "/".join(
        p.replace("dot-", ".", 1) if p.startswith("dot-") else p for p in rel.split("/")
    )
    path = path.removesuffix(".in")
    folder, _, name = path.rpartition("/")
    if folder in _PER_TASK:
        # the task's own defaults; the binary ones where a task has none yet
        chosen = task if root.joinpath(folder, f"{task}.yaml").is_file() else "binary"
        return f"{folder}/default.yaml" if name == f"{chosen}.yaml" else None
    if folder == "conf/model":
        return path if name.removesuffix(".yaml") in ESTIMATORS[task] else None
    if folder == "conf/experiment":
        return path if task in EXPERIMENTS.get(name, ()) else None
    return path


def _values(spec: ProjectSpec, mode: Mode) -> dict[str, str | list[str]]:
    binary = spec.task == "binary"
    values: dict[str, str | list[str]] = {
        "project_name": spec.project_name,
        "model_name": spec.model_name,
        "data_name": spec.data_name,
        "target": spec.target,
        "task_kind": _kind(spec.task),
        "gitml_version": spec.gitml_version,
        "model": spec.default_model,
        "task_label": TASK_LABELS[spec.task],
        "artifact_desc": _yaml_text(
            f"{_kind(spec.task)} of {spec.target} (scikit-learn Pipeline stored with skops)"
        ),
        "positive_class_param": ["- data.positive_class"] if binary else [],
        "threshold_param": ["- evaluate.threshold"] if binary else [],
        "serve_threshold": (
            ["threshold: ${evaluate.threshold}  # label = positive class when score >= threshold"]
            if binary
            else []
        ),
        "plot_outs": [
            line
            for name in PLOTS[spec.task]
            for line in (f"- reports/plots/{name}:", "    cache: false", "    persist: true")
        ],
        "plots": _plots(spec),
        "gitml_spec": _gitml_spec(mode),
        "exps_drop": _exps_drop(spec.task),
        "ci_checks": _ci_checks(mode),
        "ci_setup": _ci_setup(mode),
    }
    for stage, paths in CODE_DEPS.items():
        deps = paths if mode == "framework" else (LOCK_FILE,)
        values[f"code_deps:{stage}"] = [f"- {p}" for p in deps]
    return values


def _exps_drop(task: Task) -> str:
    """`make exps`'s `dvc exp show --drop` pattern (DVC matches it at the start of each column
    name): what a model swap changes besides the model and the task's headline metrics."""
    hidden = [m for m in METRICS[task] if m not in HEADLINE[task]]
    return "|".join(
        [
            "Created",
            ".*/",  # dependency hashes: models/model.skops, reports/metrics.json, ...
            r"(estimator|model_name|task|threshold)\b",  # metrics.json's labels
            r"(test_set|per_class)\.",
            r"model\.(params|preprocessing)\.",
            *([rf"metrics\.({'|'.join(hidden)})\b"] if hidden else []),
        ]
    )


def _kind(task: Task) -> str:
    return {"binary": "binary classifier", "multiclass": "multiclass classifier"}.get(
        task, "regressor"
    )


def _gitml_spec(mode: Mode) -> list[str]:
    if mode == "framework":
        return ["# gitml itself: this checkout, editable.", "GITML_SPEC ?= -e ."]
    return [
        "# gitml itself: the version requirements.lock pins (gitml==X.Y.Z), from PyPI. To use a",
        "# local checkout or wheel instead: make repro GITML_SPEC=/path/to/gitml",
        "GITML_SPEC ?= $(shell grep -m1 '^gitml==' requirements.lock)",
    ]


def _ci_setup(mode: Mode) -> list[str]:
    """What CI installs before the venv: gitml's own SSH remote tests run Debian's sshd."""
    if mode != "framework":
        return []
    return [
        "# The SSH remote tests start Debian's sshd on 127.0.0.1 (tests/integration/remotes.py).",
        "if [ ! -x /usr/sbin/sshd ]; then",
        '  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then',
        "    apt-get update -qq",
        "    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null",
        "  else",
        '    echo "ci: /usr/sbin/sshd is missing: install openssh-server as root" >&2',
        "    exit 1",
        "  fi",
        "fi",
    ]


def _ci_checks(mode: Mode) -> list[str]:
    if mode == "framework":
        return [
            'check "ruff" ruff check src tests',
            'check "ruff format" ruff format --check src tests',
            'check "import-linter" lint-imports',
            'check "mypy" mypy src',
        ]
    return [
        'check "ruff" ruff check tests',
        'check "ruff format" ruff format --check tests',
        'check "params" gitml params --check',
    ]


def _plots(spec: ProjectSpec) -> list[str]:
    """dvc.yaml's `plots:` for the task; axis labels name the target, never a domain."""
    target = spec.target
    if spec.task == "binary":
        event = f"{target} = {spec.positive_class}"
        plots = [
            _plot(
                "ROC",
                "simple",
                "fpr",
                "roc.json",
                "tpr",
                "false positive rate",
                "true positive rate",
            ),
            _plot("Precision-Recall", "simple", "recall", "precision_recall.json", "precision"),
            _plot(
                "Calibration",
                "simple",
                "mean_predicted",
                "calibration.json",
                "fraction_positive",
                f"mean predicted probability of {event}",
                f"observed fraction of {event}",
            ),
            _confusion(spec),
        ]
    elif spec.task == "multiclass":
        plots = [
            _plot(
                "ROC one-vs-rest",
                "simple",
                "fpr",
                "roc_ovr.json",
                "tpr",
                "false positive rate (each class against the others)",
                "true positive rate",
            ),
            _confusion(spec),
        ]
    else:
        plots = [
            _plot(
                "Predicted vs actual",
                "scatter",
                "actual",
                "predicted_vs_actual.json",
                "predicted",
                f"actual {target}",
                f"predicted {target}",
            ),
            _plot(
                "Residuals",
                "scatter",
                "predicted",
                "residuals.json",
                "residual",
                f"predicted {target}",
                f"residual (actual - predicted {target})",
            ),
        ]
    return ["plots:", *(line for plot in plots for line in plot)]


def _plot(
    title: str,
    template: str,
    x: str,
    file: str,
    y: str,
    x_label: str | None = None,
    y_label: str | None = None,
) -> list[str]:
    lines = [
        f"  - {title}:",
        f"      template: {template}",
        f"      x: {x}",
        "      y:",
        f"        reports/plots/{file}: {y}",
    ]
    if x_label is not None and y_label is not None:
        lines += [f"      x_label: {_yaml_text(x_label)}", f"      y_label: {_yaml_text(y_label)}"]
    return lines


def _confusion(spec: ProjectSpec) -> list[str]:
    lines = [
        "  - Confusion matrix:",
        "      template: confusion",
        "      x: actual",
        "      y:",
        "        reports/predictions.csv: predicted",
    ]
    if spec.task != "binary":
        lines += [
            f"      x_label: {_yaml_text(f'actual {spec.target}')}",
            f"      y_label: {_yaml_text(f'predicted {spec.target}')}",
        ]
    return lines


def _yaml_text(text: str) -> str:
    """`text` as a YAML scalar: plain when it loads back as itself, else double-quoted."""
    try:
        plain = yaml.safe_load(text) == text and ": " not in text and " #" not in text
    except yaml.YAMLError:
        plain = False
    return text if plain else json.dumps(text, ensure_ascii=False)
