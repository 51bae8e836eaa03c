"""`gitml monitor`: drift, data quality and performance of production data."""

from __future__ import annotations

from gitml.cli import app  # noqa: F401
