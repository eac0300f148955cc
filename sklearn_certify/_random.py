"""Seeds and random streams shared by the estimators (numpy only)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["SEED_HIGH", "is_int"]

#: Exclusive upper bound of the integer seeds drawn with ``RandomState.randint``
#: (``2**31 - 1``, as scikit-learn draws them).
SEED_HIGH = int(np.iinfo(np.int32).max)


def is_int(value) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
