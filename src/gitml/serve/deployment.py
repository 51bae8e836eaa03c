"""What one server serves: its model versions in the order given, and an optional shadow.

`gitml serve --ref NAME#prod --ref NAME#staging` serves both versions; a bare model name
(`/v2/models/{name}`, and `/v1/predict` and `/invocations`, which name no model) routes to
the first one given. `--shadow REF` scores every request with the candidate as well, after
the primary has answered (`Deployment.infer`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from gitml.errors import ConfigError
from gitml.serve.inputs import Columns
from gitml.serve.runtime import ModelRuntime

_log = logging.getLogger(__name__)


class Deployment:
    """The runtimes one server holds, and how a request finds its runtime."""

    def __init__(self, runtimes: Sequence[ModelRuntime], *, shadow: ModelRuntime | None = None):
        if not runtimes:
            raise ConfigError("nothing to serve: give at least one model")
        keys = [r.key for r in runtimes]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise ConfigError(f"the same model version is given twice: {twice}")
        self.runtimes: list[ModelRuntime] = list(runtimes)
        self.shadow = shadow

    @property
    def default(self) -> ModelRuntime:
        """The first model given: what `/v1/predict` and `/invocations` score with."""
        return self.runtimes[0]

    @property
    def names(self) -> list[str]:
        """Model names, in the order given, each once."""
        return list(dict.fromkeys(r.key.name for r in self.runtimes))

    def find(self, name: str, version: str | None = None) -> ModelRuntime | None:
        """The runtime of `name` at `version`; without a version, the first given of `name`."""
        for runtime in self.runtimes:
            if runtime.key.name == name and (version is None or runtime.key.version == version):
                return runtime
        return None

    def all(self) -> list[ModelRuntime]:
        """Every runtime, the shadow last."""
        return [*self.runtimes, *([self.shadow] if self.shadow is not None else [])]

    @property
    def ready(self) -> bool:
        """Every primary runtime scores (a shadow never makes the server unready)."""
        return all(r.ready for r in self.runtimes)

    async def infer(self, runtime: ModelRuntime, columns: Columns, request_id: str) -> np.ndarray:
        """`runtime`'s outputs for `columns`; the shadow, if any, scores them too, without
        delaying or failing this answer."""
        return await runtime.score(columns, request_id)
