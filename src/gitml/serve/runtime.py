"""One served model version at run time: its verified pipeline, threshold, fast path,
micro-batcher and prediction log.

Every protocol (`/v1`, Open Inference Protocol V2, MLflow's `/invocations`) scores through
`ModelRuntime.score`: the same checked `Columns`, the same batcher, the same outputs. A
runtime is built before the server starts (`build_runtime`: the fast path is compiled and
checked there) and started inside the app's lifespan (`start`: the batcher binds to the
event loop, the log opens).

A shadow (`role="shadow"`) never scores on the event loop: `Deployment` calls `score_batch`
from a thread of its own, after the primary's answer has been sent, and its rows go to the
`shadow/` subdirectory of the prediction log (so `gitml monitor` reads primary traffic unless
pointed there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gitml.config.schema import ServeParams
from gitml.model.explanation import Explanation
from gitml.serve.batcher import Job, MicroBatcher, score_together
from gitml.serve.bundle import ServedModel
from gitml.serve.explanations import ExplainerCheck, explain_columns, explainer_of
from gitml.serve.fastpath import FastPathCheck, prepare_fast_path
from gitml.serve.inputs import Columns, InputSchema
from gitml.serve.outputs import describe_output, output_columns, output_fields
from gitml.serve.predlog import LogEntry, PredictionLog
from gitml.serve.telemetry import ServeMetrics

Role = Literal["primary", "shadow"]
SHADOW_LOG_DIR = "shadow"  # under serve.prediction_log.dir: the shadow's rows

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelKey:
    """How a runtime is addressed: the model's name and version (`/v2/models/{name}/versions/
    {version}`)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


class ModelRuntime:
    """A served model version, ready to score checked columns (see the module docstring)."""

    def __init__(
        self,
        served: ServedModel,
        settings: ServeParams,
        *,
        threshold: float,
        metrics: ServeMetrics | None = None,
        ref: str | None = None,
        role: Role = "primary",
    ) -> None:
        self.served = served
        self.settings = settings
        self.threshold = threshold
        self.metrics = metrics or ServeMetrics()  # create_app gives the app's own
        self.ref = ref  # the --ref it came from (NAME#STAGE, NAME@vX.Y.Z), None: a model file
        self.role: Role = role
        self.key = ModelKey(served.name, served.version)
        self.log: PredictionLog | None = None
        task = served.task

        def pipeline_score(columns: Columns) -> np.ndarray:
            return served.predict(self.schema.to_frame(columns))

        if settings.fast_path_max_rows > 0:
            check = prepare_fast_path(
                served.pipeline,
                served.schema,
                served.positive_class if task == "binary" else None,
                pipeline_score,
                task=task,
                target=served.target,
            )
        else:
            check = FastPathCheck(None, "off: serve.fast_path_max_rows is 0")
        self.fast_path = check
        fast = check.score
        self.fast_limit = settings.fast_path_max_rows if fast is not None else 0
        _log.info(
            "%s: fast path %s",
            self.key,
            check.reason if fast is None else f"{check.reason}; used up to {self.fast_limit} rows",
        )
        limit = self.fast_limit
        # explanations read the matrix the fast path scores (checked at start-up above); the
        # explainer is built up front, so the first `?explain=true` costs what the others do.
        # A shadow answers no client: it explains nothing.
        self._matrix = check.matrix
        self.explainer = (
            explainer_of(served)
            if role == "primary"
            else ExplainerCheck(None, "a shadow model explains nothing")
        )

        def score(columns: Columns) -> np.ndarray:
            if self.role == "primary":  # every call, failed ones too
                self.metrics.batch_rows.observe(columns.n)
            if fast is not None and columns.n <= limit:
                return fast(columns)
            return pipeline_score(columns)

        self._score = score
        self.batcher = MicroBatcher(
            score,
            max_rows=settings.batch_max_rows,
            wait_ms=settings.batch_wait_ms,
            after=self._after,
            on_split=lambda: self.metrics.batch_splits.inc(),
        )

    # -- identity -------------------------------------------------------------------------

    @property
    def schema(self) -> InputSchema:
        return self.served.schema

    @property
    def ready(self) -> bool:
        """Started and scoring (the batcher runs)."""
        return self.batcher.running

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/model` answers for this version."""
        task = self.served.task
        return self.served.describe() | {
            "output": describe_output(self.served, self.threshold),
            "threshold": self.threshold if task == "binary" else None,
            "fast_path_max_rows": self.fast_limit,
            "fast_path": self.fast_path.reason,
            "explanation": self.explainer.describe(),
        }

    # -- life -----------------------------------------------------------------------------

    def start(self, log_dir: Path | None) -> None:
        """Bind the batcher to the running loop and open the prediction log (None: off); a
        shadow logs to its own subdirectory."""
        if log_dir is not None and self.log is None:
            cfg = self.settings.prediction_log
            self.log = PredictionLog(
                log_dir / SHADOW_LOG_DIR if self.role == "shadow" else log_dir,
                self.schema,
                model_name=self.served.name,
                model_version=self.served.version,
                outputs=output_fields(self.served),
                flush_rows=cfg.flush_rows,
                flush_seconds=cfg.flush_seconds,
                max_buffer_rows=cfg.max_buffer_rows,
                rotate_rows=cfg.rotate_rows,
                rotate_bytes=cfg.rotate_bytes,
                stall_seconds=cfg.stall_seconds,
            )
        self.batcher.start()

    def stop_scoring(self) -> None:
        """Score what is queued; later submissions are refused."""
        self.batcher.stop()

    def close_log(self, timeout: float | None) -> None:
        if self.log is not None:
            self.log.close(timeout=timeout)

    # -- scoring --------------------------------------------------------------------------

    async def score(self, columns: Columns, request_id: str) -> np.ndarray:
        """The model's outputs for checked `columns` (`gitml.serve.outputs` reads them).

        Raises InputError for a record the model cannot score finitely (the request's own
        fault), anything else for a failure of the model; the other requests of its
        micro-batch are scored alone and unaffected either way."""
        return await self.batcher.submit(columns, request_id)

    def explain(self, columns: Columns) -> Explanation:
        """The explanation of checked `columns`; InputError for a record the model cannot
        score or explain finitely. Only called when `explainer.explainer` is set."""
        explainer = self.explainer.explainer
        assert explainer is not None
        return explain_columns(explainer, self._matrix, self.served, columns)

    def score_batch(
        self, requests: list[tuple[str, Columns, float]]
    ) -> list[np.ndarray | Exception]:
        """Score several requests (request id, checked columns, time received) in one call, in
        the calling thread, and log them: how a shadow scores, off the event loop, a batch of
        whatever queued while it waited (its batcher is never used). When the batch fails,
        each request is scored alone: a result is its scores or its own failure."""
        results = score_together(self._score, [columns for _, columns, _ in requests])
        scored = [
            (r, res)
            for r, res in zip(requests, results, strict=True)
            if not isinstance(res, Exception)
        ]
        if scored:
            parts = [res for _, res in scored]
            self._record(
                [r for r, _ in scored], parts[0] if len(parts) == 1 else np.concatenate(parts)
            )
        return results

    def _after(self, jobs: list[Job], scores: np.ndarray) -> None:
        self._record([(job.request_id, job.columns, job.received) for job in jobs], scores)

    def _record(self, requests: list[tuple[str, Columns, float]], scores: np.ndarray) -> None:
        """Count scored rows (a primary's) and log them, one entry per request."""
        metrics = self.metrics
        if self.role == "primary":
            metrics.rows.inc(len(scores))
            if metrics.scores is not None and self.served.task == "binary":
                for value in scores.tolist():
                    metrics.scores.observe(value)
        log = self.log
        if log is not None:
            start = 0
            for request_id, columns, received in requests:
                part = scores[start : start + columns.n]
                start += columns.n
                log.append(
                    LogEntry(
                        request_id,
                        columns,
                        output_columns(self.served, part, self.threshold),
                        received,
                    )
                )  # never blocks: a full buffer drops the rows and counts them
