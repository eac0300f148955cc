"""DPA's partitions: a content hash of every training example.

Partition of an example
-----------------------
Example ``(x_i, y_i)`` goes to partition

    int.from_bytes(sha256(bytes(x_i) || bytes(y_i)).digest(), "big") % n_partitions

with these canonical byte forms:

* ``bytes(x_i)``: the row, flattened in C order, converted to float64, with ``-0.0``
  replaced by ``0.0``, as little-endian IEEE-754 (``'<f8'``), 8 bytes per value. The
  input dtype (float32, int, ...), the memory layout and the row's position do not
  matter; the row's shape does not enter (all rows have the same shape).
* ``bytes(y_i)`` for a multi-label indicator matrix: the 0/1 row as little-endian
  int64 (``'<i8'``), 8 bytes per label, whatever the input dtype (bool, int, float).
* ``bytes(y_i)`` for 1-D multi-class labels (or a column ``(n, 1)`` of them): the
  label itself, not its one-hot row
  (which would depend on which classes the whole training set holds): a number that
  is an integer (``3`` and ``3.0`` alike) as one ``'<i8'``, another number as one
  ``'<f8'``, anything else as the UTF-8 bytes of ``str(label)``.

The partition depends on the example's content only: it is the same in every process
and on every machine (sha256, never Python's salted ``hash``), identical rows share a
partition, and permuting the training set moves no example. Within a partition the
examples are ordered by their digest before training, so each base model is a
function of its partition's (multi)set of examples only, and fitting on a permuted
training set gives the same ensemble.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .._utils._validation import check_inputs, check_label_matrix

__all__ = ["example_digests", "hash_partitions"]


def _label_bytes(label) -> bytes:
    if isinstance(label, (numbers.Number, np.number, np.bool_)) and not isinstance(label, complex):
        value = float(label)
        if np.isfinite(value) and value == np.floor(value) and abs(value) < 2.0**63:
            return np.array([int(value)], dtype="<i8").tobytes()
        return np.array([value], dtype="<f8").tobytes()
    return str(label).encode("utf-8")


def example_digests(X, y) -> list[bytes]:
    """sha256 digest of every training example ``(x_i, y_i)`` in canonical bytes.

    See the module docstring for the byte forms.

    Parameters
    ----------
    X : array-like of shape (n, ...)
    y : array-like of {0, 1}, shape (n, n_classes), or 1-D labels of shape (n,)

    Returns
    -------
    list of bytes
        ``n`` digests of 32 bytes.
    """
    X = check_inputs(X)
    n = X.shape[0]
    x_rows = np.ascontiguousarray(X.reshape(n, -1), dtype="<f8") + 0.0  # -0.0 -> 0.0
    y_arr = np.asarray(y)
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr[:, 0]  # a column of labels is read as 1-D labels, as fit does
    if y_arr.ndim == 1:
        y_rows = [_label_bytes(label) for label in y_arr.tolist()]
    else:
        labels = np.ascontiguousarray(check_label_matrix(y_arr, "y"), dtype="<i8")
        y_rows = [labels[i].tobytes() for i in range(labels.shape[0])]
    if len(y_rows) != n:
        raise ValueError(f"X has {n} rows but y has {len(y_rows)}.")
    digests = []
    for i in range(n):
        h = hashlib.sha256(x_rows[i].tobytes())
        h.update(y_rows[i])
        digests.append(h.digest())
    return digests


def hash_partitions(X, y, n_partitions: int) -> np.ndarray:
    """Partition index of every example, ``int(sha256(x_i || y_i)) % n_partitions``.

    Parameters
    ----------
    X : array-like of shape (n, ...)
    y : array-like of {0, 1}, shape (n, n_classes), or 1-D labels of shape (n,)
    n_partitions : int

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]]); Y = np.array([[1, 0]] * 3)
    >>> parts = hash_partitions(X, Y, 300)
    >>> bool(parts[0] == parts[1])  # identical examples share a partition
    True
    >>> bool((hash_partitions(X.astype(np.float32), Y.astype(bool), 300) == parts).all())
    True
    """
    return np.array(
        [int.from_bytes(d, "big") % n_partitions for d in example_digests(X, y)], dtype=np.int64
    )
