"""Counts -> bounds -> certified sizes: one certificate applied to a table of counts.

A sampled certificate (Gaussian smoothing, bagging) first bounds each label's
probability from its count with one-sided Clopper-Pearson bounds (at the level the
spec's ``bound_alpha`` gives; per input from its own draws and share of alpha after a
sequential run); a deterministic one (DPA, Finite Aggregation) reads the counts
themselves. :meth:`sklearn_certify.results.CertificationResult.from_counts` is its
public face.
"""

from __future__ import annotations

import numpy as np

from .._utils._validation import check_per_input_draws
from ._clopper_pearson import clopper_pearson_bounds
from ._gaussian_sequential import staged_bounds
from ._spec import CertificateSpec

__all__ = ["certify_counts"]


def certify_counts(
    spec: CertificateSpec,
    counts: np.ndarray,
    Y: np.ndarray,
    radii: np.ndarray,
    *,
    k,
    method,
    n_draws=None,
    alpha=None,
    n_draws_used=None,
    alpha_share=None,
    params: dict,
):
    """Certified sizes of ``counts`` by ``spec``'s certificate at ``radii``.

    Returns
    -------
    sizes, lower, upper, n_draws_used, alpha_share
        ``lower`` and ``upper`` are None for a deterministic certificate;
        ``n_draws_used`` and ``alpha_share`` come back checked (None where not given).
    """
    certificate = spec.name
    names = spec.params
    missing = [name for name in names if name not in params]
    unknown = sorted(set(params) - set(names) - set(spec.optional_params))
    if missing or unknown:
        raise TypeError(
            f"certificate {certificate!r} needs parameters {list(names)}; "
            f"missing {missing}, unexpected {unknown}."
        )
    spec.check_method(method, params)
    lower = upper = None
    if spec.sampled:
        if n_draws is None or alpha is None:
            raise TypeError(f"certificate {certificate!r} needs n_draws and alpha.")
        if alpha_share is not None and n_draws_used is None:
            raise TypeError("alpha_share needs n_draws_used, the draws behind each row of counts.")
        if n_draws_used is None:
            lower, upper = clopper_pearson_bounds(counts, n_draws, spec.bound_alpha(alpha, method))
        else:
            n_draws_used, alpha_share = check_per_input_draws(
                n_draws_used, alpha_share, len(counts), n_draws
            )
            lower, upper = staged_bounds(
                counts,
                n_draws_used,
                spec.bound_alpha(alpha, method),
                np.ones(len(counts)) if alpha_share is None else alpha_share,
            )
        sizes = spec.function(lower, upper, Y, k=k, radius=radii, method=method, **params)
    else:
        spec.check_no_alpha(alpha)
        if alpha_share is not None:
            raise TypeError(
                f"{certificate} certificates are deterministic and take no alpha_share."
            )
        sizes = spec.function(counts, Y, k=k, radius=radii, method=method, **params)
    return sizes, lower, upper, n_draws_used, alpha_share
