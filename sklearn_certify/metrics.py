"""Certified precision, recall and f1, and scorers for model selection.

For a certified intersection size ``e`` (at least ``e`` of the ``|L|`` true labels stay
in the predicted top-k under the attack), the papers define

    certified precision = e / k,   recall = e / |L|,   f1 = 2 e / (|L| + k),

averaged over the inputs that have at least one true label.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._utils._validation import check_int, check_label_matrix
from .certificates import certificate_spec

__all__ = [
    "certified_precision_score",
    "certified_recall_score",
    "certified_f1_score",
    "certified_scorer",
]

METRICS = ("precision", "recall", "f1")


def _per_input(metric: str, sizes: np.ndarray, n_true: np.ndarray, k: int) -> np.ndarray:
    """Per-input metric of shape sizes.shape; sizes (n, ...) and n_true (n,)."""
    n_true = n_true.reshape((-1,) + (1,) * (sizes.ndim - 1)).astype(np.float64)
    if metric == "precision":
        return sizes / k
    if metric == "recall":
        with np.errstate(invalid="ignore", divide="ignore"):
            return sizes / n_true
    return 2.0 * sizes / (n_true + k)


def mean_certified_metric(metric: str, sizes, n_true, k: int) -> np.ndarray | float:
    """Mean of a certified metric over inputs with at least one true label.

    ``sizes`` is (n_inputs,) or (n_inputs, n_radii); the result is a float or an array
    of shape (n_radii,). It is NaN when no input has a true label.
    """
    sizes = np.asarray(sizes)
    n_true = np.asarray(n_true)
    if sizes.ndim not in (1, 2) or sizes.shape[0] != n_true.shape[0]:
        raise ValueError(
            f"sizes must have shape (n_inputs,) or (n_inputs, n_radii) with n_inputs = "
            f"{n_true.shape[0]}, got {sizes.shape}."
        )
    keep = n_true > 0
    if not keep.any():
        out = np.full(sizes.shape[1:], np.nan)
    else:
        out = _per_input(metric, sizes[keep], n_true[keep], k).mean(axis=0)
    return float(out) if np.ndim(out) == 0 else out


def _score(metric, Y_true, sizes, k):
    Y_true = check_label_matrix(Y_true, "Y_true")
    k = check_int(k, "k", low=1, high=max(Y_true.shape[1], 1))
    n_true = Y_true.sum(axis=1)
    sizes = np.asarray(sizes)
    if sizes.ndim not in (1, 2) or sizes.shape[0] != n_true.shape[0]:
        raise ValueError(
            f"sizes must have shape (n_inputs,) or (n_inputs, n_radii) with n_inputs = "
            f"{n_true.shape[0]}, got {sizes.shape}."
        )
    if (
        sizes.dtype == bool
        or not np.issubdtype(sizes.dtype, np.number)
        or not np.all(np.isfinite(sizes) & (sizes == np.round(sizes)))
    ):
        raise ValueError("sizes must hold whole numbers (certified intersection sizes).")
    cap = np.minimum(k, n_true).reshape((-1,) + (1,) * (sizes.ndim - 1))
    if np.any(sizes < 0) or np.any(sizes > cap):
        raise ValueError(
            "sizes must lie between 0 and min(k, |L|) for each input: a certified "
            "intersection size cannot exceed the number of true labels or k."
        )
    return mean_certified_metric(metric, sizes, n_true, k)


def certified_precision_score(Y_true, sizes, k: int):
    """Mean certified top-k precision ``e / k``.

    Parameters
    ----------
    Y_true : array-like of {0, 1}, shape (n_inputs, n_classes)
        The true labels; only the number per input matters.
    sizes : array-like of int, shape (n_inputs,) or (n_inputs, n_radii)
        Certified intersection sizes.
    k : int
        Number of labels the certified classifier predicts.

    Returns
    -------
    float or ndarray of shape (n_radii,)
        Mean over inputs with at least one true label.

    Examples
    --------
    >>> certified_precision_score([[1, 1, 0], [0, 0, 1]], [2, 0], k=2)
    0.5
    """
    return _score("precision", Y_true, sizes, k)


def certified_recall_score(Y_true, sizes, k: int):
    """Mean certified top-k recall ``e / |L|``; see :func:`certified_precision_score`.

    Examples
    --------
    >>> certified_recall_score([[1, 1, 0], [0, 0, 1]], [1, 1], k=2)
    0.75
    """
    return _score("recall", Y_true, sizes, k)


def certified_f1_score(Y_true, sizes, k: int):
    """Mean certified top-k f1 ``2 e / (|L| + k)``; see :func:`certified_precision_score`.

    Examples
    --------
    >>> certified_f1_score([[1, 1, 0], [0, 0, 1]], [2, 1], k=2)
    0.8333333333333333
    """
    return _score("f1", Y_true, sizes, k)


def _counts_poisoned_examples(estimator) -> bool:
    """Whether ``estimator`` certifies T, a count of poisoned examples (the ensembles):
    asked of the estimator's certificate (its ``_certificate``, a registry name)."""
    name = getattr(estimator, "_certificate", None)
    return name is not None and certificate_spec(name).poisoning


class CertifiedScorer:
    """Callable ``(estimator, X, Y) -> float`` made by :func:`certified_scorer`."""

    def __init__(self, metric: str, radius: float, certify_options: dict):
        self.metric = metric
        self.radius = radius
        self.certify_options = certify_options

    def __call__(self, estimator, X, Y, sample_weight=None) -> float:
        if sample_weight is not None:
            raise ValueError("certified scorers do not support sample_weight.")
        if not hasattr(estimator, "certify"):
            raise TypeError(
                f"{type(estimator).__name__} has no certify method. A Pipeline cannot be "
                "certified as a whole: put the preprocessing inside the certified "
                "estimator instead, e.g. SmoothedMultiLabelClassifier("
                "make_pipeline(StandardScaler(), base)), so that it is covered by the "
                "certificate."
            )
        if _counts_poisoned_examples(estimator) and self.radius != round(self.radius):
            raise ValueError(
                f"certified_scorer radius={self.radius!r} is not a whole number, but "
                f"{type(estimator).__name__} certifies T, a number of poisoned training "
                "examples: give the scorer an integer radius (an l2 radius such as 0.5 is "
                "for SmoothedMultiLabelClassifier)."
            )
        result = estimator.certify(X, Y, self.radius, **self.certify_options)
        return float(getattr(result, self.metric)()[0])

    def __repr__(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.certify_options.items())
        return f"certified_scorer({self.metric!r}, radius={self.radius!r}{options})"


def certified_scorer(metric: str = "f1", radius: float = 0.0, **certify_options) -> CertifiedScorer:
    """A scorer for GridSearchCV, cross_validate and friends.

    Parameters
    ----------
    metric : {"precision", "recall", "f1"}, default="f1"
        The certified metric, averaged over the scored inputs.
    radius : float or int, default=0.0
        The attack size: l2 radius for smoothing, T (poisoned examples, a whole number)
        for ensembles. A non-integer radius given to an ensemble raises a ``ValueError``
        naming ``radius``. Inside a search such as ``GridSearchCV``, every failure while
        scoring follows its ``error_score``: pass ``error_score="raise"`` to stop the
        search on such a configuration error; with the default (NaN) scikit-learn
        warns "Scoring failed" with the message and scores the candidate NaN.
    **certify_options
        Passed to the estimator's ``certify`` (e.g. ``method="first-term"`` or
        ``attack="deletion"``).

    Returns
    -------
    CertifiedScorer
        A picklable callable ``(estimator, X, Y) -> float``; higher is better.

    Notes
    -----
    A dict of certified scorers (any metrics, radii, methods, ``k`` or ``alpha``) on a
    :class:`~sklearn_certify.SmoothedMultiLabelClassifier` with an int ``random_state``
    samples once per fitted estimator and fold: the estimator keeps its recent label
    counts keyed on its fitted model's content, the inputs' content and the sampling
    parameters, and every scorer certifies from them. See ``docs/model_selection.md``.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_certify import SmoothedMultiLabelClassifier
    >>> search = GridSearchCV(SmoothedMultiLabelClassifier(), {"sigma": [0.25, 0.5]},
    ...                       scoring=certified_scorer("f1", radius=0.5), cv=3)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}.")
    if not isinstance(radius, numbers.Real) or isinstance(radius, bool):
        raise TypeError(f"radius must be a non-negative number, got {radius!r}.")
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite non-negative number, got {radius!r}.")
    return CertifiedScorer(metric, radius, dict(certify_options))
