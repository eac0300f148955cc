"""Scores of arbitrary scikit-learn multi-label estimators, and top-k label sets.

Shared by the smoothing engine's generic path and by the ensembles.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "label_scores",
    "top_k_indicator",
    "has_score_method",
    "check_no_nan_scores",
    "nan_scores_error",
    "positive_class_scores",
]


def has_score_method(estimator) -> bool:
    """Whether ``estimator`` exposes ``decision_function`` or ``predict_proba``."""
    return hasattr(estimator, "decision_function") or hasattr(estimator, "predict_proba")


def _positive_class(classes) -> int | None:
    """Position of class 1 (label present) among a binary output's ``classes``; None
    when the output never saw it."""
    hit = np.flatnonzero(np.asarray(classes).ravel() == 1)
    return int(hit[0]) if hit.size else None


def _positive_column(proba: np.ndarray, classes) -> np.ndarray:
    """Probability of class 1 from one output's ``predict_proba``.

    An output fitted on a constant column has a single class: its probability of 1 is
    then 1 or 0 for every input.
    """
    column = _positive_class(classes)
    if column is not None:
        return proba[:, column]
    return np.zeros(proba.shape[0], dtype=np.float64)


def positive_class_scores(estimator, scores: np.ndarray) -> np.ndarray:
    """Score of label presence, shape (n, 1), from a single-output binary classifier's
    two columns (one per class, 0 and 1, as ``predict_proba`` gives them).

    A model fitted on one label column is a binary classifier to most estimators.
    Without ``classes_`` the classes are taken to be ``[0, 1]``; without class 1 the
    other columns are returned.
    """
    classes = getattr(estimator, "classes_", None)
    if isinstance(classes, list) and len(classes) == 1:
        classes = classes[0]
    column = _positive_class([0, 1] if classes is None else classes)
    return scores[:, 1:] if column is None else scores[:, [column]]


def _check_not_one_vs_one(estimator) -> None:
    """Refuse one-vs-one decision functions: one column per pair of classes, not per class.

    With 3 classes they even have the right width, and would be misread as class scores.
    """
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    classes = getattr(final, "classes_", None)
    if (
        getattr(final, "decision_function_shape", None) == "ovo"
        and classes is not None
        and len(classes) > 2
    ):
        raise ValueError(
            f"{type(final).__name__}(decision_function_shape='ovo') scores pairs of classes "
            "(one column per pair), not each class; set decision_function_shape='ovr' (the "
            "default), which gives one score per class."
        )


def _shown(values) -> str:
    values = [int(v) for v in values]
    return f"{values[:10]}{' ...' if len(values) > 10 else ''}"


def nan_scores_error(inputs, labels, models=None) -> ValueError:
    """The error for NaN scores of a base model: which inputs, labels (and models)."""
    who = "the base model" if models is None else f"base model(s) {_shown(models)}"
    return ValueError(
        f"{who} returned NaN scores, first for input(s) {_shown(inputs)} at label(s) "
        f"{_shown(labels)}. A NaN score cannot be ranked: it means a broken model (e.g. "
        "trained on NaN or inf values, or diverged). Check or refit the base estimator."
    )


def check_no_nan_scores(scores: np.ndarray, inputs=None) -> None:
    """Raise :func:`nan_scores_error` if a score matrix (n_rows, n_classes) holds NaN.

    ``inputs`` maps each row to the index of its input (default: the row index).
    """
    nan = np.isnan(scores)
    if nan.any():
        rows = np.flatnonzero(nan.any(axis=1))
        inputs = rows if inputs is None else np.unique(np.asarray(inputs)[rows])
        raise nan_scores_error(inputs, np.flatnonzero(nan.any(axis=0)))


def label_scores(estimator, X) -> np.ndarray:
    """Per-label scores of shape (n_inputs, n_classes), higher meaning more likely.

    Uses ``decision_function`` when present, otherwise ``predict_proba``. The
    list-of-arrays form of multi-output classifiers (one ``(n, 2)`` probability array
    per label, as ``MultiOutputClassifier`` and multi-label trees return) is turned into
    the probability of each label being present.
    """
    if hasattr(estimator, "decision_function"):
        _check_not_one_vs_one(estimator)
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
