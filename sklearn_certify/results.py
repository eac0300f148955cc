"""CertificationResult: certified sizes over radii, with the counts behind them.

Sampling (noisy forward passes, or training an ensemble) is the expensive part of
certification; the certificate math is cheap. A result therefore keeps the label
counts and can be re-certified for other radii, k, alpha or method without sampling
again (:meth:`CertificationResult.recertify`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._result_io import load_result, save_result
from .bounds import clopper_pearson_bounds
from .certificates import CERTIFICATES, certificate_spec
from .metrics import mean_certified_metric

__all__ = ["CertificationResult", "plot_certified_curves"]

class CertificationResult:
    """Certified intersection sizes of a set of inputs at one or more radii.

    Usually made by an estimator's ``certify``; :meth:`from_counts` builds one from
    label counts directly.

    Parameters
    ----------
    sizes : array-like of int, shape (n_inputs, n_radii)
        Certified intersection size ``e`` per input and radius.
    radius : array-like, shape (n_radii,)
        The radii: l2 norms for smoothing, numbers of poisoned examples T for
        ensembles.
    k : int
        Number of labels the certified classifier predicts.
    n_true : array-like of int, shape (n_inputs,)
        ``|L(x)|``, the number of true labels per input.
    Y : array-like of {0, 1}, shape (n_inputs, n_classes), optional
        The true labels, kept so the result can be re-certified.
    certificate : {"gaussian", "bagging", "dpa"}, optional
        Which theorem produced the sizes.
    method : str, optional
        The certificate method ("multiguard", "poisoningguard", "jia", ...).
    counts : array-like of int, shape (n_inputs, n_classes), optional
        Label counts: in how many noisy draws / base models each label was predicted.
    n_draws : int, optional
        Number of draws (smoothing) or base models (ensembles) behind ``counts``.
    alpha : float, optional
        Failure probability of the Clopper-Pearson bounds (sampled certificates).
    lower, upper : ndarray of shape (n_inputs, n_classes), optional
        The label-probability bounds the sizes were computed from.
    params : dict, optional
        The remaining parameters of the certificate function (``k_prime`` and
        ``sigma``; ``k_base``, ``n_train``, ``max_samples`` and ``attack``; ...).
    label : str, optional
        Name used in legends and in :meth:`to_frame`; defaults to the method.

    Attributes
    ----------
    sizes, radius, k, n_true, counts, lower, upper, ... : as above.

    Examples
    --------
    >>> import numpy as np
    >>> res = CertificationResult.from_counts(
    ...     np.array([[980, 15, 5]]), np.array([[1, 0, 0]]), [0.0, 0.5],
    ...     certificate="gaussian", k=1, method="multiguard", n_draws=1000,
    ...     alpha=0.001, k_prime=1, sigma=0.5)
    >>> res.sizes.tolist(), res.f1().tolist()
    ([[1, 1]], [1.0, 1.0])
    """

    def __init__(self, sizes, radius, k, n_true, *, Y=None, certificate=None, method=None,
                 counts=None, n_draws=None, alpha=None, lower=None, upper=None,
                 params=None, label=None):
        self.radius = np.atleast_1d(np.asarray(radius))
        sizes = np.asarray(sizes, dtype=np.int64)
        if sizes.size != len(n_true) * self.radius.size:
            raise ValueError(
                f"sizes has shape {sizes.shape}; expected {len(n_true)} inputs x "
                f"{self.radius.size} radii."
            )
        self.sizes = sizes.reshape(len(n_true), self.radius.size)
        self.k = int(k)
        self.n_true = np.asarray(n_true, dtype=np.int64)
        self.Y = None if Y is None else np.asarray(Y)
        self.certificate = certificate
        self.method = method
        self.counts = None if counts is None else np.asarray(counts)
        self.n_draws = n_draws
        self.alpha = alpha
        self.lower = lower
        self.upper = upper
        self.params = dict(params or {})
        self.label = label

    @classmethod
    def from_counts(cls, counts, Y, radius, *, certificate: str, k: int, method: str,
                    n_draws: int | None = None, alpha: float | None = None,
                    label: str | None = None, **params) -> CertificationResult:
        """Certify from label counts with one of the pure certificate functions.

        Parameters
        ----------
        counts : array-like of int, shape (n_inputs, n_classes)
        Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        radius : float, int or array-like
        certificate : {"gaussian", "bagging", "dpa"}
        k : int
        method : str
            A method of that certificate function.
        n_draws : int
            Draws / base models behind ``counts`` (needed by "gaussian", "bagging").
        alpha : float
            Failure probability (needed by "gaussian", "bagging").
        label : str, optional
        **params
            The certificate function's remaining keyword arguments.
        """
        spec = certificate_spec(certificate)
        names = spec.params
        missing = [name for name in names if name not in params]
        unknown = sorted(set(params) - set(names))
        if missing or unknown:
            raise TypeError(
                f"certificate {certificate!r} needs parameters {list(names)}; "
                f"missing {missing}, unexpected {unknown}."
            )
        spec.check_method(method, params)
        counts = np.asarray(counts)
        Y = np.asarray(Y)
        radii = np.atleast_1d(np.asarray(radius))
        lower = upper = None
        if spec.sampled:
            if n_draws is None or alpha is None:
                raise TypeError(f"certificate {certificate!r} needs n_draws and alpha.")
            lower, upper = clopper_pearson_bounds(counts, n_draws,
                                                  spec.bound_alpha(alpha, method))
            sizes = spec.function(lower, upper, Y, k=k, radius=radii, method=method, **params)
        else:
            spec.check_no_alpha(alpha)
            sizes = spec.function(counts, Y, k=k, radius=radii, method=method, **params)
        return cls(sizes, radii, k, Y.sum(axis=1), Y=Y, certificate=certificate,
                   method=method, counts=counts, n_draws=n_draws, alpha=alpha,
                   lower=lower, upper=upper, params=params, label=label)

    def recertify(self, radius=None, *, k: int | None = None, alpha: float | None = None,
                  method: str | None = None, label: str | None = None,
                  **params) -> CertificationResult:
        """Certify the same counts again with other settings, without sampling.

        Parameters
        ----------
        radius : float, int or array-like, optional
            New radii; defaults to the current ones.
        k, alpha, method : optional
            Overrides; ``alpha`` only applies to sampled certificates.
        label : str, optional
            Name of the new result; defaults to its method.
        **params
            ``attack`` for the poisoning certificates (e.g. ``attack="deletion"``). The
            parameters that describe how the counts were sampled (``sigma``,
            ``k_prime``, ``k_base``, ``n_train``, ``max_samples``) cannot change.

        Returns
        -------
        CertificationResult
        """
        if self.counts is None or self.Y is None or self.certificate is None:
            raise ValueError(
                "this result does not keep counts and labels; it cannot be re-certified."
            )
        spec = certificate_spec(self.certificate)
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            takes = ["radius", "k", "alpha", "method", "label",
                     *sorted(spec.recertifiable & set(self.params))]
            raise TypeError(
                f"recertify got unexpected parameter(s) {unknown}; it takes "
                f"{', '.join(takes)}. The counts, n_draws and Y are this result's own: "
                "certify again to change them."
            )
        spec.check_no_alpha(alpha)
        for key, value in params.items():
            # sigma, k', k_b, n and m describe how the counts were drawn: changing them
            # would certify a classifier other than the one that was sampled.
            if key not in spec.recertifiable and self.params.get(key, value) != value:
                raise ValueError(
                    f"{key} describes how the counts were sampled ({key}="
                    f"{self.params[key]!r}); certify again to change it. Only "
                    f"{sorted(spec.recertifiable)} (and radius, k, alpha, method) can change."
                )
        return CertificationResult.from_counts(
            self.counts, self.Y, self.radius if radius is None else radius,
            certificate=self.certificate, k=self.k if k is None else k,
            method=self.method if method is None else method, n_draws=self.n_draws,
            alpha=self.alpha if alpha is None else alpha, label=label,
            **{**self.params, **params},
        )

    def save(self, path) -> None:
        """Write the result to a file, to certify it again elsewhere with :meth:`load`.

        The file is a pickle-free ``.npz`` archive: the arrays (sizes, radii, counts,
        true labels, bounds, draws used) and a JSON ``settings`` entry (certificate,
        method, k, alpha, n_draws, label, the certificate's parameters and a format
        version); see :mod:`sklearn_certify._result_io`. It is written to ``path``
        exactly (no suffix is added), replacing any file there atomically.

        Parameters
        ----------
        path : str or path-like

        Examples
        --------
        >>> import numpy as np, os, tempfile
        >>> res = CertificationResult.from_counts(
        ...     np.array([[980, 15, 5]]), np.array([[1, 0, 0]]), [0.0, 0.5],
        ...     certificate="gaussian", k=1, method="multiguard", n_draws=1000,
        ...     alpha=0.001, k_prime=1, sigma=0.5)
        >>> path = os.path.join(tempfile.mkdtemp(), "result.npz")
        >>> res.save(path)
        >>> CertificationResult.load(path).recertify([0.75], alpha=0.01).sizes.tolist()
        [[1]]
        """
        save_result(self, path)

    @classmethod
    def load(cls, path) -> CertificationResult:
        """Read a result written by :meth:`save`.

        The loaded result has the saved arrays and settings, and can be re-certified
        (:meth:`recertify`) with other radii, k, alpha or method.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        CertificationResult

        Raises
        ------
        ValueError
            If the file is damaged, is not a saved result, or was written in a newer
            format version than this library reads.
        """
        return load_result(cls, path)

    @property
    def n_inputs(self) -> int:
        return self.sizes.shape[0]

    def precision(self) -> np.ndarray:
        """Mean certified top-k precision ``e / k`` per radius, shape (n_radii,)."""
        return self._metric("precision")

    def recall(self) -> np.ndarray:
        """Mean certified top-k recall ``e / |L|`` per radius, shape (n_radii,)."""
        return self._metric("recall")

    def f1(self) -> np.ndarray:
        """Mean certified top-k f1 ``2e / (|L| + k)`` per radius, shape (n_radii,)."""
        return self._metric("f1")

    def _metric(self, name: str) -> np.ndarray:
        return np.atleast_1d(mean_certified_metric(name, self.sizes, self.n_true, self.k))

    @property
    def name(self) -> str:
        return self.label or self.method or "certified"

    def _spec_radius_name(self) -> str:
        spec = CERTIFICATES.get(self.certificate)
        return "radius" if spec is None else spec.radius_name

    def to_frame(self) -> pd.DataFrame:
        """A tidy table, one row per radius.

        Columns: the radius (named ``radius`` for smoothing, ``T`` for ensembles),
        ``precision``, ``recall``, ``f1``, and ``method``, ``k`` and ``label``.
        """
        return pd.DataFrame({
            self._spec_radius_name(): self.radius,
            "precision": self.precision(),
            "recall": self.recall(),
            "f1": self.f1(),
            "method": self.method,
            "k": self.k,
            "label": self.name,
        })

    def plot(self, ax=None, *, label: str | None = None, **line_kwargs):
        """Certified precision, recall and f1 against the radius, in three panels.

        Parameters
        ----------
        ax : sequence of 3 matplotlib Axes, optional
            Panels to draw into (e.g. those returned by an earlier ``plot``, to
            overlay results); a new figure is made when None.
        label : str, optional
            Legend entry; defaults to the result's label or method.
        **line_kwargs
            Passed to ``Axes.plot``.

        Returns
        -------
        ndarray of 3 Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
        axes = np.asarray(ax, dtype=object).ravel()
        if axes.size != 3:
            raise ValueError(f"ax must hold 3 Axes (precision, recall, f1), got {axes.size}.")
        poisoning = self._spec_radius_name() == "T"
        xlabel = "T (poisoned training examples)" if poisoning else "l2 radius R"
        drawstyle = "steps-post" if poisoning else "default"
        for panel, metric in zip(axes, ("precision", "recall", "f1")):
            panel.plot(self.radius, getattr(self, metric)(), label=label or self.name,
                       drawstyle=drawstyle, **line_kwargs)
            panel.set_xlabel(xlabel)
            panel.set_ylabel(f"certified top-{self.k} {metric}")
            panel.set_ylim(-0.02, 1.02)
            panel.grid(True, alpha=0.3)
            panel.legend(loc="best", fontsize="small")
        return axes

    def __repr__(self) -> str:
        return (f"CertificationResult(method={self.method!r}, k={self.k}, "
                f"n_inputs={self.n_inputs}, n_radii={self.radius.size})")


def plot_certified_curves(results: Sequence[CertificationResult],
                          labels: Sequence[str] | None = None, ax=None):
    """Overlay several results (methods, sigmas, ...) in one three-panel figure.

    Parameters
    ----------
    results : sequence of CertificationResult
    labels : sequence of str, optional
        Legend entries; default to each result's label or method.
    ax : sequence of 3 Axes, optional

    Returns
    -------
    ndarray of 3 Axes
    """
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"got {len(labels)} labels for {len(results)} results.")
    for i, result in enumerate(results):
        ax = result.plot(ax=ax, label=None if labels is None else labels[i])
    return ax
