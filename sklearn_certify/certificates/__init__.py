"""Certified intersection sizes from label-probability bounds or vote counts.

Each theorem sits in its own module, with the paper's equation beside the code:

* :mod:`._gaussian` -- MultiGuard Theorem 1 / Eq. (8) and Jia et al. (2020) (l2 evasion);
* :mod:`._bagging` -- PoisoningGuard Theorem 1 / Eq. (4) (bagging, poisoning);
* :mod:`._dpa` -- PoisoningGuard Theorem 2 / Eq. (9) (DPA, poisoning).

All functions are vectorised over inputs and radii: a scalar ``radius`` gives sizes of
shape ``(n_inputs,)``, a 1-D ``radius`` gives ``(n_inputs, n_radii)``.
"""

from ._bagging import bagging_certified_size
from ._dpa import dpa_certified_size
from ._gaussian import gaussian_certified_size

__all__ = ["gaussian_certified_size", "bagging_certified_size", "dpa_certified_size"]
