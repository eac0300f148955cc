"""Soundness of the Clopper-Pearson bounds: simulated coverage at the stated alpha."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_certify.bounds import clopper_pearson_bounds


@pytest.mark.parametrize("n_draws, alpha", [(100, 0.05), (1000, 0.2), (30, 0.1)])
def test_joint_failure_rate_at_most_alpha(n_draws, alpha):
    """Lower bounds of the true labels and upper bounds of the others hold jointly
    with probability >= 1 - alpha (Bonferroni over the labels)."""
    rng = np.random.default_rng(12345)
    n_trials, n_classes = 20_000, 6
    p = np.array([0.0, 0.02, 0.3, 0.5, 0.93, 1.0])
    is_true = np.array([False, False, True, False, True, True])
    counts = rng.binomial(n_draws, p, size=(n_trials, n_classes))
    lower, upper = clopper_pearson_bounds(counts, n_draws, alpha)
    fails = np.where(is_true, lower > p, upper < p).any(axis=1)
    margin = 4 * np.sqrt(alpha * (1 - alpha) / n_trials)
    assert fails.mean() <= alpha + margin
    # Not vacuous: each bound is used at level alpha / c, and is close to it.
    single = (lower[:, 3] > p[3]).mean()
    assert 0.2 * alpha / n_classes < single <= alpha / n_classes + margin


def test_bounds_tighten_with_draws():
    widths = []
    for n in (100, 1000, 10_000):
        lower, upper = clopper_pearson_bounds(np.array([[n // 2, n // 4]]), n, 0.001)
        widths.append(upper[0, 0] - lower[0, 0])
    assert widths[0] > widths[1] > widths[2] > 0
