"""Sequential certification of :class:`~sklearn_certify.SmoothedMultiLabelClassifier`:
``certify(..., sequential=True)``.

The estimator's draws in stages (:func:`stage_sampler`), fed to the torch-free stopping
rule of :mod:`sklearn_certify.certificates._gaussian_sequential`. The checks of a
``certify`` call are the mixin's
(:meth:`~sklearn_certify._base.CertifiedClassifierMixin._checked_certify_args`), with
alpha's level checked at the smallest share a stage gets.
"""

from __future__ import annotations

import torch

from .._utils._validation import check_int, check_radius
from ..certificates._gaussian import GAUSSIAN
from ..certificates._gaussian_sequential import sequential_gaussian_certify, stage_schedule
from ..results import CertificationResult
from ._runners import sampling_options
from ._sampling import draw_seed

__all__ = ["certify_sequential", "stage_sampler"]


def certify_sequential(
    clf, X, Y, radius, max_draws, *, k, label, method, alpha
) -> CertificationResult:
    """``clf.certify(X, Y, radius, sequential=True, ...)`` (see its docstring)."""
    clf._check_fitted_params()
    Y, k, spec = clf._checked_certify_args(Y, k, dict(method=method, alpha=alpha))
    k = int(k)
    if max_draws is not None:
        max_draws = check_int(max_draws, "max_draws", low=clf.n_draws)
    radii, _ = check_radius(radius)
    X = clf._check_input(X, reset=False)
    clf._check_n_inputs(X, Y)
    method, alpha = spec["method"], spec["alpha"]
    # before any sampling: the smallest stage share must still give valid bounds
    clf._check_alpha_level(spec, share=stage_schedule(clf.n_draws, max_draws)[1].min())
    outcome = sequential_gaussian_certify(
        stage_sampler(clf, X),
        Y,
        radii,
        k=k,
        k_prime=clf.k_prime,
        sigma=float(clf.sigma),
        alpha=GAUSSIAN.bound_alpha(alpha, method),
        method=method,
        n_draws=clf.n_draws,
        max_draws=max_draws,
        mean_budget=None if max_draws is None else clf.n_draws,
    )
    return CertificationResult(
        outcome.sizes,
        radii,
        k,
        Y.sum(axis=1),
        Y=Y,
        certificate=clf._certificate,
        method=method,
        counts=outcome.counts,
        n_draws=max_draws or clf.n_draws,
        alpha=alpha,
        lower=outcome.lower,
        upper=outcome.upper,
        params={"k_prime": clf.k_prime, "sigma": float(clf.sigma)},
        label=label,
        n_draws_used=outcome.n_draws_used,
        alpha_share=outcome.alpha_share,
    )


def stage_sampler(clf, X):
    """``sample(rows, start, stop)``: counts of draws ``[start, stop)`` of the inputs
    ``X[rows]``, all from one seed drawn from ``random_state`` (so the first m draws
    of an input are those of a fixed ``n_draws=m`` run). X is already checked."""
    seed = draw_seed(clf.random_state)
    devices = clf._checked_devices()
    options = sampling_options(clf)

    def sample(rows, start, stop):
        subset = X[torch.from_numpy(rows)] if torch.is_tensor(X) else X[rows]
        return clf._sample(
            subset, seed, devices, options=options, n_draws=int(stop - start), first_draw=int(start)
        )

    return sample
