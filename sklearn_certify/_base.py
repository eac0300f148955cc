"""Behaviour shared by the three certified classifiers.

A certified classifier reduces every input to label counts: how many of ``n_draws``
base predictions (noisy copies through one model, or one copy through many models)
put each label in their top-k'. From the counts follow the prediction (top-k by
count), the label-probability estimates (counts / n_draws) and, with the pure
functions of :mod:`sklearn_certify.certificates`, the certificate.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._utils._scores import top_k_indicator
from ._utils._targets import encode_fit_targets, encode_targets
from ._utils._validation import check_alpha_level, check_label_count, reject_bool_params
from .certificates import certificate_spec
from .results import CertificationResult


class CertifiedClassifierMixin(ClassifierMixin, metaclass=ABCMeta):
    """Mixin for certified multi-label classifiers built on label counts (an ABC).

    Subclasses name their certificate in the registry (class attribute
    ``_certificate``, e.g. ``"gaussian"``), implement ``_label_counts(X) -> (counts,
    n_draws)``,
    ``_certificate_options(**options) -> dict`` (keyword arguments of
    :meth:`CertificationResult.from_counts` other than counts, Y, radius and k) and a
    ``certify`` with their own keyword arguments that calls ``_certify``, and
    set in ``fit`` (through :meth:`_set_targets`): ``n_classes_``, ``classes_`` and
    ``multiclass_`` (whether ``fit`` saw 1-D targets). ``classes_`` holds the labels for
    1-D targets and ``np.arange(n_classes_)``, the column indices, for multi-label
    targets. ``_label_params`` names the parameters that count labels (``k``, ...).
    """

    #: Parameters that count labels: integers in [1, n_classes_], checked at ``fit``
    #: and again before use (they may be set after ``fit``).
    _label_params: tuple[str, ...] = ("k",)

    @abstractmethod
    def _label_counts(self, X):
        """``(counts, n_draws)``: each label's count among the base predictions."""

    def _certify_counts(self, X, spec: dict):
        """The counts ``certify`` certifies: ``_label_counts`` unless a certificate
        needs more (DPA's Finite Aggregation needs every model's votes)."""
        return self._label_counts(X)

    @abstractmethod
    def _certificate_options(self, **options) -> dict:
        """The certificate's keyword arguments for
        :meth:`CertificationResult.from_counts`, checked (before any sampling)."""

    @abstractmethod
    def certify(self, X, Y, radius=0.0, **options) -> CertificationResult:
        """Certified sizes of ``X``'s true labels ``Y`` at each radius; the
        estimator's own keyword options, then :meth:`_certify`."""

    def _validate_params(self):
        """scikit-learn's parameter validation, with bools refused for numeric parameters."""
        super()._validate_params()
        reject_bool_params(self)

    def _check_input_shape(self, X, *, reset: bool) -> None:
        """Record (``reset``, at fit) or check the shape of one input, ``X.shape[1:]``.

        Sets ``input_shape_`` and, for flat inputs, ``n_features_in_``.
        """
        shape = tuple(int(s) for s in X.shape[1:])
        if reset:
            self.input_shape_ = shape
            if len(shape) == 1:
                self.n_features_in_ = shape[0]
            elif hasattr(self, "n_features_in_"):
                del self.n_features_in_
            return
        if shape != self.input_shape_:
            if len(shape) == 1 and len(self.input_shape_) == 1:
                raise ValueError(
                    f"X has {shape[0]} features, but {type(self).__name__} is expecting "
                    f"{self.input_shape_[0]} features as input."
                )
            raise ValueError(
                f"X has inputs of shape {shape}, but {type(self).__name__} was fitted on "
                f"inputs of shape {self.input_shape_}."
            )

    def _check_label_params(self, n_classes: int) -> None:
        """Every parameter of ``_label_params`` an integer in [1, n_classes]."""
        for name in self._label_params:
            check_label_count(getattr(self, name), name, n_classes)

    def _check_fitted_params(self) -> None:
        """Fitted, and the parameters (which may have been set since ``fit``) valid."""
        check_is_fitted(self)
        self._validate_params()
        self._check_label_params(self.n_classes_)

    # --------------------------------------------------------------------- fit data
    def _check_y(self, y) -> None:
        """Refuse ``y=None`` (scikit-learn's message)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )

    @staticmethod
    def _check_fit_samples(X) -> None:
        """Refuse a training set with no example."""
        if len(X) == 0:
            raise ValueError("fit needs at least one input; X has 0 rows.")

    @staticmethod
    def _fit_targets(X, y) -> tuple[np.ndarray, np.ndarray | None]:
        """The 0/1 target matrix of ``y`` and its classes (None for a label matrix),
        with one row per input of ``X``."""
        Y, classes = encode_fit_targets(y)
        if classes is not None:
            check_classification_targets(y)  # 1-D: discrete classes, not a regression target
        if len(Y) != len(X):
            raise ValueError(f"X has {len(X)} inputs but Y has {len(Y)} rows; they must match.")
        return Y, classes

    def _set_targets(self, n_classes: int, classes) -> None:
        """Set ``n_classes_``, ``multiclass_`` and ``classes_`` (see the class)."""
        self.n_classes_ = n_classes
        self.multiclass_ = classes is not None
        self.classes_ = classes if classes is not None else np.arange(n_classes)

    # ------------------------------------------------------------------ certificates
    def _encoded_targets(self, Y) -> np.ndarray:
        classes = self.classes_ if self.multiclass_ else None
        return encode_targets(Y, classes, self.n_classes_)

    def predict(self, X):
        """The certified classifier's top-k labels.

        Parameters
        ----------
        X : array-like of shape (n_inputs, ...)

        Returns
        -------
        ndarray
            For multi-label targets a 0/1 int matrix (n_inputs, n_classes) with exactly
            k ones per row (ties broken towards the lower label index). For 1-D
            multi-class targets, the top-1 label from ``classes_`` per input.
        """
        check_is_fitted(self)
        counts, _ = self._label_counts(X)
        if self.multiclass_:
            return self.classes_[np.argmax(counts, axis=1)] if len(counts) else self.classes_[:0]
        return top_k_indicator(counts, self.k).astype(np.int64)

    def predict_proba(self, X):
        """Estimated label probabilities ``p_i = counts_i / n_draws``.

        Each row sums to k' (``k_prime`` or ``k_base``): ``p_i`` is the probability
        that label i is among a base prediction's top labels.

        Returns
        -------
        ndarray of float, shape (n_inputs, n_classes)
        """
        check_is_fitted(self)
        counts, n_draws = self._label_counts(X)
        return counts / float(n_draws)

    def _checked_certify_args(self, Y, k, options: dict):
        """``(Y, k, spec)`` of a ``certify`` call, checked before any sampling: the
        encoded true labels, ``k`` (the parameter when None) and the certificate's
        options (:meth:`_certificate_options`)."""
        check_is_fitted(self)
        Y = self._encoded_targets(Y)
        k = self.k if k is None else k
        check_label_count(k, "k", self.n_classes_)
        return Y, k, self._certificate_options(**options)

    def _check_alpha_level(self, spec: dict, share=None) -> None:
        """Refuse an ``alpha`` whose per-label level (times ``share``, the part of it a
        stage of a sequential run gets) is too small for valid bounds."""
        if spec.get("alpha") is not None:
            level = certificate_spec(spec["certificate"]).bound_alpha(spec["alpha"], spec["method"])
            check_alpha_level(level if share is None else level * share, self.n_classes_)

    @staticmethod
    def _check_n_inputs(X, Y) -> None:
        if hasattr(X, "__len__") and len(X) != Y.shape[0]:
            raise ValueError(f"X has {len(X)} inputs but Y has {Y.shape[0]} rows.")

    def _certify(self, X, Y, radius, *, k=None, label=None, **options) -> CertificationResult:
        """The work of every estimator's ``certify``; ``options`` go to
        ``_certificate_options`` (checked before the costly sampling)."""
        Y, k, spec = self._checked_certify_args(Y, k, options)
        self._check_alpha_level(spec)  # the checks before the costly sampling
        self._check_n_inputs(X, Y)
        counts, n_draws = self._certify_counts(X, spec)
        return CertificationResult.from_counts(
            counts, Y, radius, k=k, n_draws=n_draws, label=label, **spec
        )

    def score(self, X, y, sample_weight=None) -> float:
        """Mean certified f1 at radius 0 (``2e / (|L| + k)``), for model selection.

        ``y`` holds the true labels, as in :meth:`certify`.
        """
        if sample_weight is not None:
            raise ValueError("score does not support sample_weight.")
        return float(self.certify(X, y, 0).f1()[0])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        return tags
