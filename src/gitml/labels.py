"""How values read in reports and the model card: a missing class or group is "(missing)"."""

from __future__ import annotations

import math
from typing import Any

MISSING_LABEL = "(missing)"
# What a missing value arrives as: `evaluate.metrics.compute_slices` keys its group
# "<missing>"; older slice files and CSV round trips give "nan", "None" or an empty string.
_MISSING_KEYS = frozenset({"", "<missing>", "nan", "NaN", "None", "<NA>"})


def label_category(value: Any) -> str:
    """A class or slice group as people read it; a missing one becomes "(missing)"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_LABEL
    text = str(value)
    return MISSING_LABEL if text.strip() in _MISSING_KEYS else text
