"""Deterministic train/test split."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from gitml.config.schema import SplitParams


def split_frame(
    frame: pd.DataFrame, split: SplitParams, *, target: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (train, test); stratified on `target` when configured; index preserved."""
    train, test = train_test_split(
        frame,
        test_size=split.test_size,
        random_state=split.seed,
        stratify=frame[target] if split.stratify else None,
    )
    return train.sort_index(), test.sort_index()
