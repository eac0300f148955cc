"""Input validation shared by the pure functions and the estimators.

Imports numpy only at module level (scikit-learn inside :func:`check_inputs`), so that
:mod:`sklearn_certify.bounds` and :mod:`sklearn_certify.certificates` load numpy and
scipy only.

Every check raises ``ValueError`` (bad value) or ``TypeError`` (bad type) with a
message that names the parameter and what it expected.
"""

from __future__ import annotations

import numbers
import re

import numpy as np
import scipy.sparse as sp

from ._random import is_int

ATTACKS = ("modification", "addition", "deletion")


def check_int(value, name: str, *, low: int = 1, high: int | None = None) -> int:
    """An integer in ``[low, high]``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and at most {high}"
        raise ValueError(f"{name} must be at least {low}{upper}, got {value}.")
    return int(value)


def check_label_count(value, name: str, n_classes: int) -> int:
    """A number of labels (``k``, ``k_prime``, ``k_base``): an integer in [1, n_classes]."""
    if is_int(value) and value > n_classes:
        raise ValueError(
            f"{name} must be at least 1 and at most {n_classes}, got {value}: "
            f"{name}={value} exceeds the number of labels, n_classes={n_classes}."
        )
    return check_int(value, name, low=1, high=n_classes)


def check_alpha(alpha) -> float:
    """A failure probability strictly inside (0, 1)."""
    if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool):
        raise TypeError(f"alpha must be a float in (0, 1), got {alpha!r}.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in the open interval (0, 1), got {alpha}.")
    return float(alpha)


#: Smallest per-bound level ``alpha / n_classes`` of the Clopper-Pearson bounds: below
#: it binomial tails approach the end of double precision (subnormal numbers), where
#: they lose accuracy.
MIN_LEVEL = 1e-300


def check_alpha_level(alpha: float, n_classes: int) -> float:
    """The per-bound level ``alpha / n_classes``, refused (naming alpha) below MIN_LEVEL."""
    level = alpha / max(n_classes, 1)
    if level < MIN_LEVEL:
        raise ValueError(
            f"alpha={alpha!r} is too small: each of the {n_classes} label bounds holds at "
            f"level alpha / n_classes = {level:.3g}, below {MIN_LEVEL:g}, where binomial "
            f"tails underflow double precision. alpha must be at least "
            f"{MIN_LEVEL * n_classes:.3g} here."
        )
    return level


def check_positive(value, name: str) -> float:
    """A finite real number > 0."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive float, got {value!r}.")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}.")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_not_sparse(Y, name: str = "Y") -> None:
    """Refuse a scipy sparse matrix or array, which ``np.asarray`` cannot read."""
    if sp.issparse(Y):
        raise TypeError(
            f"{name} is a sparse {type(Y).__name__}; pass a dense 0/1 indicator matrix "
            f"instead ({name}.toarray())."
        )


def check_label_matrix(Y, name: str = "Y", n_classes: int | None = None) -> np.ndarray:
    """A 2-D 0/1 indicator matrix, returned as bool."""
    check_not_sparse(Y, name)
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D 0/1 indicator matrix (n_inputs, n_classes), "
            f"got an array with shape {Y.shape}."
        )
    if Y.dtype != bool:
        if not (np.issubdtype(Y.dtype, np.number)) or not np.isin(Y, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0 and 1 (a multi-label indicator matrix).")
    if n_classes is not None and Y.shape[1] != n_classes:
        raise ValueError(f"{name} has {Y.shape[1]} columns but {n_classes} classes were expected.")
    return Y.astype(bool)


def check_count_matrix(counts, name: str = "counts") -> np.ndarray:
    """A 2-D array of non-negative whole numbers, returned as int64."""
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_inputs, n_classes), got shape {counts.shape}."
        )
    if counts.dtype == bool or not np.issubdtype(counts.dtype, np.number):
        raise TypeError(f"{name} must hold non-negative integers, got dtype {counts.dtype}.")
    if counts.size and not np.issubdtype(counts.dtype, np.integer):
        if not np.all(np.isfinite(counts) & (counts == np.round(counts))):
            raise ValueError(f"{name} must hold non-negative integers (no NaN or fractions).")
    if np.any(counts < 0):
        raise ValueError(f"{name} must hold non-negative integers, got a negative value.")
    return counts.astype(np.int64)


def check_counts(counts, n_draws) -> tuple[np.ndarray, np.ndarray]:
    """Label counts and the number of draws behind each row.

    Returns the counts as int64 of shape (n_inputs, n_classes) and ``n_draws`` as an
    int64 array of shape (n_inputs, 1) for broadcasting.
    """
    counts = check_count_matrix(counts)
    n = np.asarray(n_draws)
    if n.ndim == 0:
        if not (is_int(n_draws) or np.issubdtype(n.dtype, np.integer)):
            raise TypeError(f"n_draws must be an integer, got {n_draws!r}.")
        n = np.full((counts.shape[0], 1), int(n), dtype=np.int64)
    else:
        if n.shape != (counts.shape[0],) or not np.issubdtype(n.dtype, np.integer):
            raise ValueError("n_draws must be an integer or an integer array of shape (n_inputs,).")
        n = n.astype(np.int64)[:, None]
    if np.any(n < 1):
        raise ValueError("n_draws must be at least 1.")
    if np.any(counts > n):
        raise ValueError("counts must lie between 0 and n_draws.")
    return counts, n


def check_per_input_draws(n_draws_used, alpha_share, n_inputs: int, n_draws):
    """``n_draws_used`` (int64) and ``alpha_share`` (float64 or None) of shape
    (n_inputs,), checked: whole numbers in [0, n_draws] (n_draws None: no upper
    limit), shares in (0, 1]."""
    used = np.asarray(n_draws_used)
    if used.shape != (n_inputs,):
        raise ValueError(
            f"n_draws_used must have shape ({n_inputs},), one entry per input, got "
            f"shape {used.shape}."
        )
    if (
        used.dtype == bool
        or not np.issubdtype(used.dtype, np.number)
        or (used.size and not np.all(np.isfinite(used) & (used == np.round(used))))
    ):
        raise TypeError(f"n_draws_used must hold whole numbers, got {used!r}.")
    if np.any(used < 0) or (n_draws is not None and np.any(used > n_draws)):
        raise ValueError(
            f"n_draws_used must lie between 0 and n_draws={n_draws}, got values from "
            f"{used.min()} to {used.max()}."
        )
    if alpha_share is None:
        return used.astype(np.int64), None
    share = np.asarray(alpha_share)
    if share.shape != (n_inputs,):
        raise ValueError(
            f"alpha_share must have shape ({n_inputs},), one entry per input, got shape "
            f"{share.shape}."
        )
    if share.dtype == bool or not np.issubdtype(share.dtype, np.number):
        raise TypeError(f"alpha_share must hold floats in (0, 1], got dtype {share.dtype}.")
    if not np.all((share > 0) & (share <= 1)):  # NaN fails too
        raise ValueError("alpha_share must hold floats in (0, 1] (no NaN).")
    return used.astype(np.int64), share.astype(np.float64)


def check_bounds(lower, upper, Y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label-probability bounds in [0, 1] with ``lower <= upper``, and a matching Y."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if lower.ndim != 2 or lower.shape != upper.shape:
        raise ValueError(
            "lower and upper must be 2-D arrays of the same shape (n_inputs, n_classes), "
            f"got {lower.shape} and {upper.shape}."
        )
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError("lower and upper must be finite (no NaN or inf).")
    if np.any(lower < 0) or np.any(upper > 1) or np.any(lower > upper):
        raise ValueError("bounds must satisfy 0 <= lower <= upper <= 1 elementwise.")
    Y = check_label_matrix(Y, "Y")
    if Y.shape != lower.shape:
        raise ValueError(
            f"Y has shape {Y.shape} but the bounds have shape {lower.shape}; "
            "they must match (n_inputs, n_classes)."
        )
    return lower, upper, Y


def check_radius(radius, *, integer: bool = False) -> tuple[np.ndarray, bool]:
    """Radii as a 1-D float (or int) array, and whether the input was a scalar.

    ``integer=True`` is for the poisoning certificates, where the radius is T, a
    count of training examples.
    """
    arr = np.asarray(radius)
    scalar = arr.ndim == 0
    if arr.ndim > 1:
        raise ValueError(f"radius must be a scalar or a 1-D array, got shape {arr.shape}.")
    arr = np.atleast_1d(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"radius must be numeric, got dtype {arr.dtype}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("radius must be finite (no NaN or inf).")
    if np.any(arr < 0):
        raise ValueError(f"radius must be non-negative, got {arr[arr < 0][0]}.")
    if integer:
        if not np.all(arr == np.round(arr)):
            raise ValueError(
                "radius is T, the number of poisoned training examples, and must hold "
                "non-negative integers."
            )
        # T beyond 2^53 exceeds every training set and partition count (it certifies
        # only the trivial floor, as 2^53 does) and would overflow int64 arithmetic.
        arr = np.minimum(arr, 2**53).astype(np.int64)
    else:
        arr = arr.astype(np.float64)
    return arr, scalar


def check_inputs(X, *, ensure_min_samples: int = 0) -> np.ndarray:
    """Inputs as a dense numeric array of at least 2 dimensions, with no NaN or inf.

    Goes through :func:`sklearn.utils.check_array` (``allow_nd=True``): sparse, complex,
    non-finite or non-numeric data are rejected with scikit-learn's messages, prefixed
    with "Invalid X" where they do not name X. Inputs of any shape must hold at least
    one feature. A torch tensor (on any device) is read as a numpy array: the consumers
    of this function (scikit-learn estimators) work on the host.
    """
    # scikit-learn is imported here, not at module level: the certificate math (which
    # uses the other checks) loads numpy and scipy only.
    from sklearn.utils import check_array

    if _is_torch_tensor(X):
        X = X.detach().cpu().numpy()
    try:
        X = check_array(
            X, dtype="numeric", allow_nd=True, ensure_min_samples=ensure_min_samples, input_name="X"
        )
    except (TypeError, ValueError) as exc:
        if re.search(r"\bX\b", str(exc)):
            raise
        raise type(exc)(f"Invalid X: {exc}") from None
    if X.ndim > 2 and int(np.prod(X.shape[1:])) == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    # Any view a user can make must work downstream, torch included: torch cannot wrap
    # negative strides (reversed views) or a non-native byte order. Other views
    # (strided, Fortran-ordered) are kept as they are.
    if any(stride < 0 for stride in X.strides) or not X.dtype.isnative:
        X = np.ascontiguousarray(X, dtype=X.dtype.newbyteorder("="))
    return X


def _is_torch_tensor(X) -> bool:
    """Whether X is a torch tensor, without importing torch (it need not be installed)."""
    return type(X).__module__.split(".")[0] == "torch" and hasattr(X, "detach")


def check_tensor_inputs(X, *, ensure_min_samples: int = 0):
    """A torch tensor X of at least 2 dimensions, with no NaN or inf, left where it is.

    The finiteness check runs on the tensor's own device; only its one-element answer
    reaches the host.
    """
    if X.ndim < 2:
        raise ValueError(
            f"X must have at least 2 dimensions (n_inputs, ...), got shape "
            f"{tuple(X.shape)}. Reshape your data."
        )
    if len(X) < ensure_min_samples:
        raise ValueError(f"X has {len(X)} inputs, but at least {ensure_min_samples} are required.")
    if (X.is_floating_point() or X.is_complex()) and not bool(X.isfinite().all()):
        raise ValueError("Input X contains NaN or infinity.")
    return X


def reject_bool_params(estimator) -> None:
    """Refuse a bool given for a numeric parameter (scikit-learn reads True as 1).

    Every parameter of ``estimator._parameter_constraints`` whose constraints accept no
    boolean (``"boolean"``, ``"verbose"``, ``bool`` or ``Options(bool, ...)``) must not be
    a bool.
    """
    for name, constraints in estimator._parameter_constraints.items():
        value = getattr(estimator, name, None)
        if not isinstance(value, (bool, np.bool_)):
            continue
        if any(
            c is bool
            or getattr(c, "type", None) is bool
            or (isinstance(c, str) and c in ("boolean", "verbose"))
            for c in constraints
        ):
            continue
        raise TypeError(
            f"The {name!r} parameter of {type(estimator).__name__} must not be a bool, "
            f"got {value!r}: booleans are not read as numbers here."
        )
