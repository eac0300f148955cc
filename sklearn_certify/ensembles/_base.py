"""Machinery shared by the poisoning-certified ensembles (bagging and DPA).

An ensemble trains many clones of one base estimator, each on its own part of the
training set (a random subsample for bagging, a hash partition for DPA), and reduces
every input to label counts: how many base models put each label among their top
``k_base`` labels. Everything the certificates assume about the base models is
enforced here:

* **Each base model is a function of its own training examples only** (and of its
  own seed: drawn from ``random_state`` for bagging, the partition index for DPA;
  it fixes the base estimator's ``random_state`` parameters and, for torch models,
  torch's generator during training). Training runs through joblib's ``Parallel``/``delayed``
  on whatever backend is active (loky, threads, Dask, ...); seeds are drawn before
  any task starts, so the models -- and the counts -- do not depend on the backend,
  on ``n_jobs`` or on how the work is cut into tasks.
* **Every base model casts exactly ``k_base`` votes per input**, whatever it was
  trained on: the theorems count ``n_models * k_base`` votes. Base models are wrapped
  in :class:`~sklearn_certify.ensembles._base_model._ConstantAwareMultiLabel`
  (:mod:`._base_model`), which handles label columns that are constant
  in a model's training data (a label never or always present, e.g. in a small
  subsample, which estimators such as ``LogisticRegression`` cannot fit), empty
  training sets, and base estimators whose ``fit`` raises on a (tiny) training set.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from os import PathLike

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeClassifier
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from .._base import CertifiedClassifierMixin
from .._utils._docstring import Substitution
from .._utils._scores import has_score_method
from .._utils._targets import encode_fit_targets
from .._utils._validation import ATTACKS, check_choice, check_inputs, check_int

__all__ = ["BaseCertifiedEnsemble", "ENSEMBLE_DOCSTRINGS", "CERTIFY_DOCSTRINGS",
           "default_base_estimator", "split_tasks"]

#: Docstring text the two ensembles share (:class:`~sklearn_certify._utils._docstring.
#: Substitution`): the fitted target attributes, and certify's common options and note.
ENSEMBLE_DOCSTRINGS = Substitution(fitted_targets='''
    n_classes_ : int
        Number of labels.
    classes_ : ndarray
        The class labels for 1-D targets, the column indices for multi-label targets.
    multiclass_ : bool
        Whether ``fit`` saw 1-D multi-class targets.
    input_shape_ : tuple of int
        Shape of one input.
    n_features_in_ : int
        Number of features (flat 2-D inputs only).
''')
CERTIFY_DOCSTRINGS = Substitution(certify_options='''
        attack : {"modification", "addition", "deletion"}, default="modification"
            How the T examples are poisoned.
        k : int, optional
            Overrides the ``k`` parameter for this call.
        label : str, optional
            Name of the result in tables and legends.
''', multiclass_note='''
        For 1-D multi-class targets ``predict`` returns the top-1 label, while
        ``certify`` certifies the top-``k`` set: use ``k=1`` (as an estimator parameter
        or here) for the certificate of ``predict``'s label.
''')

# Tasks per joblib worker: more than one, so that progress (verbose) is visible and a
# slow task does not hold the others up; the models do not depend on it.
_TASKS_PER_WORKER = 4


def default_base_estimator():
    """The base estimator used when ``estimator=None``.

    ``RidgeClassifier()``: one least-squares linear scorer per label, fitted in closed
    form on the whole indicator matrix at once: deterministic, and fast enough for
    thousands of base models on training sets of a few hundred examples each.
    """
    return RidgeClassifier()


def split_tasks(n_items: int, n_jobs) -> list[np.ndarray]:
    """Cut ``range(n_items)`` into consecutive chunks, a few per joblib worker."""
    n_tasks = max(1, min(n_items, effective_n_jobs(n_jobs) * _TASKS_PER_WORKER))
    return [chunk for chunk in np.array_split(np.arange(n_items), n_tasks) if chunk.size]


def _count_votes(models, X, k_base: int) -> np.ndarray:
    """Sum over ``models`` of their top-k_base indicators, int64 (n_inputs, n_classes)."""
    counts = None
    for model in models:
        votes = model.top_labels(X, k_base)
        counts = votes.astype(np.int64) if counts is None else counts + votes
    return counts


class BaseCertifiedEnsemble(CertifiedClassifierMixin, BaseEstimator):
    """Parameters, validation and vote counting shared by the two ensembles.

    Gets predict, predict_proba, certify and score from
    :class:`~sklearn_certify._base.CertifiedClassifierMixin` through ``_label_counts``.

    Subclasses implement ``fit`` (validating through ``_check_fit_data``, setting
    ``estimators_`` and, through ``_set_targets``, ``n_classes_``, ``classes_`` and
    ``multiclass_``) and ``_certificate_options``.
    """

    _parameter_constraints: dict = {
        "estimator": [
            HasMethods(["fit", "decision_function"]),
            HasMethods(["fit", "predict_proba"]),
            None,
        ],
        "k_base": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [None, Integral],
        "memory": [None, str, PathLike, HasMethods(["cache"])],
        "verbose": ["verbose"],
        "vectorize": [StrOptions({"auto"}), Options(bool, {False})],
    }

    def _base_estimator(self):
        estimator = default_base_estimator() if self.estimator is None else self.estimator
        if not has_score_method(estimator):  # pragma: no cover - caught by constraints
            raise TypeError(
                f"{type(estimator).__name__} has neither decision_function nor "
                "predict_proba; a base estimator must score every label."
            )
        return estimator

    def _check_k(self, n_classes: int) -> None:
        check_int(self.k, "k", low=1, high=n_classes)
        check_int(self.k_base, "k_base", low=1, high=n_classes)

    def _check_fit_data(self, X, y):
        """Validated inputs, the 0/1 target matrix and ``classes_`` (None if multi-label).

        Sets ``estimator_`` (the base estimator every model is cloned from, unfitted, as
        in scikit-learn's ensembles), ``input_shape_`` and, for flat inputs,
        ``n_features_in_``.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X = check_inputs(X)
        if X.shape[0] == 0:
            raise ValueError("X has 0 samples; at least one training example is needed.")
        Y, classes = encode_fit_targets(y)
        if classes is not None:
            check_classification_targets(y)  # 1-D: discrete classes, not a regression target
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {Y.shape[0]}.")
        self._check_k(Y.shape[1])
        self._check_input_shape(X, reset=True)
        self.estimator_ = self._base_estimator()
        return X, Y, classes

    def _check_fitted_models(self, models) -> None:
        """Raise if every base model failed to fit; warn if some did."""
        failed = [model for model in models if model.fit_error_ is not None]
        if not failed:
            return
        if len(failed) == len(models):
            raise ValueError(
                f"the base estimator failed to fit on the training set of every base "
                f"model; first error: {failed[0].fit_error_}"
            )
        warnings.warn(
            f"{len(failed)} of {len(models)} base models could not be fitted on their "
            "training examples and vote for the most frequent labels of those examples "
            f"instead; first error: {failed[0].fit_error_}",
            UserWarning, stacklevel=3,
        )

    def _set_targets(self, n_classes: int, classes) -> None:
        self.n_classes_ = n_classes
        self.multiclass_ = classes is not None
        self.classes_ = classes if classes is not None else np.arange(n_classes)

    def _check_predict_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_inputs(X)
        self._check_input_shape(X, reset=False)
        return X

    def _label_counts(self, X):
        """Votes per label over the base models, and the number of base models."""
        self._check_k(self.n_classes_)  # k or k_base may have been set after fit
        X = self._check_predict_X(X)
        n_models = len(self.estimators_)
        if X.shape[0] == 0:
            return np.zeros((0, self.n_classes_), dtype=np.int64), n_models
        if self.stacked_models_ is not None:  # base models trained stacked: counted at once
            return self.stacked_models_.vote_counts(X, self.k_base), n_models
        chunks = split_tasks(n_models, self.n_jobs)
        parts = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(_count_votes)([self.estimators_[i] for i in chunk], X, self.k_base)
            for chunk in chunks
        )
        return np.sum(parts, axis=0, dtype=np.int64), n_models

    @staticmethod
    def _check_attack(attack) -> str:
        return check_choice(attack, "attack", ATTACKS)
