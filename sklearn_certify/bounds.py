"""One-sided Clopper-Pearson bounds on label probabilities, and the sample-size planner.

MultiGuard Eq. (9)-(10): with ``n`` draws and ``n_i`` hits for label ``i``,

    lower_i = Beta(alpha / c; n_i, n - n_i + 1)
    upper_i = Beta(1 - alpha / c; n_i + 1, n - n_i)

each one-sided at level ``alpha / c`` so that, by Bonferroni, all ``c`` bounds of an
input hold together with probability at least ``1 - alpha`` (:func:`clopper_pearson_bounds`;
levels below :data:`MIN_LEVEL` are refused).

The sample-size planner (:func:`max_certifiable_radius`, :func:`draws_for_radius`) asks
what these bounds allow at best: with every draw agreeing, the bounds are as tight as
``n_draws`` and ``alpha`` let them be, and no input can be certified beyond the radius
they give.

This is the public path of these names; the code lives beside the certificates it
serves (``certificates/_clopper_pearson.py``, ``certificates/_gaussian_planner.py``).
Only numpy and scipy are loaded.
"""

from __future__ import annotations

from ._utils._validation import MIN_LEVEL
from .certificates._clopper_pearson import clopper_pearson_bounds
from .certificates._gaussian_planner import draws_for_radius, max_certifiable_radius

__all__ = ["clopper_pearson_bounds", "MIN_LEVEL", "max_certifiable_radius", "draws_for_radius"]
