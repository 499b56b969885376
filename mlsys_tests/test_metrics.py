"""Ranking metrics: ties in a forecast are averaged over, never broken for or against it."""

import itertools

import numpy as np
import pytest

from mlsys_assets.ml.metrics import normalized_gini, top_share_captured


def _expected_over_tie_orders(metric, actual, predicted):
    """Brute force: the metric under every order of each tie group, with ties broken by position."""
    groups = [np.flatnonzero(predicted == value) for value in np.unique(predicted)]
    values = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        rank = np.empty(len(actual))
        for group, order in zip(groups, orders):
            # Within a group, earlier in `order` ranks higher: a tiny offset breaks the tie that way.
            rank[list(order)] = predicted[list(order)] + np.linspace(1e-9, 0, len(order), endpoint=False)
        values.append(metric(actual, rank))
    return float(np.mean(values))


@pytest.mark.parametrize("metric", [normalized_gini, lambda a, p: top_share_captured(a, p, 0.3)])
def test_ties_count_at_their_expected_value_over_random_orders(metric):
    actual = np.array([0.0, 5.0, 0.0, 12.0, 3.0, 0.0, 7.0])
    predicted = np.array([0.0, 0.0, 0.0, 4.0, 1.0, 1.0, 1.0])
    assert metric(actual, predicted) == pytest.approx(_expected_over_tie_orders(metric, actual, predicted))


def test_a_constant_forecast_scores_as_chance_and_a_perfect_one_as_one():
    actual = np.random.default_rng(1).gamma(0.5, 40.0, 500)
    assert normalized_gini(actual, np.zeros(500)) == pytest.approx(0.0, abs=1e-12)
    assert top_share_captured(actual, np.zeros(500), 0.1) == pytest.approx(0.1)
    assert normalized_gini(actual, actual) == pytest.approx(1.0)


def test_a_mostly_zero_forecast_is_not_penalised_for_its_ties():
    # The naive forecast (spend of the last window) is 0 for most customers. Breaking its ties against
    # it (lowest actual first, the old rule) made "beats naive" far easier than it is.
    rng = np.random.default_rng(5)
    actual = rng.gamma(0.4, 50.0, 2000) * (rng.random(2000) < 0.4)
    naive = np.where(rng.random(2000) < 0.25, actual + rng.normal(0, 5, 2000), 0.0)
    against = np.lexsort((actual, -naive))  # the old tie rule
    cumulative = np.cumsum(actual[against]) / actual.sum()
    perfect = np.cumsum(np.sort(actual)[::-1]) / actual.sum()
    old = (cumulative.sum() / 2000 - 2001 / 4000) / (perfect.sum() / 2000 - 2001 / 4000)
    assert normalized_gini(actual, naive) > old + 0.1
