"""Scores of arbitrary scikit-learn multi-label estimators, and top-k label sets.

Shared by the smoothing engine's generic path and by the ensembles.
"""

from __future__ import annotations

import numpy as np

__all__ = ["label_scores", "top_k_indicator", "has_score_method"]


def has_score_method(estimator) -> bool:
    """Whether ``estimator`` exposes ``decision_function`` or ``predict_proba``."""
    return hasattr(estimator, "decision_function") or hasattr(estimator, "predict_proba")


def _positive_column(proba: np.ndarray, classes) -> np.ndarray:
    """Probability of class 1 from one output's ``predict_proba``.

    An output fitted on a constant column has a single class: its probability of 1 is
    then 1 or 0 for every input.
    """
    classes = np.asarray(classes)
    hit = np.flatnonzero(classes == 1)
    if hit.size:
        return proba[:, hit[0]]
    return np.zeros(proba.shape[0], dtype=np.float64)


def label_scores(estimator, X) -> np.ndarray:
    """Per-label scores of shape (n_inputs, n_classes), higher meaning more likely.

    Uses ``decision_function`` when present, otherwise ``predict_proba``. The
    list-of-arrays form of multi-output classifiers (one ``(n, 2)`` probability array
    per label, as ``MultiOutputClassifier`` and multi-label trees return) is turned into
    the probability of each label being present.
    """
    if hasattr(estimator, "decision_function"):
        scores = estimator.decision_function(X)
        if isinstance(scores, list):
            scores = np.column_stack(scores)
    elif hasattr(estimator, "predict_proba"):
        scores = estimator.predict_proba(X)
        if isinstance(scores, list):
            classes = getattr(estimator, "classes_", None)
            if classes is None or len(classes) != len(scores):
                classes = [np.array([0, 1])] * len(scores)
            scores = np.column_stack(
                [_positive_column(np.asarray(p), c) for p, c in zip(scores, classes)]
            )
    else:
        raise TypeError(
            f"{type(estimator).__name__} has neither decision_function nor predict_proba; "
            "a base estimator must score every label."
        )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    return scores


def top_k_indicator(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean matrix marking each row's k highest scores, ties to the lower label index."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out
