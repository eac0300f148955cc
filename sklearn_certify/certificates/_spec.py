"""What results and estimators need to know about a certificate function.

Each certificate module defines its function and, beside it, a :class:`CertificateSpec`;
:data:`sklearn_certify.certificates.CERTIFICATES` maps their names to the specs. A new
certificate is a new module with both, added to that mapping: results
(:class:`~sklearn_certify.results.CertificationResult`) and estimators read everything
else from the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .._utils._validation import check_choice

__all__ = ["CertificateSpec"]


def _same_alpha(alpha: float, method: str) -> float:
    return alpha


def _no_check(method: str, params: dict) -> None:
    return None


@dataclass(frozen=True)
class CertificateSpec:
    """A certificate function and the facts about it that its callers need.

    Attributes
    ----------
    name : str
        Registry key and ``CertificationResult.certificate``.
    function : callable
        ``function(lower, upper, Y, *, k, radius, method, **params)`` for a sampled
        certificate, ``function(counts, Y, *, k, radius, method, **params)`` otherwise.
    methods : tuple of str
        Its ``method`` values, the default first.
    sampled : bool
        Whether it certifies from Clopper-Pearson bounds of sampled counts (and so
        takes ``n_draws`` and ``alpha``); a deterministic certificate takes no alpha.
    radius_name : str
        Name of the radius in tables ("radius" for l2 radii, "T" for numbers of
        poisoned training examples).
    params : tuple of str
        The function's other keyword arguments, all required.
    optional_params : tuple of str
        Keyword arguments the function also takes, with defaults (e.g. DPA's
        ``spread``); a result keeps them only when they were given.
    recertifiable : frozenset of str
        Those of ``params`` that may change without sampling again (the others
        describe how the counts were made).
    bound_alpha : callable
        ``bound_alpha(alpha, method)``: the level given to the Clopper-Pearson bounds.
    check : callable
        ``check(method, params)``: raises when the parameters do not suit the method.
    """

    name: str
    function: Callable
    methods: tuple[str, ...]
    sampled: bool
    radius_name: str
    params: tuple[str, ...]
    recertifiable: frozenset = field(default_factory=frozenset)
    optional_params: tuple[str, ...] = ()
    bound_alpha: Callable[[float, str], float] = _same_alpha
    check: Callable[[str, dict], None] = _no_check

    @property
    def poisoning(self) -> bool:
        """Whether the radius counts poisoned training examples."""
        return self.radius_name == "T"

    def check_method(self, method: str, params: dict) -> str:
        """``method``, checked against :attr:`methods` and ``params``."""
        check_choice(method, "method", self.methods)
        self.check(method, params)
        return method

    def check_no_alpha(self, alpha) -> None:
        """A deterministic certificate refuses an ``alpha``."""
        if not self.sampled and alpha is not None:
            raise TypeError(
                f"{self.name} certificates are deterministic and take no alpha.")
