"""`gitml retrain`: add a labelled production batch to the training data and retrain on a branch."""

from __future__ import annotations

from gitml.cli import app  # noqa: F401
