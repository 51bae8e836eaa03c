"""The fast category encoder matches scikit-learn's, and the split is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from gitml.config.schema import SplitParams
from gitml.data.split import split_indices
from gitml.errors import DataError
from gitml.model.encoding import CategoryEncoder

CATS = [["No", "Yes"], ["DSL", "Fiber optic", "No"]]
FRAME = pd.DataFrame(
    {"a": ["Yes", "No", "Maybe", None, "Yes"], "b": ["No", "DSL", "Fiber optic", "DSL", ""]}
)


def test_onehot_matches_sklearn_including_unseen_and_missing() -> None:
    ours = CategoryEncoder(CATS).fit(FRAME).transform(FRAME)
    theirs = OneHotEncoder(categories=CATS, handle_unknown="ignore", sparse_output=False)
    expected = theirs.fit(FRAME.fillna("<missing>")).transform(FRAME.fillna("<missing>"))
    np.testing.assert_array_equal(ours, expected)
    names = CategoryEncoder(CATS).fit(FRAME).get_feature_names_out()
    assert list(names[:2]) == ["a=No", "a=Yes"]


def test_categorical_input_gives_the_same_matrix() -> None:
    as_category = FRAME.astype("category")
    enc = CategoryEncoder(CATS).fit(FRAME)
    np.testing.assert_array_equal(enc.transform(as_category), enc.transform(FRAME))


def test_ordinal_matches_sklearn_with_nan_for_unknown() -> None:
    ours = CategoryEncoder(CATS, output="ordinal").fit(FRAME).transform(FRAME)
    theirs = OrdinalEncoder(
        categories=CATS, handle_unknown="use_encoded_value", unknown_value=np.nan
    ).fit(FRAME.fillna("<missing>"))
    np.testing.assert_array_equal(ours, theirs.transform(FRAME.fillna("<missing>")))


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    labels = pa.chunked_array([["No"] * 700 + ["Yes"] * 300])
    params = SplitParams(test_size=0.2, seed=42, stratify=True)
    train, test = split_indices(labels, params)
    _, again_test = split_indices(labels, params)
    np.testing.assert_array_equal(test, again_test)
    assert len(test) == 200 and len(train) == 800
    assert not set(train) & set(test)
    assert (test >= 700).sum() == 60  # 20 % of each class
    _, other = split_indices(labels, SplitParams(test_size=0.2, seed=7, stratify=True))
    assert set(other) != set(test)


def test_split_refuses_an_empty_side() -> None:
    with pytest.raises(DataError, match="empty train or test set"):
        split_indices(pa.chunked_array([["No", "Yes"]]), SplitParams(test_size=0.1, seed=1))
