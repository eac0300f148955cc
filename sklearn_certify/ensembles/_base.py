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
from sklearn.utils.validation import check_is_fitted

from .._base import CertifiedClassifierMixin
from .._utils._docstring import CERTIFY_K_AND_LABEL, CERTIFY_MULTICLASS_NOTE, Substitution
from .._utils._memory import check_cache_memory
from .._utils._scores import has_score_method
from .._utils._validation import ATTACKS, check_choice, check_inputs

__all__ = [
    "BaseCertifiedEnsemble",
    "ENSEMBLE_DOCSTRINGS",
    "CERTIFY_DOCSTRINGS",
    "default_base_estimator",
    "split_tasks",
]

#: Docstring text the two ensembles share (:class:`~sklearn_certify._utils._docstring.
#: Substitution`): the label-count parameters, the fitted attributes ``estimator_`` and
#: those of the targets, and certify's common arguments, options and note.
ENSEMBLE_DOCSTRINGS = Substitution(
    label_params="""
    k_base : int, default=1
        Number of labels each base model votes for (``k_b``).
    k : int, default=3
        Number of labels the ensemble predicts.
""",
    estimator_attribute="""
    estimator_ : estimator
        The base estimator every model is cloned from (``estimator``, or the default
        for ``estimator=None``), unfitted, as in scikit-learn's ensembles.
""",
    fitted_targets="""
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
""",
)
CERTIFY_DOCSTRINGS = Substitution(
    certify_data="""
        X : array-like of shape (n_inputs, ...)
        Y : array-like of {0, 1}, shape (n_inputs, n_classes), or 1-D labels
            The true labels (1-D labels when ``fit`` saw 1-D targets).
        radius : int or array-like of int, default=0
            T, the numbers of poisoned training examples to certify against.
""",
    certify_options="""
        attack : {"modification", "addition", "deletion"}, default="modification"
            How the T examples are poisoned."""
    + CERTIFY_K_AND_LABEL,
    multiclass_note=CERTIFY_MULTICLASS_NOTE,
)

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

    Subclasses take the shared parameters in their ``__init__`` (stored by this one),
    implement ``fit`` (validating through ``_check_fit_data``, setting ``estimators_``,
    ``stacked_models_`` and, through ``_set_targets``, ``n_classes_``, ``classes_`` and
    ``multiclass_``) and ``_certificate_options``.
    """

    _label_params = ("k", "k_base")

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

    def __init__(
        self,
        estimator=None,
        *,
        k_base: int = 1,
        k: int = 3,
        method: str = "poisoningguard",
        vectorize: str | bool = "auto",
        n_jobs: int | None = None,
        memory=None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.k_base = k_base
        self.k = k
        self.method = method
        self.vectorize = vectorize
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose

    def _base_estimator(self):
        estimator = default_base_estimator() if self.estimator is None else self.estimator
        if not has_score_method(estimator):  # pragma: no cover - caught by constraints
            raise TypeError(
                f"{type(estimator).__name__} has neither decision_function nor "
                "predict_proba; a base estimator must score every label."
            )
        return estimator

    def _check_fit_data(self, X, y):
        """The ``memory`` cache, the validated inputs, the 0/1 target matrix and
        ``classes_`` (None if multi-label).

        Sets ``estimator_`` (the base estimator every model is cloned from, unfitted, as
        in scikit-learn's ensembles), ``input_shape_`` and, for flat inputs,
        ``n_features_in_``.
        """
        memory = check_cache_memory(self.memory)
        self._check_y(y)
        X = check_inputs(X)
        self._check_fit_samples(X)
        Y, classes = self._fit_targets(X, y)
        self._check_label_params(Y.shape[1])
        self._check_input_shape(X, reset=True)
        self.estimator_ = self._base_estimator()
        return memory, X, Y, classes

    def _parallel(self, function, tasks) -> list:
        """``function(*args)`` for each ``args`` of ``tasks``, through joblib with
        ``n_jobs`` and ``verbose``; the results in order."""
        return Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
            delayed(function)(*args) for args in tasks
        )

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
            UserWarning,
            stacklevel=3,
        )

    def _check_predict_X(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = check_inputs(X)
        self._check_input_shape(X, reset=False)
        return X

    def _label_counts(self, X):
        """Votes per label over the base models, and the number of base models."""
        return self._model_votes(
            X,
            empty=lambda n_models: np.zeros((0, self.n_classes_), dtype=np.int64),
            of_stacked=lambda stacked, X: stacked.vote_counts(X, self.k_base),
            of_models=_count_votes,
            combine=lambda parts: np.sum(parts, axis=0, dtype=np.int64),
        )

    def _model_votes(self, X, *, empty, of_stacked, of_models, combine):
        """``(votes, n_models)``: the base models' votes on the checked ``X``.

        ``empty(n_models)`` for no input; ``of_stacked(stacked_models_, X)`` for base
        models trained (or stacked) at once; otherwise ``combine`` of the parts that
        ``of_models(models, X, k_base)`` gives for chunks of the models, through joblib.
        """
        self._check_label_params(self.n_classes_)  # k or k_base may have been set after fit
        X = self._check_predict_X(X)
        n_models = len(self.estimators_)
        if X.shape[0] == 0:
            return empty(n_models), n_models
        if self.stacked_models_ is not None:  # base models trained stacked: counted at once
            return of_stacked(self.stacked_models_, X), n_models
        parts = self._parallel(
            of_models,
            (
                ([self.estimators_[i] for i in chunk], X, self.k_base)
                for chunk in split_tasks(n_models, self.n_jobs)
            ),
        )
        return combine(parts), n_models

    @staticmethod
    def _check_attack(attack) -> str:
        return check_choice(attack, "attack", ATTACKS)
