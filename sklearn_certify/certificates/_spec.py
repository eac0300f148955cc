"""What results and estimators need to know about a certificate function.

Each certificate module defines its function and, beside it, a :class:`CertificateSpec`;
:data:`sklearn_certify.certificates.CERTIFICATES` maps their names to the specs. A new
certificate is a new module with both, added to that mapping: results
(:class:`~sklearn_certify.results.CertificationResult`: ``recertify``,
``certified_radius``, ``save``/``load``, tables and plots), the metrics and the
estimators read everything else from the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._utils._validation import check_choice
from ._radius import RadiusSearch, certified_radius

__all__ = ["COUNTS_LAYOUTS", "CertificateSpec"]

#: The layouts of a result's ``counts``: "label-counts", shape (n_inputs, n_classes),
#: how many draws or base models put each label in their top-k' / top-k_b;
#: "model-votes", shape (n_inputs, n_models, k_base), the labels each base model votes
#: for (label indices).
COUNTS_LAYOUTS = ("label-counts", "model-votes")


def _same_alpha(alpha: float, method: str) -> float:
    return alpha


def _no_check(method: str, params: dict) -> None:
    return None


def _label_counts(method: str) -> str:
    return "label-counts"


def _empty_label_counts(method: str, params: dict, n_classes: int) -> np.ndarray:
    return np.zeros((0, n_classes), dtype=np.int64)


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
    radius_label : str
        Axis label of the radius in plots.
    poisoning : bool
        Whether the radius counts poisoned training examples (data poisoning) rather
        than measuring an input perturbation (evasion).
    integer_radius : bool
        Whether radii are whole numbers: validated as such, searched exactly by
        :meth:`certified_radius` and drawn as steps.
    radius_search : callable
        ``radius_search(Y, *, k, method, params, lower, upper, counts)`` ->
        :class:`RadiusSearch`: the certified sizes of a batch of inputs at one radius
        each, for :meth:`certified_radius` (``lower``, ``upper`` for a sampled
        certificate, ``counts`` otherwise; ``params`` as in :attr:`params`).
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
    counts_layout : callable
        ``counts_layout(method)``: one of :data:`COUNTS_LAYOUTS`, the layout of the
        counts the certificate reads with that method (and a result keeps).
    empty_counts : callable
        ``empty_counts(method, params, n_classes)``: counts of zero inputs in that
        layout, which ``function`` accepts (a deterministic certificate's parameters are
        checked by calling it on them).
    """

    name: str
    function: Callable
    methods: tuple[str, ...]
    sampled: bool
    radius_name: str
    radius_label: str
    poisoning: bool
    integer_radius: bool
    radius_search: Callable[..., RadiusSearch]
    params: tuple[str, ...]
    recertifiable: frozenset = field(default_factory=frozenset)
    optional_params: tuple[str, ...] = ()
    bound_alpha: Callable[[float, str], float] = _same_alpha
    check: Callable[[str, dict], None] = _no_check
    counts_layout: Callable[[str], str] = _label_counts
    empty_counts: Callable[[str, dict, int], np.ndarray] = _empty_label_counts

    def certified_radius(
        self,
        Y,
        *,
        k: int,
        method: str,
        params: dict,
        lower=None,
        upper=None,
        counts=None,
        size: int = 1,
    ) -> np.ndarray:
        """Per input, the supremum (integer radius: maximum) of the radii at which at
        least ``size`` true labels are certified (validated arguments): the search of
        ``certificates/_radius.py`` on :attr:`radius_search`."""
        return certified_radius(
            self,
            Y,
            k=k,
            method=method,
            params=params,
            lower=lower,
            upper=upper,
            counts=counts,
            size=size,
        )

    def check_method(self, method: str, params: dict) -> str:
        """``method``, checked against :attr:`methods` and ``params``."""
        check_choice(method, "method", self.methods)
        self.check(method, params)
        return method

    def check_no_alpha(self, alpha) -> None:
        """A deterministic certificate refuses an ``alpha``."""
        if not self.sampled and alpha is not None:
            raise TypeError(f"{self.name} certificates are deterministic and take no alpha.")

    def check_recertify(self, kept: dict, changes: dict, alpha) -> None:
        """Refuse changes that ``recertify`` cannot make to a result with parameters
        ``kept``: unknown parameters, an alpha for a deterministic certificate, or a
        parameter that describes how the counts were sampled (``sigma``, ``k_prime``,
        ``k_base``, ``n_train``, ``max_samples``): changing one would certify a
        classifier other than the one that was sampled."""
        unknown = sorted(set(changes) - set(kept))
        if unknown:
            takes = [
                "radius",
                "k",
                "alpha",
                "method",
                "label",
                *sorted(self.recertifiable & set(kept)),
            ]
            raise TypeError(
                f"recertify got unexpected parameter(s) {unknown}; it takes "
                f"{', '.join(takes)}. The counts, n_draws and Y are this result's own: "
                "certify again to change them."
            )
        self.check_no_alpha(alpha)
        for key, value in changes.items():
            if key not in self.recertifiable and kept.get(key, value) != value:
                raise ValueError(
                    f"{key} describes how the counts were sampled ({key}="
                    f"{kept[key]!r}); certify again to change it. Only "
                    f"{sorted(self.recertifiable)} (and radius, k, alpha, method) can change."
                )
