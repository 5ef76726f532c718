"""What a model's raw predictions become: score and label, for each kind of output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.scoring import contained_predictions, feature_columns, predictions_to_scores
from rdv.config import ConfigError, ModelConfig
from tests.unit.test_features_transform import SPEC


def test_probabilities_give_the_positive_class_and_a_thresholded_label():
    scores = predictions_to_scores(np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]), "probability", threshold=0.5)
    assert scores["score"].tolist() == [0.1, 0.7, 0.5]
    assert scores["label"].tolist() == [0, 1, 1]


def test_labels_are_their_own_score_and_regressions_have_no_label():
    labels = predictions_to_scores(pd.Series([1, 0]), "label", threshold=0.5)
    assert (labels["score"].tolist(), labels["label"].tolist()) == ([1.0, 0.0], [1, 0])
    values = predictions_to_scores(np.array([12.5, -3.0]), "regression", threshold=0.5)
    assert values["score"].tolist() == [12.5, -3.0]
    assert values["label"].isna().all()


def test_feature_columns_default_to_every_canonical_feature_and_reject_unknown_ones():
    everything = feature_columns(ModelConfig(name="m", uri="models:/m@champion"), SPEC, "conf")
    assert everything[:2] == ["log_amount", "amount_ratio"] and len(everything) == 8
    with pytest.raises(
        ConfigError,
        match=r"conf/models/m.yaml: features: colour not in the feature spec "
        r"conf/features.yaml, whose features are log_amount, amount_ratio",
    ):
        feature_columns(ModelConfig(name="m", uri="models:/m@champion", features=("colour",)), SPEC, "conf")


class Flaky:
    """A model's predict that raises on negative amounts and returns NaN for zero."""

    def predict(self, features: pd.DataFrame):
        if (features["amount"] < 0).any():
            raise ValueError("negative amount")
        return np.where(features["amount"] == 0, np.nan, features["amount"] / 100)


def test_a_failing_model_fails_only_the_rows_it_fails_on_and_says_why():
    scores = contained_predictions(Flaky(), pd.DataFrame({"amount": [50.0, -1.0, 0.0, 80.0]}), "regression", 0.5)
    assert scores["score"].tolist()[::3] == [0.5, 0.8]
    assert scores["score"].iloc[1:3].isna().all()
    assert scores["error"].tolist() == [None, "raised ValueError: negative amount", "not_finite: nan", None]


def test_a_model_returning_the_wrong_number_of_rows_is_scored_row_by_row():
    class Short:
        def predict(self, features):
            return np.full(max(len(features) - 1, 1), 0.25)

    scores = contained_predictions(Short(), pd.DataFrame({"x": [1, 2, 3]}), "probability", 0.5)
    assert scores["score"].tolist() == [0.25, 0.25, 0.25] and scores["error"].isna().all()
