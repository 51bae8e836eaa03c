"""What every protocol's routes share: the deployment, the settings, the metrics, and the
one way records are checked and scored.

A protocol module (`routes_v1`, `routes_v2`, `routes_mlflow`) only turns its wire format
into JSON-like records (or refuses it), calls `ServeContext.check` and `ServeContext.infer`,
and formats the outputs (or the refusal) its own way. So a record refused over `/v1` is
refused over every protocol, with the same field-level problems.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Response

from gitml.config.schema import ServeParams
from gitml.errors import InputError
from gitml.model.explanation import Explanation
from gitml.serve.deployment import Deployment
from gitml.serve.errors import Refusal, error_response, problem
from gitml.serve.inputs import Columns
from gitml.serve.runtime import ModelRuntime
from gitml.serve.telemetry import ServeMetrics

_log = logging.getLogger(__name__)

SCORING_FAILED = "the model could not score these records; the server log has the details"


class ScoringFailed(Exception):
    """The model failed on a request for a reason of its own (not the client's input): the
    protocol answers 500 with `SCORING_FAILED`; the server lives on."""


@dataclass
class ServeContext:
    deployment: Deployment
    settings: ServeParams
    metrics: ServeMetrics
    log_dir: Path | None = None
    declared: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.declare_fields()

    def declare_fields(self) -> None:
        """The field names `/metrics` may show: the protocols' own and every served model's
        (again after a reload)."""
        self.declared = {
            "body",
            "records",
            "content-type",
            "content-encoding",
            "inputs",
            "outputs",
            "datatype",
            "shape",
            "parameters",
            "explain",
        }
        for runtime in self.deployment.all():
            self.declared.update(runtime.schema.names)
            self.declared.add(runtime.served.target)  # a non-finite regression value

    def field_label(self, name: Any) -> str:
        """A metric label for a problem's field: only names the server declares, so no
        client can grow `/metrics` by sending new field names."""
        return name if name in self.declared else "(undeclared)"

    def count_refusal(self, problems: list[dict[str, Any]]) -> None:
        """Count a refused request's problems in /metrics by field and rule."""
        for found in problems:
            self.metrics.rejected_records.labels(
                self.field_label(found["field"]), found["rule"]
            ).inc()

    def error_for(
        self, err: Refusal | InputError | ScoringFailed, request_id: str, *, input_status: int
    ) -> Response:
        """gitml's error body (`/v1`, V2) for what reading, checking or scoring a request
        raised: a Refusal with its own status, an InputError with `input_status` (422 over
        /v1, 400 over V2), both counted in /metrics; ScoringFailed with 500."""
        if isinstance(err, ScoringFailed):
            return error_response(500, str(err), [scoring_failed_problem()], request_id)
        if isinstance(err, Refusal):
            status, message, problems, headers = err.status, str(err), [err.problem], err.headers
        else:
            status, message, problems, headers = input_status, err.message, err.problems, None
        self.count_refusal(problems)
        return error_response(status, message, problems, request_id, headers=headers)

    def check(self, runtime: ModelRuntime, records: Any) -> Columns:
        """`records` (a list of JSON objects) checked against `runtime`'s signature with the
        configured policies; raises InputError (422 over /v1) naming record, field and rule."""
        settings = self.settings
        columns = runtime.schema.check_records(
            records,
            unknown_category=settings.unknown_category,
            extra_fields=settings.extra_fields,
        )
        for name, count in columns.unknown.items():
            self.metrics.unknown_categories.labels(name).inc(count)
        if columns.extra_fields:
            self.metrics.extra_fields.inc(columns.extra_fields)
        return columns

    async def infer(self, runtime: ModelRuntime, columns: Columns, request_id: str) -> np.ndarray:
        """`runtime`'s outputs for checked `columns` (and the shadow's, logged).

        Raises InputError for a record the model cannot score finitely, ScoringFailed for
        a failure of the model's own (logged here with its traceback)."""
        try:
            return await self.deployment.infer(runtime, columns, request_id)
        except InputError:
            raise
        except Exception as err:  # the model failed on this request; the server lives on
            _log.error("request %s: scoring failed", request_id, exc_info=err)
            raise ScoringFailed(SCORING_FAILED) from err


def scoring_failed_problem() -> dict[str, Any]:
    return problem("server", "scoring_failed", SCORING_FAILED)


EXPLAIN_INLINE_ROWS = 64  # up to this many rows explained on the event loop (microseconds)
EXPLAIN_UNAVAILABLE_RULE = "explain_unavailable"


async def explain_scored(runtime: ModelRuntime, columns: Columns, request_id: str) -> Explanation:
    """`runtime`'s explanation of checked `columns`: a Refusal (422, field `explain`) when the
    model has no explainer, InputError for a record the model cannot score or explain
    finitely, ScoringFailed for a failure of the model's own. Large requests are explained in
    a thread, off the event loop."""
    check = runtime.explainer
    if check.explainer is None:
        raise Refusal(
            422,
            "explain",
            EXPLAIN_UNAVAILABLE_RULE,
            f"this model cannot explain its predictions: {check.reason}",
        )
    try:
        if columns.n <= EXPLAIN_INLINE_ROWS:
            return runtime.explain(columns)
        return await asyncio.to_thread(runtime.explain, columns)
    except InputError:
        raise
    except Exception as err:
        _log.error("request %s: explaining failed", request_id, exc_info=err)
        raise ScoringFailed(SCORING_FAILED) from err
