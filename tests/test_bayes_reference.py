"""The near-Bayes reference of bench/bayes_reference.py: its cell posterior is the exact
posterior of the generative model, and its top-1 label is a shown label on clean images."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.datasets import load_digits

from sklearn_certify.datasets import make_multidigit

from ._helpers import repo_module


@pytest.fixture(scope="module")
def reference_module():
    return repo_module("bench/bayes_reference.py")


def test_cell_posterior_is_the_exact_posterior(reference_module):
    rng = np.random.default_rng(0)
    digits = rng.uniform(0, 1, size=(3, 64))
    labels = np.array([4, 4, 7])
    sigma, empty_prob = 0.8, 0.3
    reference = reference_module.NearBayesTop1(digits, labels, sigma, empty_prob)
    cells = np.vstack([digits[0] + sigma * rng.standard_normal(64), rng.uniform(0, 1, 64)])
    got = reference.cell_posteriors(cells)

    templates = np.vstack([np.zeros(64), digits])
    priors = np.array([empty_prob] + [(1 - empty_prob) / 3] * 3)
    covariance = sigma**2 * np.eye(64)
    for row, cell in zip(got, cells):
        likelihood = np.array([multivariate_normal.pdf(cell, t, covariance) for t in templates])
        joint = priors * likelihood
        posterior = joint / joint.sum()
        expected = np.zeros(10)
        expected[4] = posterior[1] + posterior[2]
        expected[7] = posterior[3]
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-300)


def test_top1_is_a_shown_label_without_noise(reference_module):
    _, X_test, _, Y_test, sources, _ = make_multidigit(
        200, 40, image_shape=True, return_sources=True, random_state=0
    )
    digits = load_digits()
    pool = np.unique(sources[sources >= 0])
    reference = reference_module.NearBayesTop1(
        digits.data[pool] / 16.0, digits.target[pool], sigma=0.1
    )
    top1 = reference.top1(X_test.astype(np.float64))
    assert Y_test[np.arange(len(top1)), top1].all()
