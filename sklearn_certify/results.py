"""CertificationResult: certified sizes over radii, with the counts behind them.

Sampling (noisy forward passes, or training an ensemble) is the expensive part of
certification; the certificate math is cheap. A result therefore keeps the label
counts and can be re-certified for other radii, k, alpha or method without sampling
again (:meth:`CertificationResult.recertify`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._plotting import plot_certified_curves, plot_result
from ._result_io import load_result, save_result
from ._utils._validation import check_int
from .certificates import CERTIFICATES, certificate_spec
from .certificates._from_counts import certify_counts
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
    certificate : str, optional
        Which theorem produced the sizes: a name in
        :data:`sklearn_certify.certificates.CERTIFICATES` ("gaussian", "bagging", "dpa").
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
    n_draws_used : array-like of int, shape (n_inputs,), optional
        Draws (or base models) actually spent on each input: fewer than ``n_draws``
        where sequential certification stopped early. Defaults to ``n_draws`` for
        every input.
    alpha_share : array-like of float, shape (n_inputs,), optional
        Sequential certification only: the share of ``alpha`` at which each input's
        bounds were computed (that of the stage it stopped at; see
        ``docs/sequential.md``). None for a fixed number of draws (share 1).

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

    def __init__(
        self,
        sizes,
        radius,
        k,
        n_true,
        *,
        Y=None,
        certificate=None,
        method=None,
        counts=None,
        n_draws=None,
        alpha=None,
        lower=None,
        upper=None,
        params=None,
        label=None,
        n_draws_used=None,
        alpha_share=None,
    ):
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
        if n_draws_used is None and n_draws is not None:
            n_draws_used = np.broadcast_to(n_draws, self.n_true.shape)
        self.n_draws_used = (
            None if n_draws_used is None else np.array(n_draws_used, dtype=np.int64).reshape(-1)
        )
        self.alpha_share = (
            None if alpha_share is None else np.array(alpha_share, dtype=np.float64).reshape(-1)
        )

    @classmethod
    def from_counts(
        cls,
        counts,
        Y,
        radius,
        *,
        certificate: str,
        k: int,
        method: str,
        n_draws: int | None = None,
        alpha: float | None = None,
        label: str | None = None,
        n_draws_used=None,
        alpha_share=None,
        **params,
    ) -> CertificationResult:
        """Certify from label counts with one of the pure certificate functions.

        Parameters
        ----------
        counts : array-like of int, shape (n_inputs, n_classes)
        Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        radius : float, int or array-like
        certificate : str
            A name in :data:`sklearn_certify.certificates.CERTIFICATES` ("gaussian",
            "bagging", "dpa").
        k : int
        method : str
            A method of that certificate function.
        n_draws : int
            Draws / base models behind ``counts`` (needed by the sampled certificates,
            "gaussian" and "bagging").
        alpha : float
            Failure probability (needed by the sampled certificates).
        label : str, optional
        n_draws_used : array-like of int, shape (n_inputs,), optional
            The draws behind each row of ``counts`` (each at most ``n_draws``), when
            they are not ``n_draws`` for every input. The bounds of each input are then
            computed from its own number of draws: at the full ``alpha`` when
            ``alpha_share`` is None, which is only sound when the number of draws of an
            input was fixed in advance, not chosen by looking at its counts. An input
            with 0 draws gets the vacuous bounds 0 and 1.
        alpha_share : array-like of float in (0, 1], shape (n_inputs,), optional
            Sequential certification: the share of ``alpha`` of the stage each input
            stopped at (needs ``n_draws_used``); its bounds are taken at
            ``alpha * alpha_share``.
        **params
            The certificate function's remaining keyword arguments.
        """
        counts, Y = np.asarray(counts), np.asarray(Y)
        radii = np.atleast_1d(np.asarray(radius))
        sizes, lower, upper, n_draws_used, alpha_share = certify_counts(
            certificate_spec(certificate),
            counts,
            Y,
            radii,
            k=k,
            method=method,
            n_draws=n_draws,
            alpha=alpha,
            n_draws_used=n_draws_used,
            alpha_share=alpha_share,
            params=params,
        )
        return cls(
            sizes,
            radii,
            k,
            Y.sum(axis=1),
            Y=Y,
            certificate=certificate,
            method=method,
            counts=counts,
            n_draws=n_draws,
            alpha=alpha,
            lower=lower,
            upper=upper,
            params=params,
            label=label,
            n_draws_used=n_draws_used,
            alpha_share=alpha_share,
        )

    def recertify(
        self,
        radius=None,
        *,
        k: int | None = None,
        alpha: float | None = None,
        method: str | None = None,
        label: str | None = None,
        **params,
    ) -> CertificationResult:
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

        Notes
        -----
        A sequential result's bounds are recomputed per input from its counts,
        ``n_draws_used`` and ``alpha_share``: a new ``alpha`` is split over the stages
        with the same shares, so the certificates keep their ``1 - alpha`` guarantee
        (``docs/sequential.md``). A result with per-input ``n_draws_used`` and no
        ``alpha_share`` is recomputed from each input's own draws at the full alpha.
        """
        if self.counts is None or self.Y is None or self.certificate is None:
            raise ValueError(
                "this result does not keep counts and labels; it cannot be re-certified."
            )
        spec = certificate_spec(self.certificate)
        spec.check_recertify(self.params, params, alpha)
        return CertificationResult.from_counts(
            self.counts,
            self.Y,
            self.radius if radius is None else radius,
            certificate=self.certificate,
            k=self.k if k is None else k,
            method=self.method if method is None else method,
            n_draws=self.n_draws,
            alpha=self.alpha if alpha is None else alpha,
            label=label,
            **self._sequential_state(),
            **{**self.params, **params},
        )

    def _sequential_state(self) -> dict:
        """The per-input draws and alpha shares a result's bounds need (none when every
        input took ``n_draws`` at the full alpha)."""
        if self.alpha_share is not None:
            return {"n_draws_used": self.n_draws_used, "alpha_share": self.alpha_share}
        if self.n_draws_used is None or np.all(self.n_draws_used == self.n_draws):
            return {}
        return {"n_draws_used": self.n_draws_used}

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

    def certified_radius(self, size: int = 1) -> np.ndarray:
        """Per input, the largest attack at which ``size`` true labels stay certified.

        For each input, the supremum of the radii at which at least ``size`` of its true
        labels are certified (computed from this result's own bounds or vote counts,
        not from the radii it was certified at), and 0 where even radius 0 is not
        certified or the input has fewer than ``size`` true labels. For smoothing it is
        an l2 radius R found by bisection on the monotone certificate, from below: R
        is itself certified (the certificate computed at R reaches ``size``), and the
        supremum R* lies within a relative 1e-13 above it, ``R <= R* <= R (1 + 1e-13)``
        (the bisection stops once its bracket is that narrow; R / sigma is then stepped
        down by a few units in the last place if it rounds above the certified shift).
        For ``k = k' = 1`` it is Cohen et al.'s
        ``sigma/2 (Phi^-1(a) - Phi^-1(min(b, 1 - a)))``, up to the rounding of the
        certificate's own arithmetic (within 2e-10 relative on random bounds). For the
        ensembles it is the largest certified T, a whole number (0 both for an input
        certified at T = 0 only and for one not certified at all: the certificate at
        radius 0 tells them apart). Inputs whose trivial bound ``k - (n_classes - |L|)``
        reaches ``size`` are certified at every radius: ``inf``.

        Parameters
        ----------
        size : int, default=1
            Number of true labels that must stay in the top-k.

        Returns
        -------
        ndarray of float, shape (n_inputs,)
        """
        size = check_int(size, "size", low=1)
        if not self._has_radius_inputs():
            raise ValueError(
                "this result does not keep its labels and bounds (or counts); its "
                "certified radii cannot be computed."
            )
        return certificate_spec(self.certificate).certified_radius(
            self.Y,
            k=self.k,
            method=self.method,
            params=self.params,
            lower=self.lower,
            upper=self.upper,
            counts=self.counts,
            size=size,
        )

    def _has_radius_inputs(self) -> bool:
        """Whether the labels and the bounds (or DPA's counts) behind the sizes are kept."""
        spec = CERTIFICATES.get(self.certificate)
        if self.Y is None or spec is None:
            return False
        return (self.lower if spec.sampled else self.counts) is not None

    def average_certified_radius(self, size: int = 1) -> float:
        """Mean of :meth:`certified_radius` over inputs with at least one true label.

        Misclassified and uncertified inputs count as 0, as in the smoothing
        literature's average certified radius (ACR).
        """
        radii = self.certified_radius(size)[self.n_true > 0]
        return float(radii.mean()) if radii.size else float("nan")

    def summary(self, size: int = 1) -> pd.Series:
        """The whole result in one line: what :meth:`to_frame` does not show per radius.

        Returns
        -------
        pandas.Series
            ``label``, ``method``, ``k``, ``n_inputs``, ``mean_draws_used`` (mean of
            :attr:`n_draws_used`, NaN when unknown) and ``average_certified_radius``
            (:meth:`average_certified_radius` at ``size``; NaN when the result keeps
            no bounds to compute it from).
        """
        used = self.n_draws_used
        acr = self.average_certified_radius(size) if self._has_radius_inputs() else float("nan")
        return pd.Series(
            {
                "label": self.name,
                "method": self.method,
                "k": self.k,
                "n_inputs": self.n_inputs,
                "mean_draws_used": float(used.mean())
                if used is not None and used.size
                else float("nan"),
                "average_certified_radius": acr,
            },
            name=self.name,
        )

    def _radius_display(self) -> tuple[str, str, bool]:
        """The radius's column name, axis label and whether it is a whole number (steps
        in plots), from the certificate's spec (an l2 radius when there is none)."""
        spec = CERTIFICATES.get(self.certificate)
        if spec is None:
            return "radius", "l2 radius R", False
        return spec.radius_name, spec.radius_label, spec.integer_radius

    def to_frame(self) -> pd.DataFrame:
        """A tidy table, one row per radius.

        Columns: the radius (named ``radius`` for smoothing, ``T`` for ensembles),
        ``precision``, ``recall``, ``f1``, and ``method``, ``k`` and ``label``.
        """
        return pd.DataFrame(
            {
                self._radius_display()[0]: self.radius,
                "precision": self.precision(),
                "recall": self.recall(),
                "f1": self.f1(),
                "method": self.method,
                "k": self.k,
                "label": self.name,
            }
        )

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
        return plot_result(self, ax, label=label, **line_kwargs)

    def __repr__(self) -> str:
        return (
            f"CertificationResult(method={self.method!r}, k={self.k}, "
            f"n_inputs={self.n_inputs}, n_radii={self.radius.size})"
        )
