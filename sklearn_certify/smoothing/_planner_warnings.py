"""The planner's warning for :meth:`SmoothedMultiLabelClassifier.certify`: a radius that
no input can be certified at with the call's ``n_draws`` and ``alpha``."""

from __future__ import annotations

import warnings

from sklearn.utils.validation import check_is_fitted

from .._utils._validation import check_radius
from ..certificates._gaussian import GAUSSIAN
from ..certificates._gaussian_planner import draws_for_radius, unreachable_radii

__all__ = ["warn_unreachable"]


def warn_unreachable(clf, radius, method, alpha, k, n_draws: int, share: float = 1.0) -> None:
    """Warn when a requested radius is beyond what n_draws and alpha can certify for the
    fitted smoothed classifier ``clf`` (``method``, ``alpha``, ``k``: the call's options,
    None for the parameter; ``share``: the part of alpha the last stage of a sequential
    run gets). Called by ``certify`` itself: the warning points at its caller."""
    check_is_fitted(clf)
    method = clf.method if method is None else method
    alpha = clf.alpha if alpha is None else alpha
    k = clf.k if k is None else k
    radii, _ = check_radius(radius)  # an invalid radius is refused before any warning
    try:
        level = share * GAUSSIAN.bound_alpha(alpha, method)
        mask, reach = unreachable_radii(
            radii, n_draws, level, clf.sigma, clf.n_classes_, k=k, k_prime=clf.k_prime
        )
    except (TypeError, ValueError):
        return  # invalid options: certify reports them
    beyond = radii[mask]
    if beyond.size:
        try:
            needed = draws_for_radius(
                float(beyond.min()), level, clf.sigma, clf.n_classes_, k=k, k_prime=clf.k_prime
            )
            hint = (
                f"Certifying {float(beyond.min()):.4g} needs n_draws >= {needed} "
                "even when every draw agrees"
            )
        except ValueError:
            hint = f"No practical n_draws certifies {float(beyond.min()):.4g}"
        warnings.warn(
            f"radius {beyond.tolist()} lies at or beyond {reach:.4g}, the largest "
            f"radius any input can be certified at with n_draws={n_draws} and "
            f"alpha={alpha} (sigma={clf.sigma}, k={k}, k_prime={clf.k_prime}): "
            f"nothing beyond the trivial bound is certified there. {hint} (see "
            "sklearn_certify.bounds.draws_for_radius).",
            UserWarning,
            stacklevel=3,
        )
