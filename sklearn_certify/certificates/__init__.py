"""Certified intersection sizes from label-probability bounds or vote counts.

Each theorem sits in its own module, with the paper's equation beside the code:

* :mod:`._gaussian` -- MultiGuard Theorem 1 / Eq. (8) and Jia et al. (2020) (l2 evasion);
* :mod:`._bagging` -- PoisoningGuard Theorem 1 / Eq. (4) (bagging, poisoning);
* :mod:`._dpa` -- PoisoningGuard Theorem 2 / Eq. (9) (DPA, poisoning).

All functions are vectorised over inputs and radii: a scalar ``radius`` gives sizes of
shape ``(n_inputs,)``, a 1-D ``radius`` gives ``(n_inputs, n_radii)``.

Each function sits beside its :class:`CertificateSpec` (methods, sampled or not, radius
name, alpha rule, parameter checks); :data:`CERTIFICATES` maps certificate names to the
specs, and :func:`certificate_spec` looks one up. Results and estimators read them.
"""

from ._bagging import BAGGING, bagging_certified_size
from ._dpa import DPA, dpa_certified_size
from ._gaussian import GAUSSIAN, gaussian_certified_size
from ._spec import CertificateSpec

__all__ = [
    "CERTIFICATES",
    "CertificateSpec",
    "bagging_certified_size",
    "certificate_spec",
    "dpa_certified_size",
    "gaussian_certified_size",
]

#: Certificate name -> :class:`CertificateSpec`.
CERTIFICATES = {spec.name: spec for spec in (GAUSSIAN, BAGGING, DPA)}


def certificate_spec(name: str) -> CertificateSpec:
    """The spec of the certificate called ``name`` ("gaussian", "bagging" or "dpa")."""
    if name not in CERTIFICATES:
        raise ValueError(f"certificate must be one of {sorted(CERTIFICATES)}, got {name!r}.")
    return CERTIFICATES[name]
