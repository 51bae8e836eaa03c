"""Create a gitml project from a data file: `gitml init DIR --data PATH --target COLUMN`.

Everything is built, run once and checked in a temporary directory beside DIR, then moved
into place: a refused input or a failed first run leaves nothing behind. In an existing
directory (a Git repository, or any with `force`) gitml only adds files: a path that exists
already is a conflict, and then nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import yaml

from gitml import __version__
from gitml.config.compose import write_params
from gitml.config.data_yaml import SchemaDraft, render_data_yaml
from gitml.data.inference import infer_schema
from gitml.data.inference import schema_name as data_schema_name
from gitml.errors import ConfigError, DataError, ProjectError, VcsError
from gitml.files import current_umask, write_json, write_text
from gitml.project import Project
from gitml.registry.catalog import check_model_name
from gitml.scaffold.render import ProjectSpec, model_name_for, render_files
from gitml.tasks import PRIMARY_METRIC, TASKS, Task, higher_is_better
from gitml.vcs import dvc, git

TASK_CHOICES = ("auto", *TASKS)
# The quality floor of tests/project/: the first run's primary metric, worse by this share
FLOOR_MARGIN = 0.05
FLOOR_FILE = "tests/project/floor.json"
POLICY_FILE = "conf/promotion/default.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
# Tools the project's own Makefile targets run (make test, make lint), pinned beside gitml
_PROJECT_TOOLS = ("pytest", "pytest-xdist", "pre-commit", "ruff")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProjectPlan:
    """What `gitml init` will write, decided from the data before anything is written."""

    spec: ProjectSpec
    draft: SchemaDraft
    data_file: str  # the data's path in the project: data/external/<file name>

    @cached_property
    def files(self) -> dict[str, str]:
        """Every text file of the new project except the lock, the floor and DVC's own
        (rendered once: the conflict check, the row check and the build read the same)."""
        files = render_files(self.spec)
        files[f"conf/data/{self.spec.data_name}.yaml"] = render_data_yaml(self.draft)
        if not self.draft.slices:
            files[POLICY_FILE] = without_slice_limits(files[POLICY_FILE])
        files["tests/__init__.py"] = ""
        files["tests/project/__init__.py"] = ""
        return dict(sorted(files.items()))


@dataclass(frozen=True)
class InitResult:
    root: Path
    plan: ProjectPlan
    floor: dict[str, Any]


def plan_project(
    data: Path,
    *,
    target: str,
    task: str = "auto",
    name: str,
    positive_class: str | None = None,
) -> ProjectPlan:
    """Profile `data` once and decide the project's names, task and schema (pure of writes)."""
    _check_readable(data)
    project_name = project_slug(name)
    if task not in TASK_CHOICES:
        raise ConfigError(f"--task {task!r}: expected one of {', '.join(TASK_CHOICES)}")
    # the project's copy: a name that needs no quoting in dvc.yaml's commands
    data_file = f"data/external/{re.sub(r'[^A-Za-z0-9._-]+', '_', data.name)}"
    data_name = data_schema_name(data)
    draft = infer_schema(
        data,
        target=target,
        name=data_name,
        source=str(data),  # errors name the file as given; the schema names the project's copy
        positive_class=positive_class,
        task=task,
    )
    draft = dataclasses.replace(draft, source=data_file)
    chosen = cast(Task, draft.kind)
    spec = ProjectSpec(
        project_name=project_name,
        model_name=model_name_for(project_name, chosen),
        task=chosen,
        data_name=data_name,
        target=target,
        positive_class=draft.positive_class or None,
    )
    plan = ProjectPlan(spec, draft, data_file)
    _check_rows(plan)
    return plan


def init_project(
    directory: Path,
    *,
    data: Path,
    target: str,
    task: str = "auto",
    name: str | None = None,
    positive_class: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> InitResult:
    """Create the project in `directory`, run its pipeline once and commit it (see module)."""
    say = progress or (lambda _: None)
    directory = directory.absolute()
    existing = _existing_entries(directory)
    in_repo = (directory / ".git").exists()
    if existing and not in_repo and not force:
        shown = ", ".join(sorted(existing)[:5]) + (", ..." if len(existing) > 5 else "")
        raise ProjectError(
            f"{directory}: the directory is not empty ({shown}); nothing written",
            hint="choose a new directory, or pass --force to add the project's files beside "
            "these (a file that exists is never overwritten)",
        )
    plan = plan_project(
        data, target=target, task=task, name=name or directory.name, positive_class=positive_class
    )
    say(f"task: {plan.draft.task}")  # as inferred or given, with the evidence
    _refuse_conflicts(directory, [*plan.files, plan.data_file, ".dvc"])
    made = [p for p in directory.parents if not p.exists()]  # created here, removed on failure
    directory.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".gitml-init-", dir=directory.parent))
    try:
        floor = _build(build, plan, data, say)
        if existing:
            _refuse_conflicts(directory, _all_files(build))
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        for parent in made:  # innermost first
            parent.rmdir()
        raise
    if directory.exists():  # moved into, never replaced: it may be someone's working directory
        created = _merge_into(build, directory)
        shutil.rmtree(build, ignore_errors=True)
        if not in_repo:
            git(directory, "init", "-q", "-b", "main")
    else:
        build.chmod(0o777 & ~current_umask())  # mkdtemp made it private to this user
        build.rename(directory)
        created = sorted(p.name for p in directory.iterdir() if p.name != ".git")
    tracked = _not_ignored(directory, created)
    git(directory, "add", "--", *tracked)
    git(directory, "commit", "-q", "-m", _commit_message(plan, floor), "--", *tracked)
    return InitResult(directory, plan, floor)


def project_slug(name: str) -> str:
    """`project.name` from --name or the directory: lower case, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not _NAME.match(slug):
        raise ConfigError(
            f"project name {name!r}: expected letters, digits and dashes, starting with a letter",
            hint="pass --name NAME (e.g. --name churn)",
        )
    return slug


def locked_requirements(version: str = __version__) -> list[str]:
    """requirements.lock of a project: gitml==version and every library it and the project's
    tools need, at the versions installed here (the environment the project was made with)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {"gitml": f"gitml=={version}"}
    todo: list[str] = [*_requires("gitml"), *_PROJECT_TOOLS]
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        if key in pins:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pins[key] = str(requirement)  # not installed here: the range, for pip to resolve
            continue
        pins[key] = f"{dist.metadata['Name']}=={dist.version}"
        todo += _requires(requirement.name)
    return [pins[key] for key in sorted(pins)]


def _requires(dist: str) -> list[str]:
    from importlib import metadata

    try:
        return list(metadata.requires(dist) or [])
    except metadata.PackageNotFoundError:
        return []


def _check_readable(data: Path) -> None:
    if not data.exists():
        raise DataError(f"{data}: data file not found; nothing written")
    if not data.is_file():
        raise DataError(f"{data}: not a file; pass a CSV (optionally compressed) or Parquet file")
    try:
        with data.open("rb") as handle:
            first = handle.read(1)
    except OSError as err:
        raise DataError(
            f"{data}: cannot read the data file ({err.strerror}); nothing written"
        ) from err
    if not first:
        raise DataError(f"{data}: the file is empty (0 bytes); nothing written")


def _check_rows(plan: ProjectPlan) -> None:
    validate = yaml.safe_load(plan.files["conf/validate/default.yaml"])
    needed = int(validate["min_rows"])
    rows = plan.draft.rows
    if rows < needed:
        raise DataError(
            f"{plan.data_file}: {rows:,} data rows; a project needs at least {needed:,} to "
            "split into train and test sets and train a model (min_rows in "
            "conf/validate/default.yaml); nothing written",
            hint="use a larger sample of the data",
        )


def _existing_entries(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise ProjectError(f"{directory}: exists and is not a directory; nothing written")
    return [p.name for p in directory.iterdir()]


def _refuse_conflicts(directory: Path, paths: list[str]) -> None:
    conflicts = sorted(
        {p for p in paths if (directory / p).exists() or (directory / p).is_symlink()}
    )
    if conflicts:
        shown = "\n  ".join(conflicts[:30]) + ("\n  ..." if len(conflicts) > 30 else "")
        raise ProjectError(
            f"{directory}: {len(conflicts)} file(s) that gitml init would add exist already; "
            f"nothing written:\n  {shown}",
            hint="move them away (or init into a new directory); gitml never overwrites them",
        )


def _not_ignored(directory: Path, paths: list[str]) -> list[str]:
    """`paths` minus those Git ignores (DVC-tracked data named one by one)."""
    try:
        ignored = set(git(directory, "check-ignore", "--", *paths).splitlines())
    except VcsError:  # exit 1: none of them is ignored
        ignored = set()
    return [p for p in paths if p not in ignored]


def _all_files(root: Path) -> list[str]:
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if not p.is_dir() and p.relative_to(root).parts[0] != ".git"
    ]


def _merge_into(build: Path, directory: Path) -> list[str]:
    """Move the built project's entries into `directory`; the paths created there (the top
    of each new subtree)."""
    created: list[str] = []

    def merge(src: Path, rel: Path) -> None:
        for entry in sorted(src.iterdir()):
            target = directory / rel / entry.name
            if rel == Path() and entry.name == ".git":
                continue
            if entry.is_dir() and target.is_dir():
                merge(entry, rel / entry.name)
            else:
                entry.rename(target)
                created.append((rel / entry.name).as_posix())

    merge(build, Path())
    return created


def _build(build: Path, plan: ProjectPlan, data: Path, say: Progress) -> dict[str, Any]:
    """Write, commit-ready, and run the project in `build`; the quality floor it recorded."""
    spec = plan.spec
    git(build, "init", "-q", "-b", "main")
    git(build, "var", "GIT_COMMITTER_IDENT")  # no identity: refuse now, not after the run
    dvc(build, "init", "-q")
    for rel, text in plan.files.items():
        write_text(build / rel, text)
        if rel.startswith(".ci/"):
            (build / rel).chmod(0o755)
    lock = "\n".join(locked_requirements()) + "\n"
    header = (
        f"# Made by `gitml init` (gitml {__version__}, Python {sys.version_info.major}."
        f"{sys.version_info.minor}): gitml and every library, at the versions it ran with.\n"
    )
    write_text(build / "requirements.lock", header + lock)
    (build / plan.data_file).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, build / plan.data_file)
    project = Project(build)
    write_params(project, check=lambda p: check_model_name(build, p.project.model_name))
    dvc(build, "add", "-q", plan.data_file)
    say("running the pipeline once (dvc repro) ...")
    # stages run `python -m gitml.stages.*`: this interpreter's environment first on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        dvc(build, "repro", env={"PATH": path})
    except VcsError as err:
        raise DataError(
            f"the first run of the pipeline failed, so nothing was written: {err.message}",
            hint="fix the data (or pass another --target / --task) and run gitml init again",
        ) from err
    floor = _quality_floor(build, spec.task)
    write_json(build / FLOOR_FILE, floor)
    # the gate's floor is the same (promotion.minimums): no stage reads it, nothing re-runs
    policy = build / POLICY_FILE
    write_text(policy, set_minimum(policy.read_text(encoding="utf-8"), floor))
    write_params(project)  # parses what it writes: what the tests read loads
    return floor


def _quality_floor(root: Path, task: Task) -> dict[str, Any]:
    metric = PRIMARY_METRIC[task]
    metrics = json.loads((root / "reports/metrics.json").read_text(encoding="utf-8"))
    value = metrics.get("metrics", {}).get(metric)
    if value is None:
        raise DataError(
            f"the first run computed no {metric} (reports/metrics.json); nothing written",
            hint="see reports/validation.md and the stage output above",
        )
    return {
        "metric": metric,
        "first_run": value,
        "margin": FLOOR_MARGIN,
        "floor": floor_value(metric, value),
        "about": f"set by gitml init: the first run's {metric} made {FLOOR_MARGIN:.0%} worse "
        f"(rounded); {POLICY_FILE} (minimums) and tests/project/test_model_quality.py hold "
        "the model to it",
    }


def floor_value(metric: str, first: float) -> float:
    """`first` made FLOOR_MARGIN worse, rounded to 2 decimals (3 significant digits outside
    0.1 to 1),
    never on the wrong side of `first`: Telco's AUC 0.8421 gives 0.80."""
    higher = higher_is_better(metric)
    raw = first * (1 - FLOOR_MARGIN) if higher else first * (1 + FLOOR_MARGIN)
    rounded = round(raw, 2) if _two_decimals(raw) else float(f"{raw:.3g}")
    return min(rounded, first) if higher else max(rounded, first)


def _two_decimals(value: float) -> bool:
    return 0.1 <= abs(value) <= 1


def without_slice_limits(policy: str) -> str:
    """The promotion policy's text without `slices.max_regression` and `slices.max_gap`: for
    a data set with no slice candidates, where those rules could never be evaluated and so
    would block every release. The `slices:` line says how to turn them on."""
    out: list[str] = []
    inside = False
    for line in policy.splitlines(keepends=True):
        if line.startswith("slices:"):
            inside = True
            out.append("slices:  # no slice columns: list some in conf/data (slices), then set\n")
            out.append("  # max_regression and max_gap here (see the reference project's policy)\n")
            continue
        if inside and not line.startswith((" ", "#")):
            inside = False
        if inside and line.lstrip().startswith(("max_regression:", "max_gap:")):
            continue
        out.append(line)
    return "".join(out)


def set_minimum(policy: str, floor: dict[str, Any]) -> str:
    """The promotion policy's text with `minimums.<metric>` set to the floor: the number of
    an existing line is replaced (its comment kept), a commented-out line is filled in, or a
    line is added under `minimums:`."""
    metric, value = floor["metric"], floor["floor"]
    shown = f"{value:.2f}" if _two_decimals(value) else f"{value:g}"
    lines = policy.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("minimums:")), None)
    if start is None:
        note = f"  # the first run's {metric} made {FLOOR_MARGIN:.0%} worse, by gitml init"
        return policy + f"minimums:\n  {metric}: {shown}{note}\n"
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n")), len(lines)
    )
    line = re.compile(rf"^  {re.escape(metric)}:\s*[-+0-9.eE]+")
    commented = re.compile(rf"^  # {re.escape(metric)}:")
    note = f"  # the first run's {metric} ({floor['first_run']}), {FLOOR_MARGIN:.0%} worse"
    for i in range(start + 1, end):
        if line.match(lines[i]):
            lines[i] = line.sub(f"  {metric}: {shown}", lines[i], count=1)
            return "".join(lines)
    for i in range(start + 1, end):
        if commented.match(lines[i]):
            lines[i] = f"  {metric}: {shown}{note}\n"
            return "".join(lines)
    lines.insert(start + 1, f"  {metric}: {shown}{note}\n")
    return "".join(lines)


def _commit_message(plan: ProjectPlan, floor: dict[str, Any]) -> str:
    spec = plan.spec
    first = f"gitml init: {spec.project_name} ({spec.task}, {spec.target} from {plan.data_file})"
    return f"{first}\n\nFirst run: {floor['metric']} {floor['first_run']} (floor {floor['floor']})."
