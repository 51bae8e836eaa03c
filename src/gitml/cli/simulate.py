"""`gitml simulate`: production-like batches with known shifts (tests, docs, demos)."""

from __future__ import annotations

from gitml.cli import app  # noqa: F401
