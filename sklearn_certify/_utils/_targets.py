"""Targets: multi-label indicator matrices, and 1-D multi-class labels one-hot encoded."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning

from ._validation import check_label_matrix, check_not_sparse

__all__ = ["encode_fit_targets", "encode_targets"]


def encode_fit_targets(y) -> tuple[np.ndarray, np.ndarray | None]:
    """Targets given to ``fit`` as a 0/1 int matrix, and ``classes_`` for 1-D input.

    A 2-D ``y`` must be a multi-label indicator matrix and is returned as is
    (``classes_`` is None). A 1-D ``y`` holds multi-class labels: it is one-hot encoded
    over ``classes_ = np.unique(y)``.
    """
    check_not_sparse(y, "Y")
    y_arr = _ravel_column(np.asarray(y))
    if y_arr.ndim == 1:
        if y_arr.size and y_arr.dtype.kind == "f" and not np.all(np.isfinite(y_arr)):
            raise ValueError("y contains NaN or inf.")
        classes = _unique_labels(y_arr)
        if classes.size < 2:
            raise ValueError(f"y has {classes.size} class(es); at least 2 are needed to classify.")
        return (y_arr[:, None] == classes[None, :]).astype(np.int64), classes
    if y_arr.ndim == 2 and y_arr.shape[1] == 0:
        raise ValueError("Y has no columns; it needs at least one label.")
    return check_label_matrix(y_arr, "Y").astype(np.int64), None


def encode_targets(y, classes, n_classes: int) -> np.ndarray:
    """Targets given to ``certify``/``score``, encoded like those seen at ``fit``."""
    check_not_sparse(y, "Y")
    y_arr = np.asarray(y)
    if classes is not None:
        y_arr = _ravel_column(y_arr)
    if classes is not None and y_arr.ndim == 1:
        known = np.isin(y_arr, classes)
        if not known.all():
            raise ValueError(
                f"y contains labels not seen during fit: {np.unique(y_arr[~known])[:5]}."
            )
        return (y_arr[:, None] == classes[None, :]).astype(np.int64)
    if y_arr.ndim == 1:
        raise ValueError(
            "y is 1-D but the estimator was fitted on a multi-label indicator matrix; "
            f"pass Y with shape (n_inputs, {n_classes})."
        )
    return check_label_matrix(y_arr, "Y", n_classes=n_classes).astype(np.int64)


def _unique_labels(y: np.ndarray) -> np.ndarray:
    """The sorted distinct labels of 1-D ``y``; labels that cannot be ordered are refused."""
    try:
        return np.unique(y)
    except TypeError:
        kinds = sorted({type(label).__name__ for label in y})
        raise TypeError(
            f"y mixes labels of types {kinds}, which cannot be sorted into classes_; 1-D "
            "labels must be all numbers or all strings."
        ) from None


def _ravel_column(y: np.ndarray) -> np.ndarray:
    """A column vector of labels (n, 1) is read as 1-D labels, as scikit-learn does."""
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1-D array was expected; it is read as "
            "1-D multi-class labels. Use y.ravel() to silence this warning.",
            DataConversionWarning,
            stacklevel=3,
        )
        return y.ravel()
    return y
