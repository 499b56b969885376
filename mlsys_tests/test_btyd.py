"""The BG/NBD and Gamma-Gamma baseline: parameter recovery, published values, and the forecasts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.special import hyp2f1
from scipy.stats import beta as beta_distribution
from scipy.stats import rankdata

from mlsys_assets.features.btyd import (
    BgNbdParams,
    BtydModel,
    GammaGammaParams,
    fit_bgnbd,
    fit_gamma_gamma,
)

TRUE_BGNBD = BgNbdParams(r=0.5, alpha=20.0, a=0.8, b=2.5)  # one purchase per ~40 days while alive
TRUE_GAMMA_GAMMA = GammaGammaParams(p=6.0, q=4.0, v=15.0)
# Fader, Hardie and Lee (2005), CDNOW, time unit weeks.
CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
HOLDOUT_DAYS = 90.0


def simulate_bgnbd(
    n: int, params: BgNbdParams, *, seed: int, holdout_days: float = 0.0, day_granular: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T, purchases in the holdout) for n customers first seen 30 to 365 days ago.

    While alive a customer buys as a Poisson process; after each repeat purchase they die with
    probability p, so the number of repeat purchases they will ever make is geometric on 1, 2, ...
    Given the number of Poisson arrivals up to T + holdout, the arrival times are uniform.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(params.r, 1.0 / params.alpha, n)
    dropout = rng.beta(params.a, params.b, n)
    age = rng.uniform(30.0, 365.0, n)
    if day_granular:
        age = np.floor(age)
    end = age + holdout_days
    purchases_before_death = rng.geometric(dropout)
    arrivals = rng.poisson(rate * end)
    customer = np.repeat(np.arange(n), arrivals)
    times = rng.uniform(0.0, 1.0, customer.size) * end[customer]
    order = np.lexsort((times, customer))
    customer, times = customer[order], times[order]
    rank_within_customer = np.arange(customer.size) - (np.cumsum(arrivals) - arrivals)[customer]
    made = rank_within_customer < purchases_before_death[customer]
    customer, times = customer[made], times[made]
    if day_granular:
        times = np.floor(times)
    observed = times <= age[customer]
    x = np.bincount(customer[observed], minlength=n).astype(float)
    t_x = np.zeros(n)
    np.maximum.at(t_x, customer[observed], times[observed])
    holdout = np.bincount(customer[~observed], minlength=n).astype(float)
    return x, t_x, age, holdout


def simulate_average_spend(x: np.ndarray, params: GammaGammaParams, *, seed: int) -> np.ndarray:
    """m_x: spend per transaction ~ Gamma(p, rate nu), nu ~ Gamma(q, rate v); NaN when x = 0."""
    rng = np.random.default_rng(seed)
    nu = rng.gamma(params.q, 1.0 / params.v, len(x))
    repeat = x > 0
    m_x = np.full(len(x), np.nan)
    m_x[repeat] = rng.gamma(params.p * x[repeat], 1.0 / nu[repeat]) / x[repeat]
    return m_x


def expected_purchases_by_quadrature(params: BgNbdParams, t: float, x: float, t_x: float, T: float) -> float:
    """E[Y(t) | data] derived independently of eq. 10, by integrating over the dropout probability.

    Given alive, lambda and p: E[Y(t)] = (1 - exp(-lambda p t)) / p. Given alive and the data,
    lambda ~ Gamma(r+x, alpha+T) and p ~ Beta(a, b+x), independently.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b

    def integrand(p: float) -> float:
        buys = -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T)))
        return beta_distribution.pdf(p, a, b + x) * buys / p

    if_alive = quad(integrand, 0.0, 1.0, limit=500, epsabs=0.0, epsrel=1e-11, points=[1e-6, 1e-4, 1e-2])[0]
    return float(params.p_alive(x, t_x, T)) * if_alive


def area_under_roc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = rankdata(score)
    positives = label.sum()
    negatives = len(label) - positives
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@pytest.fixture(scope="module")
def simulated_customers() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return simulate_bgnbd(20_000, TRUE_BGNBD, seed=7, holdout_days=HOLDOUT_DAYS)


@pytest.fixture(scope="module")
def fitted_bgnbd(simulated_customers) -> BgNbdParams:
    x, t_x, T, _ = simulated_customers
    return fit_bgnbd(x, t_x, T)


# --- BG/NBD fit ---------------------------------------------------------------------------------


def test_bgnbd_recovers_simulated_parameters(simulated_customers, fitted_bgnbd):
    x, t_x, T, _ = simulated_customers

    # Over 30 seeds the errors had sd 1.5% (r), 2% (alpha), 5% (a) and 6% (b).
    assert fitted_bgnbd.r == pytest.approx(TRUE_BGNBD.r, rel=0.10)
    assert fitted_bgnbd.alpha == pytest.approx(TRUE_BGNBD.alpha, rel=0.10)
    assert fitted_bgnbd.a == pytest.approx(TRUE_BGNBD.a, rel=0.25)
    assert fitted_bgnbd.b == pytest.approx(TRUE_BGNBD.b, rel=0.25)
    assert fitted_bgnbd.log_likelihood(x, t_x, T) >= TRUE_BGNBD.log_likelihood(x, t_x, T) - 1e-6


def test_bgnbd_fit_is_a_local_maximum(simulated_customers, fitted_bgnbd):
    x, t_x, T, _ = simulated_customers
    at_fit = fitted_bgnbd.log_likelihood(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.99, 1.01):
            nudged = BgNbdParams(**{**fitted_bgnbd.__dict__, name: getattr(fitted_bgnbd, name) * factor})
            assert nudged.log_likelihood(x, t_x, T) < at_fit


def test_weights_on_deduplicated_rows_match_the_expanded_rows():
    x, t_x, T, _ = simulate_bgnbd(5_000, TRUE_BGNBD, seed=3, day_granular=True)
    counts = pd.DataFrame({"x": x, "t_x": t_x, "T": T}).value_counts().reset_index(name="count")
    assert len(counts) < len(x)  # day-granular data has duplicates to merge
    distinct = [counts[c].to_numpy(dtype=float) for c in ("x", "t_x", "T")]
    weights = counts["count"].to_numpy(dtype=float)

    assert TRUE_BGNBD.log_likelihood(*distinct, weights=weights) == pytest.approx(
        TRUE_BGNBD.log_likelihood(x, t_x, T), rel=1e-12
    )
    on_distinct = fit_bgnbd(*distinct, weights=weights)
    on_expanded = fit_bgnbd(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(on_distinct, name) == pytest.approx(getattr(on_expanded, name), rel=1e-6)


def test_subsample_fit_is_deterministic_and_close(simulated_customers, fitted_bgnbd):
    x, t_x, T, _ = simulated_customers
    first = fit_bgnbd(x, t_x, T, max_customers=8_000, seed=1)
    assert fit_bgnbd(x, t_x, T, max_customers=8_000, seed=1) == first
    assert fit_bgnbd(x, t_x, T, max_customers=8_000, seed=2) != first
    rate = lambda params: params.r / params.alpha  # noqa: E731
    assert rate(first) == pytest.approx(rate(fitted_bgnbd), rel=0.05)


def test_invalid_rfm_rows_are_rejected():
    with pytest.raises(ValueError, match="t_x <= T"):
        fit_bgnbd([1, 2], [5.0, 40.0], [10.0, 30.0])
    with pytest.raises(ValueError, match="non-negative integers"):
        CDNOW.p_alive([-1], [0.0], [10.0])
    with pytest.raises(ValueError, match="horizon"):
        CDNOW.expected_purchases(-1.0, [1], [1.0], [2.0])


# --- BG/NBD predictions -------------------------------------------------------------------------


def test_conditional_expectation_matches_the_published_cdnow_value():
    # Fader and Hardie's note on computing E[Y(t) | x, t_x, T]: 1.226 for this CDNOW customer.
    assert float(CDNOW.expected_purchases(39.0, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


def test_conditional_expectation_matches_the_literal_eq_10():
    r, alpha, a, b = CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b
    x = np.array([0.0, 1.0, 2.0, 5.0, 10.0, 10.0])
    t_x = np.array([0.0, 5.0, 30.43, 20.0, 35.0, 50.0])
    T = np.array([10.0, 30.0, 38.86, 40.0, 40.0, 52.0])
    t = 39.0
    z = t / (alpha + T + t)
    hypergeometric = ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    dead_odds = np.where(x > 0, a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x), 0.0)
    literal = (a + b + x - 1) / (a - 1) * (1 - hypergeometric) / (1 + dead_odds)

    np.testing.assert_allclose(CDNOW.expected_purchases(t, x, t_x, T), literal, rtol=1e-10)


@pytest.mark.parametrize(
    ("params", "t", "x", "t_x", "T"),
    [
        pytest.param(TRUE_BGNBD, 90.0, 3, 100.0, 200.0, id="typical"),
        pytest.param(TRUE_BGNBD, 5000.0, 150, 299.0, 300.0, id="heavy-buyer-long-horizon"),
        pytest.param(TRUE_BGNBD, 0.5, 0, 0.0, 1000.0, id="short-horizon"),
        pytest.param(BgNbdParams(0.1, 1.0, 5.0, 1.0), 5000.0, 0, 0.0, 0.0, id="a-above-r-plus-x-plus-1"),
        pytest.param(BgNbdParams(0.5, 30.0, 1.0, 2.0), 90.0, 4, 50.0, 100.0, id="a-equals-1"),
        pytest.param(BgNbdParams(0.5, 30.0, 0.6, 0.4), 90.0, 0, 0.0, 100.0, id="a-plus-b-equals-1"),
        pytest.param(BgNbdParams(2.0, 100.0, 3.0, 10.0), 5000.0, 150, 10.0, 100.0, id="r-minus-a-integer"),
    ],
)
def test_conditional_expectation_matches_direct_integration(params, t, x, t_x, T):
    expected = expected_purchases_by_quadrature(params, t, x, t_x, T)
    assert float(params.expected_purchases(t, x, t_x, T)) == pytest.approx(expected, rel=1e-6)


def test_p_alive_is_one_without_repeat_purchases_and_falls_with_silence():
    assert np.all(CDNOW.p_alive([0, 0], [0.0, 0.0], [1.0, 50.0]) == 1.0)
    silence = CDNOW.p_alive(np.full(4, 3), np.full(4, 10.0), np.array([10.0, 20.0, 40.0, 80.0]))
    assert np.all(np.diff(silence) < 0) and silence[0] == pytest.approx(1 / (1 + CDNOW.a / (CDNOW.b + 2)))


def test_p_no_purchase_is_a_probability_that_falls_with_the_horizon():
    x = np.array([0, 1, 3, 10, 3])
    t_x = np.array([0.0, 5.0, 20.0, 35.0, 2.0])
    T = np.array([10.0, 30.0, 40.0, 40.0, 300.0])
    horizons = np.array([0.0, 1.0, 7.0, 30.0, 90.0, 365.0, 1e5])
    p_no = np.stack([TRUE_BGNBD.p_no_purchase(t, x, t_x, T) for t in horizons])

    assert np.all((p_no >= 0.0) & (p_no <= 1.0))
    np.testing.assert_array_equal(p_no[0], 1.0)
    assert np.all(np.diff(p_no, axis=0) < 0)
    # However long the horizon, only the live customers can buy.
    p_alive = TRUE_BGNBD.p_alive(x, t_x, T)
    assert np.all(p_no >= 1.0 - p_alive - 1e-12)
    np.testing.assert_allclose(TRUE_BGNBD.p_no_purchase(1e15, x, t_x, T), 1.0 - p_alive, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "t_x", "T"),
    [
        pytest.param(1, 60.0, 200.0, id="long-silence"),
        pytest.param(0, 0.0, 300.0, id="never-returned"),
    ],
)
def test_p_no_purchase_is_dead_or_no_arrival_while_alive(x, t_x, T):
    r, alpha, t = TRUE_BGNBD.r, TRUE_BGNBD.alpha, HOLDOUT_DAYS
    p_alive = float(TRUE_BGNBD.p_alive(x, t_x, T))
    # Alive at T: lambda ~ Gamma(r+x, alpha+T), and E[exp(-lambda t)] has a closed form.
    no_arrival_if_alive = ((alpha + T) / (alpha + T + t)) ** (r + x)
    p_no = float(TRUE_BGNBD.p_no_purchase(t, x, t_x, T))

    assert p_no == pytest.approx(1.0 - p_alive + p_alive * no_arrival_if_alive, rel=1e-12)
    # The live are far from certain to buy within the horizon: 1 - P(alive) is well below.
    assert p_no > 1.0 - p_alive + 0.1


def test_expected_purchases_bound_the_probability_of_buying():
    x, t_x, T, _ = simulate_bgnbd(2_000, TRUE_BGNBD, seed=11)
    for t in (1.0, 30.0, 365.0):
        expected = TRUE_BGNBD.expected_purchases(t, x, t_x, T)
        # E[Y] >= P(Y >= 1) for a count, with equality to first order in t.
        assert np.all(expected >= 1.0 - TRUE_BGNBD.p_no_purchase(t, x, t_x, T) - 1e-12)
    tiny = 1e-3
    np.testing.assert_allclose(
        TRUE_BGNBD.expected_purchases(tiny, x, t_x, T), 1.0 - TRUE_BGNBD.p_no_purchase(tiny, x, t_x, T), rtol=1e-3
    )


def test_p_no_purchase_is_calibrated_and_ranks_non_buyers_on_a_holdout(simulated_customers, fitted_bgnbd):
    x, t_x, T, holdout = simulated_customers
    no_purchase = holdout == 0
    for params in (TRUE_BGNBD, fitted_bgnbd):
        p_no = params.p_no_purchase(HOLDOUT_DAYS, x, t_x, T)
        dead = 1.0 - params.p_alive(x, t_x, T)

        assert p_no.mean() == pytest.approx(no_purchase.mean(), abs=0.015)
        assert no_purchase.mean() - dead.mean() > 0.2  # 1 - P(alive) is no estimate of not buying
        assert area_under_roc(p_no, no_purchase) > area_under_roc(dead, no_purchase) + 0.1

    # Calibrated within each decile of the prediction too, not only on average.
    p_no = TRUE_BGNBD.p_no_purchase(HOLDOUT_DAYS, x, t_x, T)
    decile = np.minimum((rankdata(p_no, method="ordinal") - 1) * 10 // len(p_no), 9)
    for d in range(10):
        in_decile = decile == d
        assert p_no[in_decile].mean() == pytest.approx(no_purchase[in_decile].mean(), abs=0.04)


def test_expected_purchases_are_calibrated_on_a_holdout(simulated_customers, fitted_bgnbd):
    x, t_x, T, holdout = simulated_customers
    expected = fitted_bgnbd.expected_purchases(HOLDOUT_DAYS, x, t_x, T)
    assert expected.sum() == pytest.approx(holdout.sum(), rel=0.05)
    for repeat_purchases in (0, 1, 2):
        group = x == repeat_purchases
        assert expected[group].mean() == pytest.approx(holdout[group].mean(), rel=0.15)


# --- Gamma-Gamma --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_spend() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(5).poisson(2.5, 20_000).astype(float)
    return x, simulate_average_spend(x, TRUE_GAMMA_GAMMA, seed=5)


def test_gamma_gamma_recovers_simulated_parameters(simulated_spend):
    x, m_x = simulated_spend
    fitted = fit_gamma_gamma(x, m_x)

    # p and v trade off against each other (the spend level is what the data pin down): over 30
    # seeds their errors had sd 6% and 8%, q's 2%, the population mean's 0.5%.
    assert fitted.p == pytest.approx(TRUE_GAMMA_GAMMA.p, rel=0.20)
    assert fitted.q == pytest.approx(TRUE_GAMMA_GAMMA.q, rel=0.10)
    assert fitted.v == pytest.approx(TRUE_GAMMA_GAMMA.v, rel=0.25)
    assert fitted.log_likelihood(x, m_x) >= TRUE_GAMMA_GAMMA.log_likelihood(x, m_x) - 1e-6
    assert fitted.population_mean_spend == pytest.approx(TRUE_GAMMA_GAMMA.population_mean_spend, rel=0.03)


def test_gamma_gamma_weights_match_repeated_rows(simulated_spend):
    x, m_x = simulated_spend[0][:3_000], simulated_spend[1][:3_000]
    counts = np.random.default_rng(0).integers(1, 4, len(x))
    weighted = fit_gamma_gamma(x, m_x, weights=counts)
    repeated = fit_gamma_gamma(np.repeat(x, counts), np.repeat(m_x, counts))
    for name in ("p", "q", "v"):
        assert getattr(weighted, name) == pytest.approx(getattr(repeated, name), rel=1e-5)


def test_conditional_spend_shrinks_towards_the_population_mean():
    params = TRUE_GAMMA_GAMMA
    population = params.population_mean_spend
    spend = params.conditional_expected_average_spend([0, 1, 1, 1000], [np.nan, 100.0, 1.0, 100.0])

    assert spend[0] == pytest.approx(population)
    # One purchase: a credibility mix, mostly the population mean.
    weight_on_own = params.p / (params.p + params.q - 1.0)
    assert spend[1] == pytest.approx(weight_on_own * 100.0 + (1 - weight_on_own) * population)
    assert population < spend[1] < 100.0 and 1.0 < spend[2] < population
    assert spend[3] == pytest.approx(100.0, rel=0.01)


def test_spend_without_a_finite_mean_is_refused():
    with pytest.raises(ValueError, match="no finite mean"):
        GammaGammaParams(p=2.0, q=0.9, v=10.0).conditional_expected_average_spend([1], [10.0])


def test_repeat_buyers_whose_repeat_spend_is_zero_do_not_inform_or_break_the_spend_fit():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 6, 400)
    m_x = rng.gamma(4.0, 10.0, 400)
    with_free_orders = fit_gamma_gamma(np.r_[x, [1, 3]], np.r_[m_x, [0.0, 0.0]])
    assert with_free_orders == fit_gamma_gamma(x, m_x)
    # Their forecast is still defined: shrunk from the population mean toward their $0.
    spend = with_free_orders.conditional_expected_average_spend([1, 3], [0.0, 0.0])
    assert np.all(np.isfinite(spend)) and 0 < spend[1] < spend[0] < with_free_orders.population_mean_spend
    with pytest.raises(ValueError, match="at least one repeat purchase"):
        fit_gamma_gamma([1, 2], [0.0, 0.0])


# --- the combined model -------------------------------------------------------------------------


def test_model_fits_predicts_and_round_trips_through_json(simulated_customers):
    x, t_x, T, _ = simulated_customers
    m_x = simulate_average_spend(x, TRUE_GAMMA_GAMMA, seed=9)
    model = BtydModel.fit(x, t_x, T, m_x)
    customers = pd.Index([f"c{i}" for i in range(len(x))], name="customer_id")

    forecast = model.predict(HOLDOUT_DAYS, pd.Series(x, index=customers), t_x, T, m_x)

    assert list(forecast.columns) == ["expected_purchases", "expected_spend", "p_alive", "p_no_purchase"]
    assert forecast.index.equals(customers)
    assert forecast.notna().all().all()
    np.testing.assert_allclose(forecast["expected_spend"], model.expected_spend(HOLDOUT_DAYS, x, t_x, T, m_x))
    np.testing.assert_allclose(
        forecast["expected_spend"],
        forecast["expected_purchases"] * model.gamma_gamma.conditional_expected_average_spend(x, m_x),
    )
    np.testing.assert_allclose(forecast["p_no_purchase"], model.bgnbd.p_no_purchase(HOLDOUT_DAYS, x, t_x, T))

    restored = BtydModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored == model
    pd.testing.assert_frame_equal(restored.predict(HOLDOUT_DAYS, x, t_x, T, m_x), forecast.reset_index(drop=True))
