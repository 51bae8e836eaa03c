"""Path attribution for tree ensembles (Saabas, the "tree interpreter"): exactly additive, fast.

Every node of every tree has an expected output: the cover-weighted mean of the leaf values
below it, over the training rows the tree was grown on (a random forest's `tree_.value`;
a HistGradientBoosting tree's leaf values averaged up by their sample counts). A row walks
from each root to a leaf; each split on its way credits the input column it splits on with
the change in expected output from the node to the child the row goes to. Along one path
these changes add up to `leaf - root`, so over the ensemble the contributions sum to
`value - baseline` exactly (up to rounding), with `baseline` the ensemble's output at the
roots: its expected output over its training rows.

Known weakness: unlike SHAP values, path attribution depends on the order of the splits
(an input split near the leaves is credited with more than one split near the root for the
same effect), and it is not consistent in Lundberg's sense. It is well defined, additive and
costs one pass down each tree, the same as predicting.

Cost: at load, one table of cumulative contributions per leaf (leaves x inputs x outputs,
float64; for a 200-tree forest of ~700 leaves on 19 inputs about 20 MB per output); per row,
a walk of every tree at once (depth steps of vectorised numpy over rows x trees) and a sum of
one table row per tree. The walk reproduces scikit-learn's own (float32 thresholds for forests;
missing values and native categorical bitsets, unknown categories as missing, for
HistGradientBoosting): `tests/unit/test_explain.py` checks the sum against the model's own
raw output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gitml.errors import ModelError
from gitml.model.explanation import REFERENCE_TREES, Explainer, Explanation
from gitml.tasks import Task

_TEMP_FLOATS = 1 << 21  # rows are explained in slices whose gathered table stays ~16 MB


class TreeExplainer(Explainer):
    """Path attribution over trees stacked into flat arrays (node ids global to the ensemble).

    Leaves point to themselves, so every row walks `depth` steps without a branch.
    """

    method = "path_attribution"
    reference = REFERENCE_TREES

    def __init__(
        self,
        nodes: dict[str, np.ndarray],
        roots: np.ndarray,
        depth: int,
        table: np.ndarray,
        leaf_row: np.ndarray,
        leaf_value: np.ndarray,
        offset: np.ndarray,
        baseline: np.ndarray,
        inputs: tuple[str, ...],
        *,
        output: str,
        classes: tuple[str, ...] | None,
        float32: bool,
        known: np.ndarray | None = None,
    ) -> None:
        self.nodes, self.roots, self.depth = nodes, roots, depth
        self.table, self.leaf_row, self.leaf_value = table, leaf_row, leaf_value
        self.offset, self.baseline = offset, baseline
        self.inputs, self.classes, self.output = inputs, classes, output
        self.float32, self.known = float32, known
        self.has_categorical = bool(nodes["categorical"].any())

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """The leaf (global node id) each row reaches in each tree: (rows, trees)."""
        n = self.nodes
        x = np.asarray(matrix, dtype=np.float32 if self.float32 else np.float64)
        rows = np.arange(len(x))[:, None]
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        for _ in range(self.depth):
            feature = n["feature"][node]
            value = x[rows, feature]
            nan = np.isnan(value)
            with np.errstate(invalid="ignore"):
                left = value <= n["threshold"][node]
            left = np.where(nan, n["missing_left"][node], left)
            if self.has_categorical:
                self._categorical(node, feature, value, nan, left)
            node = np.where(left, n["left"][node], n["right"][node])
        return node

    def _categorical(
        self, node: np.ndarray, feature: np.ndarray, value: np.ndarray, nan: np.ndarray, left: Any
    ) -> None:
        """HistGradientBoosting's categorical split, as its predictor decides it: a negative
        or unknown category goes where missing values go; a known one left when in the
        split's bitset."""
        n, known = self.nodes, self.known
        cat = n["categorical"][node]
        if not cat.any():
            return
        nd, v, f = node[cat], value[cat], feature[cat]
        missing = nan[cat] | (v < 0)
        code = np.where(missing, 0, v).astype(np.int64) & 0xFF  # the predictor's uint8 cast
        word, bit = code >> 5, (code & 31).astype(np.uint32)
        in_left = (n["bitset"][nd, word] >> bit) & 1
        assert known is not None
        is_known = (known[f, word] >> bit) & 1
        goes = np.where(in_left == 1, True, np.where(is_known == 1, False, n["missing_left"][nd]))
        left[cat] = np.where(missing, n["missing_left"][nd], goes)

    def explain_matrix(self, matrix: np.ndarray) -> Explanation:
        matrix = np.asarray(matrix, dtype=np.float64)
        leaves = self.leaves(matrix)
        rows = self.leaf_row[leaves]  # (rows, trees) into the table
        per = max(1, _TEMP_FLOATS // max(1, rows.shape[1] * self.table[0].size))
        contributions = np.empty((len(matrix), *self.table.shape[1:]))
        for start in range(0, len(matrix), per):
            contributions[start : start + per] = self.table[rows[start : start + per]].sum(axis=1)
        values = self.offset + self.leaf_value[rows].sum(axis=1)
        return Explanation(self.inputs, self.classes, self.baseline, values, contributions)


def build_tree_explainer(
    estimator: Any,
    groups: np.ndarray,
    inputs: tuple[str, ...],
    *,
    task: Task,
    sign: float,
    classes: tuple[str, ...] | None,
    positive_class: str | None,
) -> TreeExplainer | None:
    """The explainer of a fitted RandomForest or HistGradientBoosting estimator (None for
    another kind). `sign` -1 negates a binary model's output (positive class classes_[0])."""
    kind = type(estimator).__name__
    if kind.startswith("RandomForest"):
        return _forest(estimator, groups, inputs, task=task, classes=classes, pos=positive_class)
    if kind.startswith("HistGradientBoosting"):
        return _boosting(estimator, groups, inputs, task=task, sign=sign, classes=classes)
    return None


def _forest(
    forest: Any,
    groups: np.ndarray,
    inputs: tuple[str, ...],
    *,
    task: Task,
    classes: tuple[str, ...] | None,
    pos: str | None,
) -> TreeExplainer:
    """A random forest averages its trees: probability (classifiers) or prediction."""
    trees = [t.tree_ for t in forest.estimators_]
    parts = []
    for tree in trees:
        value = np.asarray(tree.value[:, 0, :], dtype=np.float64)
        if task != "regression":  # class fractions, as predict_proba normalises them
            value = value / value.sum(axis=1, keepdims=True)
            if task == "binary":
                value = value[:, [str(c) for c in forest.classes_].index(str(pos))][:, None]
        leaf = tree.children_left == -1
        parts.append(
            {
                "feature": np.where(leaf, 0, tree.feature).astype(np.intp),
                "threshold": np.asarray(tree.threshold, dtype=np.float64),
                "left": tree.children_left.astype(np.intp),
                "right": tree.children_right.astype(np.intp),
                "missing_left": _missing_left(tree),
                "value": value / len(trees),  # the forest's mean, tree by tree
            }
        )
    output = "prediction" if task == "regression" else "probability"
    return _assemble(
        parts, groups, inputs, offset=np.zeros(parts[0]["value"].shape[1]),
        output=output, classes=classes, float32=True,
    )  # fmt: skip


def _missing_left(tree: Any) -> np.ndarray:
    try:
        return np.asarray(tree.missing_go_to_left, dtype=bool)
    except AttributeError:  # scikit-learn without missing-value support in trees
        return np.ones(tree.node_count, dtype=bool)


def _boosting(
    model: Any,
    groups: np.ndarray,
    inputs: tuple[str, ...],
    *,
    task: Task,
    sign: float,
    classes: tuple[str, ...] | None,
) -> TreeExplainer:
    """HistGradientBoosting adds its trees' leaf values to a baseline: the raw prediction
    (log-odds, per-class logits, or the prediction with the squared-error loss)."""
    if task == "regression" and getattr(model, "loss", "squared_error") not in (
        "squared_error",
        "absolute_error",
        "quantile",
    ):
        raise ModelError(f"cannot explain HistGradientBoosting with loss {model.loss!r}")
    per_iter = model.n_trees_per_iteration_
    known, f_idx = model._bin_mapper.make_known_categories_bitsets()
    parts = []
    for iteration in model._predictors:
        for k, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            value = np.zeros((len(nodes), per_iter))
            value[:, k] = _cover_mean(nodes) * sign
            bitsets = np.zeros((len(nodes), 8), dtype=np.uint32)
            cat = nodes["is_categorical"].astype(bool) & ~leaf
            if cat.any():
                bitsets[cat] = predictor.raw_left_cat_bitsets[nodes["bitset_idx"][cat]]
            parts.append(
                {
                    "feature": np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp),
                    "threshold": np.asarray(nodes["num_threshold"], dtype=np.float64),
                    "left": np.where(leaf, -1, nodes["left"].astype(np.intp)),
                    "right": np.where(leaf, -1, nodes["right"].astype(np.intp)),
                    "missing_left": nodes["missing_go_to_left"].astype(bool),
                    "categorical": cat,
                    "bitset": bitsets,
                    "value": value,
                }
            )
    offset = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1) * sign
    output = {"binary": "log_odds", "multiclass": "logit", "regression": "prediction"}[task]
    # the known categories per input feature (f_idx maps a feature to its row)
    known_rows = np.zeros((len(f_idx), 8), dtype=np.uint32)
    if len(known):
        known_rows[:] = known[np.minimum(f_idx, len(known) - 1)]
    return _assemble(
        parts, groups, inputs, offset=offset, output=output, classes=classes,
        float32=False, known=known_rows,
    )  # fmt: skip


def _cover_mean(nodes: np.ndarray) -> np.ndarray:
    """Each node's expected leaf value: leaves' own, averaged up by sample counts (children
    come after their parent in a predictor's node array)."""
    value = np.asarray(nodes["value"], dtype=np.float64).copy()
    count = nodes["count"].astype(np.float64)
    for i in range(len(nodes) - 1, -1, -1):
        if not nodes["is_leaf"][i]:
            lo, hi = int(nodes["left"][i]), int(nodes["right"][i])
            value[i] = (count[lo] * value[lo] + count[hi] * value[hi]) / (count[lo] + count[hi])
    return value


def _assemble(
    parts: list[dict[str, np.ndarray]],
    groups: np.ndarray,
    inputs: tuple[str, ...],
    *,
    offset: np.ndarray,
    output: str,
    classes: tuple[str, ...] | None,
    float32: bool,
    known: np.ndarray | None = None,
) -> TreeExplainer:
    """Stack the trees into global arrays and precompute each leaf's cumulative contributions."""
    sizes = [len(p["feature"]) for p in parts]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    total = int(sum(sizes))
    outputs = parts[0]["value"].shape[1]
    nodes: dict[str, np.ndarray] = {}
    for key in ("feature", "threshold", "missing_left", "value"):
        nodes[key] = np.concatenate([p[key] for p in parts])
    nodes["categorical"] = np.concatenate(
        [p.get("categorical", np.zeros(len(p["feature"]), dtype=bool)) for p in parts]
    )
    nodes["bitset"] = (
        np.concatenate([p["bitset"] for p in parts])
        if "bitset" in parts[0]
        else np.zeros((total, 1), dtype=np.uint32)
    )
    own = np.arange(total, dtype=np.intp)
    for key in ("left", "right"):
        local = np.concatenate([p[key] for p in parts])
        base = np.repeat(starts, sizes)
        nodes[key] = np.where(local < 0, own, local + base)  # a leaf points to itself
    is_leaf = nodes["left"] == own
    value = nodes["value"]
    # cumulative contributions, level by level from the roots (parents before children)
    cum = np.zeros((total, len(inputs), outputs))
    frontier = starts
    depth = 0
    while True:
        inner = frontier[~is_leaf[frontier]]
        if not len(inner):
            break
        depth += 1
        group = groups[nodes["feature"][inner]]
        children = []
        for side in ("left", "right"):
            child = nodes[side][inner]
            cum[child] = cum[inner]
            cum[child, group] += value[child] - value[inner]
            children.append(child)
        frontier = np.concatenate(children)
    leaves = np.flatnonzero(is_leaf)
    leaf_row = np.zeros(total, dtype=np.intp)
    leaf_row[leaves] = np.arange(len(leaves))
    baseline = offset + value[starts].sum(axis=0)
    return TreeExplainer(
        nodes, starts, depth, cum[leaves], leaf_row, value[leaves], offset, baseline, inputs,
        output=output, classes=classes, float32=float32, known=known,
    )  # fmt: skip
