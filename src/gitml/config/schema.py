"""Typed, validated params: what every stage reads from params.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from gitml.errors import ConfigError
from gitml.tasks import ALL_METRICS, ESTIMATORS, Task
from gitml.tasks import METRICS as TASK_METRICS

_SLUG = r"^[a-z0-9][a-z0-9_-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectParams(_Strict):
    name: Annotated[str, Field(pattern=_SLUG)]
    model_name: Annotated[str, Field(pattern=_SLUG)]


class ColumnSpec(_Strict):
    """One column of the declared data schema."""

    type: Literal["int", "float", "category"]
    categories: list[str] | None = None
    allowed: list[float] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    max_null_fraction: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnSpec:
        if self.type == "category" and not self.categories:
            raise ValueError("a 'category' column needs a non-empty 'categories' list")
        if self.type != "category" and self.categories is not None:
            raise ValueError(f"'categories' applies to category columns, not {self.type!r}")
        if self.type == "category" and (self.min is not None or self.max is not None):
            raise ValueError("'min'/'max' apply to numeric columns, not categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.max_null_fraction is not None and not self.nullable:
            raise ValueError("'max_null_fraction' needs 'nullable: true'")
        return self

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")


class DataParams(_Strict):
    """The data set: where it comes from, what it must look like, and what is predicted."""

    name: Annotated[str, Field(pattern=_SLUG)]
    source: Annotated[str, Field(min_length=1)]
    format: Literal["auto", "csv", "parquet"] = "auto"
    task: Task = "binary"
    target: str
    positive_class: str | None = None  # binary only: the class whose probability is the score
    drop: list[str] = []
    columns: dict[str, ColumnSpec]
    slices: list[str] = []

    @model_validator(mode="after")
    def _consistent(self) -> DataParams:
        target = self.columns.get(self.target)
        if target is None:
            raise ValueError(f"target {self.target!r} is not declared under 'columns'")
        self._check_target(target)
        if "_row" in self.columns:
            raise ValueError("column name '_row' is reserved by gitml (the source row number)")
        for key in ("slices", "drop"):
            unknown = [c for c in getattr(self, key) if c not in self.columns]
            if unknown:
                raise ValueError(f"{key} name undeclared columns: {unknown}")
        if self.target in self.drop:
            raise ValueError(f"the target {self.target!r} cannot be listed under 'drop'")
        return self

    def _check_target(self, target: ColumnSpec) -> None:
        """The target's declaration must fit the task (data.task)."""
        name, task = self.target, self.task
        if task == "binary":
            if target.type != "category" or self.positive_class not in (target.categories or []):
                raise ValueError(
                    f"task binary: target {name!r} must be a category column whose categories "
                    f"include positive_class {self.positive_class!r}"
                )
            if len(target.categories or []) != 2:
                raise ValueError(
                    f"task binary: target {name!r} must have exactly 2 categories, found "
                    f"{len(target.categories or [])} (use task: multiclass for more)"
                )
            return
        if self.positive_class is not None:
            raise ValueError(
                f"positive_class applies to task binary only, not {task} "
                f"(got {self.positive_class!r}): remove it"
            )
        if task == "multiclass" and (target.type != "category" or len(target.categories or []) < 3):
            raise ValueError(
                f"task multiclass: target {name!r} must be a category column with at least 3 "
                f"categories (found type {target.type!r}, {len(target.categories or [])} "
                "categories; use task: binary for 2)"
            )
        if task == "regression" and not target.numeric:
            raise ValueError(
                f"task regression: target {name!r} must be an int or float column "
                f"(found type {target.type!r})"
            )

    @property
    def positive(self) -> str:
        """The positive class of a binary task; ConfigError for the other tasks."""
        if self.positive_class is None:
            raise ConfigError(
                f"data.positive_class applies to task binary; this data set's task is {self.task}"
            )
        return self.positive_class

    @property
    def categorical(self) -> list[str]:
        """Declared category columns (the target included)."""
        return [c for c, spec in self.columns.items() if spec.type == "category"]

    @property
    def features(self) -> list[str]:
        """Model inputs: declared columns minus the target and dropped ones, in declared order."""
        return [c for c in self.columns if c != self.target and c not in self.drop]


class ValidateParams(_Strict):
    min_rows: Annotated[int, Field(ge=1)]
    max_duplicate_fraction: Annotated[float, Field(ge=0, le=1)]
    unknown_columns: Literal["warn", "error"]
    min_class_fraction: Annotated[float, Field(gt=0, le=0.5)]
    examples: Annotated[int, Field(ge=1, le=100)] = 5


class SplitParams(_Strict):
    test_size: Annotated[float, Field(gt=0, lt=1)]
    seed: Annotated[int, Field(ge=0)]
    stratify: bool = True


class Preprocessing(_Strict):
    numeric: Literal["standard", "impute", "none"]
    categorical: Literal["onehot", "ordinal"]


class LogisticRegressionParams(_Strict):
    C: Annotated[float, Field(gt=0)] = 1.0
    max_iter: Annotated[int, Field(ge=1, le=100_000)] = 1000
    class_weight: Literal["balanced"] | None = None
    tol: Annotated[float, Field(gt=0)] = 1e-4


class RandomForestParams(_Strict):
    n_estimators: Annotated[int, Field(ge=1, le=5000)] = 300
    max_depth: Annotated[int, Field(ge=1)] | None = None
    min_samples_leaf: Annotated[int, Field(ge=1)] = 1
    max_features: Literal["sqrt", "log2"] | Annotated[float, Field(gt=0, le=1)] | None = "sqrt"
    class_weight: Literal["balanced", "balanced_subsample"] | None = None
    n_jobs: Annotated[int, Field(ge=-1)] = -1
    random_state: Annotated[int, Field(ge=0)] = 0


class HistGradientBoostingParams(_Strict):
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_iter: Annotated[int, Field(ge=1, le=10_000)] = 100
    max_leaf_nodes: Annotated[int, Field(ge=2)] | None = 31
    max_depth: Annotated[int, Field(ge=1)] | None = None
    min_samples_leaf: Annotated[int, Field(ge=1)] = 20
    l2_regularization: Annotated[float, Field(ge=0)] = 0.0
    class_weight: Literal["balanced"] | None = None
    early_stopping: bool = False
    random_state: Annotated[int, Field(ge=0)] = 0


class RidgeParams(_Strict):
    alpha: Annotated[float, Field(ge=0)] = 1.0
    fit_intercept: bool = True
    tol: Annotated[float, Field(gt=0)] = 1e-4


class LogisticRegressionModel(_Strict):
    name: Literal["logistic_regression"]
    preprocessing: Preprocessing
    params: LogisticRegressionParams


class RandomForestModel(_Strict):
    name: Literal["random_forest"]
    preprocessing: Preprocessing
    params: RandomForestParams


class HistGradientBoostingModel(_Strict):
    name: Literal["hist_gradient_boosting"]
    preprocessing: Preprocessing
    params: HistGradientBoostingParams


class RidgeModel(_Strict):
    name: Literal["ridge"]
    preprocessing: Preprocessing
    params: RidgeParams


ModelParams = Annotated[
    LogisticRegressionModel | RandomForestModel | HistGradientBoostingModel | RidgeModel,
    Field(discriminator="name"),
]

METRICS = ALL_METRICS  # every task's metrics (gitml.tasks); Params checks the task's own


class EvaluateParams(_Strict):
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5  # binary: the label's cut-off
    metrics: list[Literal[METRICS]]  # type: ignore[valid-type]
    slices: list[str]
    min_slice_rows: Annotated[int, Field(ge=1)] = 30
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    max_prediction_rows: Annotated[int, Field(ge=1)] = 50_000


MetricName = Literal[METRICS]  # type: ignore[valid-type]


class RegressionLimit(_Strict):
    """How much worse than base a metric may get: absolute points, or a fraction of base."""

    absolute: Annotated[float, Field(ge=0)] | None = None
    relative: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one(self) -> RegressionLimit:
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of 'absolute' or 'relative'")
        return self

    def allowed(self, base: float) -> float:
        """How much worse than `base` a metric may get."""
        if self.absolute is not None:
            return self.absolute
        assert self.relative is not None  # the validator above: exactly one is set
        return self.relative * abs(base)


class SlicePolicy(_Strict):
    metrics: list[MetricName] = ["roc_auc"]
    max_regression: Annotated[float, Field(ge=0)] | None = None
    max_gap: Annotated[float, Field(ge=0)] | None = None


class ServingPolicy(_Strict):
    """Serving budgets on the head model. Size comes from `models/metadata.json`; prediction
    time is measured at review time (CPU time, median of repeats after a warm-up), never read
    from committed files, and fails only beyond the limit plus `timing_tolerance`."""

    max_model_bytes: Annotated[int, Field(ge=1)] | None = None
    max_predict_ms_per_1000_rows: Annotated[float, Field(gt=0)] | None = None
    timing_tolerance: Annotated[float, Field(ge=0, le=10)] = 0.25
    timing_repeats: Annotated[int, Field(ge=3, le=101)] = 9


class BootstrapParams(_Strict):
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 1000
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    seed: Annotated[int, Field(ge=0)] = 0


class SignificancePolicy(_Strict):
    """Metrics whose whole interval of Δ must not lie on the worse side of zero, unless the
    change is smaller than `min_effect` (absolute): significant but too small to matter."""

    metrics: list[MetricName] = []
    min_effect: Annotated[float, Field(ge=0)] = 0.0


class ReleasePolicy(_Strict):
    """How `gitml release`, `promote` and `reproduce` number, order and check versions."""

    first_version: Annotated[str, Field(pattern=r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")] = (
        "v1.0.0"
    )
    bump: Literal["major", "minor", "patch"] = "minor"
    allow_skip_stages: bool = False
    reproduce_tolerance: Annotated[float, Field(ge=0)] = 1e-6


class ForbidTopK(_Strict):
    """Input columns the head model may not rely on among its top `k` (reports/importance.json):
    a listed column fails the gate when it ranks <= k with its interval above zero."""

    columns: list[str] = []  # empty: no rule
    k: Annotated[int, Field(ge=1)] = 3


class ImportancePolicy(_Strict):
    forbid_top_k: ForbidTopK = ForbidTopK()


class PromotionParams(_Strict):
    """The promotion policy that `gitml gate` applies, and the release rules."""

    minimums: dict[MetricName, float] = {}
    max_regression: dict[MetricName, RegressionLimit] = {}
    ci_lower_bound: dict[MetricName, float] = {}
    slices: SlicePolicy = SlicePolicy()
    serving: ServingPolicy = ServingPolicy()
    no_significant_regression: SignificancePolicy = SignificancePolicy()
    importance: ImportancePolicy = ImportancePolicy()
    require_all_classes_predicted: bool = True
    allow_breaking_signature: bool = False
    bootstrap: BootstrapParams = BootstrapParams()
    release: ReleasePolicy = ReleasePolicy()


class CardParams(_Strict):
    """What the model card says that the data cannot: purpose, limits and owners."""

    title: str | None = None
    owners: list[str] = []
    intended_use: Annotated[str, Field(min_length=1)]
    out_of_scope: list[str] = []
    limitations: list[str] = []
    interval_resamples: Annotated[int, Field(ge=100, le=100_000)] = 1000


class ImportanceParams(_Strict):
    """Stage `importance`: permutation importance of every input column on the test rows
    (reports/importance.json), shown by the model card and the review. Seeded by `seed`."""

    repeats: Annotated[int, Field(ge=1, le=100)] = 5  # shuffles per column
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 200  # bootstrap of the interval
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    max_rows: Annotated[int, Field(ge=100)] = 50_000  # above: a seeded subsample of this size
    top_k: Annotated[int, Field(ge=1, le=100)] = 5  # columns the card and the report show


class PredictionLogParams(_Strict):
    """The optional log of served predictions: Parquet files, appended in row groups."""

    enabled: bool = False
    dir: Annotated[str, Field(min_length=1)] = "logs/predictions"
    flush_rows: Annotated[int, Field(ge=1)] = 1000
    flush_seconds: Annotated[float, Field(gt=0)] = 5.0
    max_buffer_rows: Annotated[int, Field(ge=1)] = 50_000
    rotate_rows: Annotated[int, Field(ge=1)] = 1_000_000
    rotate_bytes: Annotated[int, Field(ge=1)] = 128 * 1024 * 1024
    # while the log cannot write: degrade = stay ready and serve unlogged; unready = /readyz 503
    on_error: Literal["degrade", "unready"] = "degrade"
    stall_seconds: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _bounded(self) -> PredictionLogParams:
        if self.flush_rows > self.max_buffer_rows:
            raise ValueError(
                f"flush_rows ({self.flush_rows}) must not exceed max_buffer_rows "
                f"({self.max_buffer_rows})"
            )
        return self


class ServeParams(_Strict):
    """`gitml serve` and `gitml predict`: limits, input policies, micro-batching, the log."""

    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None  # None: evaluate.threshold
    max_records: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    unknown_category: Literal["reject", "accept"] = "reject"
    extra_fields: Literal["reject", "accept"] = "reject"
    batch_max_rows: Annotated[int, Field(ge=1)] = 2048
    batch_wait_ms: Annotated[float, Field(ge=0, le=1000)] = 0.0
    fast_path_max_rows: Annotated[int, Field(ge=0)] = 64
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # a shadow's answer (`gitml serve --shadow`) is waited for at most this long, and at
    # most shadow_max_pending requests wait for it: beyond, they are skipped (and counted)
    shadow_timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    shadow_max_pending: Annotated[int, Field(ge=1)] = 256
    prediction_log: PredictionLogParams = PredictionLogParams()


class MinEffect(_Strict):
    """The smallest shift worth an alarm, per column kind (significance alone is not enough)."""

    wasserstein: Annotated[float, Field(ge=0)] = 0.05
    jensen_shannon: Annotated[float, Field(ge=0, le=1)] = 0.03


class QualityLimits(_Strict):
    """Data-quality rates (of a batch's rows) above which `gitml monitor` alarms."""

    max_invalid_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    max_out_of_range_rate: Annotated[float, Field(ge=0, le=1)] = 0.001
    max_unseen_rate: Annotated[float, Field(ge=0, le=1)] = 0.001
    max_null_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.02


class PerformanceMonitoring(_Strict):
    """Labelled (late) and estimated performance: windows, confidence, resampling."""

    window: Annotated[str, Field(min_length=1)] = "1D"
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    min_labelled: Annotated[int, Field(ge=1)] = 100
    resamples: Annotated[int, Field(ge=100, le=100_000)] = 1000
    seed: Annotated[int, Field(ge=0)] = 0


class LabelColumns(_Strict):
    """How a labels file names the prediction it labels."""

    id_column: Annotated[str, Field(min_length=1)] = "request_id"
    record_column: Annotated[str, Field(min_length=1)] = "record"


class RetrainPolicy(_Strict):
    """How `gitml retrain` adds a labelled production batch to the training data."""

    policy: Literal["append", "window"] = "append"
    window_rows: Annotated[int, Field(ge=1)] | None = None
    branch_prefix: Annotated[str, Field(min_length=1)] = "retrain/"

    @model_validator(mode="after")
    def _window_sized(self) -> RetrainPolicy:
        if self.policy == "window" and self.window_rows is None:
            raise ValueError("retrain.policy 'window' needs retrain.window_rows")
        return self


class MonitorParams(_Strict):
    """`gitml monitor`: calibrated drift alarms, data quality, performance; `gitml retrain`."""

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    correction: Literal["holm", "bonferroni", "bh"] = "holm"
    min_effect: MinEffect = MinEffect()
    psi_bins: Annotated[int, Field(ge=2, le=100)] = 10
    quantiles: Annotated[int, Field(ge=10, le=100_000)] = 1000
    min_rows: Annotated[int, Field(ge=1)] = 200
    quality: QualityLimits = QualityLimits()
    performance: PerformanceMonitoring = PerformanceMonitoring()
    labels: LabelColumns = LabelColumns()
    current: str | None = None
    out: Annotated[str, Field(min_length=1)] = "reports/monitor"
    history: Annotated[str, Field(min_length=1)] = "reports/monitor/history.jsonl"
    retrain: RetrainPolicy = RetrainPolicy()


class Params(_Strict):
    """The whole of params.yaml."""

    seed: Annotated[int, Field(ge=0)]
    project: ProjectParams
    data: DataParams
    validate_: ValidateParams = Field(alias="validate")
    split: SplitParams
    model: ModelParams
    evaluate: EvaluateParams
    promotion: PromotionParams
    card: CardParams | None = None  # absent in revisions made before the model card
    importance: ImportanceParams = ImportanceParams()  # absent before importance existed
    serve: ServeParams = ServeParams()  # absent in revisions made before serving existed
    monitor: MonitorParams = MonitorParams()  # absent in revisions made before monitoring

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _slices_declared(self) -> Params:
        unknown = [c for c in self.evaluate.slices if c not in self.data.columns]
        if unknown:
            raise ValueError(f"evaluate.slices name undeclared columns: {unknown}")
        self._fits_task()
        return self

    def _fits_task(self) -> None:
        """The model and every metric named in evaluate and promotion belong to data.task."""
        task = self.data.task
        if self.model.name not in ESTIMATORS[task]:
            raise ValueError(
                f"model {self.model.name!r} does not fit data.task {task!r} "
                f"(allowed: {', '.join(ESTIMATORS[task])})"
            )
        weight = getattr(self.model.params, "class_weight", None)
        if task == "regression" and weight is not None:
            raise ValueError(f"model.params.class_weight ({weight!r}) applies to classifiers only")
        promotion = self.promotion
        named = {
            "evaluate.metrics": list(self.evaluate.metrics),
            "promotion.minimums": list(promotion.minimums),
            "promotion.max_regression": list(promotion.max_regression),
            "promotion.ci_lower_bound": list(promotion.ci_lower_bound),
            "promotion.no_significant_regression.metrics": list(
                promotion.no_significant_regression.metrics
            ),
            "promotion.slices.metrics": list(promotion.slices.metrics),
        }
        for key, metrics in named.items():
            foreign = [m for m in metrics if m not in TASK_METRICS[task]]
            if foreign:
                raise ValueError(
                    f"{key} names metrics of another task for data.task {task!r}: {foreign} "
                    f"(this task's: {', '.join(TASK_METRICS[task])})"
                )

    @property
    def serve_threshold(self) -> float:
        """The decision threshold for served labels: `serve.threshold`, else evaluate's."""
        return self.serve.threshold if self.serve.threshold is not None else self.evaluate.threshold

    def threshold_for(self, recorded: float | None) -> float:
        """The threshold a model is served at: `serve.threshold`, else the one its release
        was evaluated at (`recorded`, from its metrics.json), else evaluate's."""
        if self.serve.threshold is None and recorded is not None:
            return recorded
        return self.serve_threshold


_MODEL_TAGS = {
    "logistic_regression": LogisticRegressionModel,
    "random_forest": RandomForestModel,
    "hist_gradient_boosting": HistGradientBoostingModel,
    "ridge": RidgeModel,
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at the parent of `loc`, walking the Params model along the path."""
    node: Any = Params
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        if part in _MODEL_TAGS:
            node = _MODEL_TAGS[part]
            continue
        field = getattr(node, "model_fields", {}).get("validate_" if part == "validate" else part)
        if field is None:
            return []
        if part == "columns":  # dict[str, ColumnSpec]: the next part is a column name
            node = ColumnSpec
            parts = parts[1:]
        else:
            node = field.annotation
    return [("validate" if k == "validate_" else k) for k in getattr(node, "model_fields", {})]


_Model = TypeVar("_Model", bound=BaseModel)


def validate_model(
    model: type[_Model],
    raw: Any,
    *,
    source: str,
    what: str,
    hint: str | None = None,
    loc: tuple[Any, ...] = (),
) -> _Model:
    """`model.model_validate(raw)`, or one ConfigError listing every problem by key path
    (`loc` prefixes the paths: where `raw` sits in its file)."""
    try:
        return model.model_validate(raw)
    except PydanticValidationError as err:
        lines = [describe_error({**e, "loc": (*loc, *e["loc"])}, source) for e in err.errors()]
        raise ConfigError(f"invalid {what}:\n  " + "\n  ".join(lines), hint=hint) from err


def describe_error(err: Mapping[str, Any], source: str) -> str:
    """Turn one pydantic error into `source: key.path: what was wrong (got X)`."""
    raw = tuple(err["loc"])
    # A discriminated union adds its tag to the location; drop it so the path reads like YAML.
    loc = ".".join(str(p) for p in raw if p not in _MODEL_TAGS).replace("validate_", "validate")
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(raw)) or "none"
        return f"{source}: {loc}: unknown key (allowed here: {allowed})"
    if kind == "missing":
        return f"{source}: {loc}: required key is missing"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{source}: {loc or '(top level)'}: {err['msg']}{shown}"
