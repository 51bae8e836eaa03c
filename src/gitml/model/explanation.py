"""What a local explanation is: its arrays, its output scales and baselines, and the common
base of the explainers (`gitml.model.explain`, `gitml.model.explain_trees`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

# what `value` and `baseline` are measured in, by name (signature, API, CLI)
OUTPUT_SCALES = {
    "log_odds": "log-odds of the positive class (the logistic function of it is the score)",
    "logit": "the class's logit (decision_function; the softmax over classes is the "
    "probability); logits are defined up to a shift common to all classes",
    "probability": "probability (of the positive class, or of each class)",
    "prediction": "the predicted value",
}
REFERENCE_TRAINING = "training_mean"  # recorded by train from the training split
REFERENCE_PROFILE = "profile_mean"  # an older model: its scalers' and training profile's means
REFERENCE_TREES = "tree_cover"  # each tree's root: cover-weighted mean over its training rows
REFERENCES = {
    REFERENCE_TRAINING: "the model's output at the training split's mean preprocessed row "
    "(recorded by train): for a linear model, the mean output over the training split",
    REFERENCE_PROFILE: "approximate: the model was trained before explanations were recorded, "
    "so the mean preprocessed row comes from its scalers' means and the training profile "
    "in metadata.json (imputed values left out)",
    REFERENCE_TREES: "the trees' expected output over the rows each tree was grown on "
    "(each root's cover-weighted mean)",
}


@dataclass(frozen=True)
class Explanation:
    """Explanations of `n` rows: `contributions[r, c, k]` of input `inputs[c]` to output `k`
    (`classes[k]` for multiclass, one output otherwise) of row `r`; `values[r, k]`;
    `baseline[k]`. `values - baseline == contributions.sum(axis=1)` up to rounding."""

    inputs: tuple[str, ...]
    classes: tuple[str, ...] | None
    baseline: np.ndarray
    values: np.ndarray
    contributions: np.ndarray


class Explainer(ABC):
    """Common to both kinds: what the explanation is (method, output scale, reference)."""

    method: str
    output: str
    reference: str
    inputs: tuple[str, ...]
    classes: tuple[str, ...] | None
    baseline: np.ndarray

    @abstractmethod
    def explain_matrix(self, matrix: np.ndarray) -> Explanation:
        """The explanation of the rows of a preprocessed matrix (what the estimator sees)."""

    def describe(self) -> dict[str, Any]:
        """The signature's `explanation`: what `?explain=true` and `--explain` return."""
        baseline: Any = (
            dict(zip(self.classes, self.baseline.tolist(), strict=True))
            if self.classes is not None
            else float(self.baseline[0])
        )
        return {
            "method": self.method,
            "output": self.output,
            "output_meaning": OUTPUT_SCALES[self.output],
            "baseline": baseline,
            "reference": self.reference,
            "reference_meaning": REFERENCES[self.reference],
            "per_class": self.classes is not None,
            "contributions": "one per input column; they sum to value - baseline",
        }
