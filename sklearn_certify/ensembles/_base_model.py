"""One base model of a poisoning-certified ensemble, and how it is trained.

Everything the certificates assume about a single base model lives here:

* **it is a function of its own training examples only** (and of its own seed, which
  fixes the base estimator's ``random_state`` parameters and, for torch models, torch's
  generator during training: :func:`derived_seeds`, :func:`fit_base_model`);
* **it casts exactly ``k_base`` votes per input**, whatever it was trained on:
  :class:`_ConstantAwareMultiLabel` handles label columns that are constant in its
  training data, empty training sets and base estimators whose ``fit`` raises, and
  scores labels with identical training columns alike (:func:`tied_columns`), so that
  exact ties break to the lower label whatever the batch.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._utils._keys import fit_key
from .._utils._memory import cached_call, data_key
from .._utils._random import SEED_HIGH, model_random_state
from .._utils._scores import (
    check_no_nan_scores,
    label_scores,
    positive_class_scores,
    top_k_indicator,
)
from .._utils._torch_seed import estimator_devices, seeded_torch

__all__ = [
    "_ConstantAwareMultiLabel",
    "derived_seeds",
    "fallback_labels",
    "fit_base_model",
    "random_state_params",
    "set_random_states",
    "tied_columns",
]


def fallback_labels(index: int, k_base: int, n_classes: int) -> np.ndarray:
    """The ``k_base`` labels a base model trained on no examples votes for.

    Model ``index`` votes for labels ``(index * k_base + i) % n_classes`` for
    ``i = 0 .. k_base - 1``: a fixed rule that does not look at any training data, so
    it cannot be influenced by poisoning, and that spreads the votes of several empty
    models over all labels rather than piling them on labels ``0 .. k_base - 1``.
    """
    return (index * k_base + np.arange(k_base)) % n_classes


def tied_columns(Y) -> np.ndarray:
    """For each label column of a training set, the first column identical to it.

    ``Y`` is a model's 0/1 training label matrix (n, c). Returns int64 (c,): entry j is
    the lowest index i with ``Y[:, i] == Y[:, j]`` (j itself when no earlier column is
    identical). A base model scores every column by its entry's score
    (:class:`_ConstantAwareMultiLabel`), so labels it cannot tell apart tie exactly and
    the tie goes to the lower label index, whatever the float rounding of the scores
    (which can depend on the batch an input is scored in). A function of the model's own
    training labels only. Without training rows no two columns are tied (the empty-set
    votes tell them apart).
    """
    Y = np.asarray(Y)
    n_classes = Y.shape[1]
    out = np.arange(n_classes, dtype=np.int64)
    if Y.shape[0] == 0:
        return out
    columns = np.ascontiguousarray(Y.T != 0)
    first: dict[bytes, int] = {}
    for j in range(n_classes):
        out[j] = first.setdefault(columns[j].tobytes(), j)
    return out


def set_random_states(estimator, random_state) -> None:
    """Fix every ``random_state`` parameter of ``estimator`` from ``random_state``.

    As scikit-learn's bagging does: the parameters named ``random_state`` or ending in
    ``__random_state`` (sorted by name) get integers drawn from ``random_state``.
    """
    random_state = check_random_state(random_state)
    to_set = {key: int(random_state.randint(SEED_HIGH)) for key in random_state_params(estimator)}
    if to_set:
        estimator.set_params(**to_set)


def random_state_params(estimator) -> list[str]:
    """The parameters named ``random_state`` or ending in ``__random_state``, sorted."""
    return [
        key
        for key in sorted(estimator.get_params(deep=True))
        if key == "random_state" or key.endswith("__random_state")
    ]


class _ConstantAwareMultiLabel(BaseEstimator):
    """A multi-label base model that also fits constant label columns and no data.

    ``fit(X, Y)`` fits a clone of ``estimator`` on the label columns of ``Y`` that take
    both values in this training set. The other columns get a constant score: ``+inf``
    for a label present in every training example, ``-inf`` for a label absent from
    all of them. With no training example at all, the model scores ``+inf`` for the
    ``empty_labels`` and ``-inf`` for every other label. Scores are then ranked as
    usual (ties towards the lower label index), so the model always yields exactly
    ``k_base`` labels.

    Label columns that are identical in the training labels cannot be told apart by
    the training data: every such column is scored by the score of the first of them
    (``tied_to_``), so they tie exactly and the tie goes to the lower label index,
    whatever the float rounding of the estimator's scores. Rounding can depend on the
    batch an input is scored in (a matrix product of 1 or 80 rows sums in another
    order); with exact ties an input's votes do not depend on the other inputs.

    If ``estimator.fit`` raises on this training set (e.g. a tiny one), the error is
    kept in ``fit_error_`` and the non-constant labels are scored by their frequency
    in the training set instead; the ensemble warns about such models, and raises
    when every base model failed. Resource errors are not failures on the data and
    propagate (with a hint to use fewer workers or a smaller batch): host
    ``MemoryError``, ``torch.OutOfMemoryError`` and torch's device-side errors
    (``torch.AcceleratorError``, or a ``RuntimeError`` naming a CUDA error). Falling
    back on them would make a model depend on the machine's memory state, not only
    on its training data.

    These are deterministic learning rules that depend on the model's own training
    data only, so the certificates' assumptions are untouched. It also means the base
    estimator never sees a constant column, which ``LogisticRegression`` (alone or in a
    ``MultiOutputClassifier``) cannot fit.

    Parameters
    ----------
    estimator : estimator
        A multi-label estimator with ``decision_function`` or ``predict_proba``, fitted
        on a 0/1 indicator matrix with one or more columns.
    empty_labels : array-like of int, default=()
        Labels voted for when trained on no examples.
    seed : int or None, default=None
        For a torch/skorch estimator, training runs with torch's global generator
        seeded with this value (in a forked generator state, so the caller's torch
        state is left alone); this makes such base models reproducible. None: unseeded.

    Attributes
    ----------
    estimator_ : estimator or None
        The fitted clone; None when every column was constant, there was no data, or
        fitting failed.
    columns_ : ndarray of int
        The non-constant label columns, those ``estimator_`` was fitted on.
    constant_scores_ : ndarray of float, shape (n_classes,)
        Fixed score of each label not scored by ``estimator_``: +inf or -inf for the
        constant columns, the training frequency when fitting failed; NaN for the
        columns ``estimator_`` scores.
    fit_error_ : str or None
        The error ``estimator.fit`` raised, if any.
    tied_to_ : ndarray of int, shape (n_classes,)
        For each label, the first label with the same column in the training labels
        (see :func:`tied_columns`); the label is scored by that label's score.
    n_classes_ : int
    n_samples_fit_ : int
        Number of training examples seen.
    """

    def __init__(self, estimator, empty_labels=(), seed=None):
        self.estimator = estimator
        self.empty_labels = empty_labels
        self.seed = seed

    def fit(self, X, Y):
        Y = np.asarray(Y)
        n_samples, n_classes = Y.shape
        self.n_classes_ = n_classes
        self.n_samples_fit_ = n_samples
        scores = np.full(n_classes, -np.inf)
        if n_samples == 0:
            scores[np.asarray(self.empty_labels, dtype=np.int64)] = np.inf
            self.columns_ = np.zeros(0, dtype=np.int64)
        else:
            constant = np.all(Y == Y[:1], axis=0)
            scores[constant & (Y[0] == 1)] = np.inf
            self.columns_ = np.flatnonzero(~constant)
            scores[self.columns_] = np.nan
        self.tied_to_ = tied_columns(Y)
        self.estimator_ = None
        self.fit_error_ = None
        if self.columns_.size:
            estimator = clone(self.estimator)
            try:
                with _seeded_torch(self.seed, estimator), warnings.catch_warnings():
                    # A single fitted column is passed as an (n, 1) matrix, which
                    # single-output estimators such as RidgeClassifier accept with a
                    # DataConversionWarning.
                    warnings.simplefilter("ignore", DataConversionWarning)
                    estimator.fit(X, Y[:, self.columns_])
                self.estimator_ = estimator
            except Exception as exc:  # any failure of the base estimator on this data ...
                if _is_resource_error(exc):  # ... but not of the machine: see the class doc
                    _add_resource_hint(exc)
                    raise
                # Fall back to this training set's label frequencies (see class doc).
                self.fit_error_ = f"{type(exc).__name__}: {exc}"
                scores[self.columns_] = Y[:, self.columns_].mean(axis=0)
        self.constant_scores_ = scores
        return self

    def _set_fitted(self, constant_scores, n_samples: int, estimator_=None, tied_to=None):
        """The fitted state ``fit`` sets, from parts trained elsewhere (the vectorised
        trainers): ``columns_`` are the NaN entries of ``constant_scores``,
        ``estimator_`` the estimator fitted on them (None if there are none) and
        ``tied_to`` the :func:`tied_columns` of the training labels (None: no ties)."""
        self.constant_scores_ = np.array(constant_scores, dtype=np.float64)
        self.n_classes_ = len(self.constant_scores_)
        self.tied_to_ = (
            np.arange(self.n_classes_, dtype=np.int64)
            if tied_to is None
            else np.asarray(tied_to, dtype=np.int64).copy()
        )
        self.n_samples_fit_ = int(n_samples)
        self.columns_ = np.flatnonzero(np.isnan(self.constant_scores_))
        self.estimator_ = estimator_
        self.fit_error_ = None
        return self

    def decision_function(self, X) -> np.ndarray:
        """Label scores of shape (n_inputs, n_classes); constant columns are +-inf.

        Errors of the fitted estimator's ``decision_function``/``predict_proba``
        propagate.
        """
        check_is_fitted(self, "constant_scores_")
        n_inputs = len(X)
        out = np.tile(self.constant_scores_, (n_inputs, 1))
        if self.estimator_ is not None and n_inputs:
            scores = label_scores(self.estimator_, X)
            if self.columns_.size == 1 and scores.shape == (n_inputs, 2):
                scores = positive_class_scores(self.estimator_, scores)
            if scores.shape != (n_inputs, self.columns_.size):
                raise ValueError(
                    f"the base estimator {type(self.estimator_).__name__}, fitted on "
                    f"{self.columns_.size} label column(s), returned scores of shape "
                    f"{scores.shape} for {n_inputs} inputs; it must score every column "
                    "of the indicator matrix it was fitted on."
                )
            out[:, self.columns_] = scores
        tied_to = getattr(self, "tied_to_", None)  # absent from models pickled before it
        return out if tied_to is None else out[:, tied_to]

    def top_labels(self, X, k_base: int) -> np.ndarray:
        """Boolean (n_inputs, n_classes): the top-k_base labels, ties to the lower index.

        A NaN score (a broken base model) cannot be ranked and raises a ``ValueError``
        naming the inputs and labels affected.
        """
        scores = self.decision_function(X)
        check_no_nan_scores(scores)  # a broken base model: refused, not ranked
        return top_k_indicator(scores, k_base)


_RESOURCE_HINT = (
    "The base estimator ran out of a machine resource (memory or the accelerator), "
    "which says nothing about its training data, so the ensemble does not fall back "
    "to label frequencies. Use fewer parallel workers (n_jobs), a smaller batch size, "
    "or a smaller model."
)


def _is_resource_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure of the machine rather than of the training data.

    Host ``MemoryError``; ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``
    on older torch); device-side errors: ``torch.AcceleratorError`` where torch has it,
    else a ``RuntimeError`` whose message names a CUDA error ("CUDA error: ...",
    "CUDA out of memory", cuDNN/cuBLAS status errors).
    """
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    kinds = tuple(
        kind
        for kind in (
            getattr(torch, "OutOfMemoryError", None),
            getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None),
            getattr(torch, "AcceleratorError", None),
        )
        if isinstance(kind, type)
    )
    if kinds and isinstance(exc, kinds):
        return True
    message = str(exc)
    return isinstance(exc, RuntimeError) and any(
        marker in message
        for marker in (
            "CUDA error",
            "CUDA driver error",
            "CUDA out of memory",
            "CUDNN_STATUS_",
            "CUBLAS_STATUS_",
        )
    )


def _add_resource_hint(exc: BaseException) -> None:
    """Attach :data:`_RESOURCE_HINT` to ``exc`` (shown under its traceback)."""
    if hasattr(exc, "add_note"):  # Python >= 3.11
        if _RESOURCE_HINT not in getattr(exc, "__notes__", ()):
            exc.add_note(_RESOURCE_HINT)
    else:  # pragma: no cover - Python 3.10
        exc.args = (f"{exc.args[0] if exc.args else ''} {_RESOURCE_HINT}".strip(), *exc.args[1:])


def _uses_torch(estimator) -> bool:
    """Whether ``estimator`` is (or contains) a torch/skorch model.

    Looks at the classes of the estimator and of its parameters (one level deep, e.g.
    a skorch net in a Pipeline or a wrapper).
    """
    objects = [estimator]
    if hasattr(estimator, "get_params"):
        objects += list(estimator.get_params(deep=True).values())
    return any(
        cls.__module__.split(".")[0] in ("torch", "skorch")
        for obj in objects
        for cls in type(obj).__mro__
    )


def _seeded_torch(seed, estimator):
    """For torch models, train with torch's generators seeded (and restored after).

    The CPU generator and those of the CUDA devices the estimator trains on (its
    ``device`` parameters). Does nothing for other estimators, or when ``seed`` is None.
    """
    if seed is None or "torch" not in sys.modules or not _uses_torch(estimator):
        return nullcontext()
    return seeded_torch(seed, estimator_devices(estimator))


def derived_seeds(seed: int, n_random_states: int) -> tuple[list[int], int]:
    """The seeds one base model's ``seed`` gives it, as :func:`fit_base_model` uses them.

    From ``model_random_state(seed)``: first one seed per ``random_state`` parameter of
    the base estimator (sorted by name, see :func:`set_random_states`), then the seed of
    torch's generator during training. The stacked trainers derive their seeds here too,
    so that they make the same models.
    """
    rng = model_random_state(seed)
    params = [int(rng.randint(SEED_HIGH)) for _ in range(n_random_states)]
    return params, int(rng.randint(SEED_HIGH))


def fit_base_model(
    estimator, X, Y, *, seed: int, empty_labels, memory=None
) -> _ConstantAwareMultiLabel:
    """Fit one base model on ``(X, Y)``, its randomness fixed by ``seed``.

    The one function that trains a base model one by one (bagging and DPA, any joblib
    backend). ``seed`` sets the base estimator's ``random_state`` parameters (as in
    scikit-learn's bagging) and torch's generator during training (see
    :func:`derived_seeds`); ``empty_labels`` are the votes of a model without examples
    (see :func:`fallback_labels`). With ``memory`` (a joblib.Memory from
    :func:`sklearn_certify._utils._memory.check_cache_memory`) the fitted model is cached,
    keyed on the base estimator's class and parameters, the content of ``X`` and ``Y``
    and ``seed``: a model trained on the same examples with the same seed is loaded,
    not trained again.
    """

    def train():
        clone_ = clone(estimator)
        names = random_state_params(clone_)
        param_seeds, torch_seed = derived_seeds(seed, len(names))
        if names:
            clone_.set_params(**dict(zip(names, param_seeds)))
        model = _ConstantAwareMultiLabel(clone_, empty_labels=empty_labels, seed=torch_seed)
        return model.fit(X, Y)

    if memory is None or len(Y) == 0:  # an empty training set trains nothing
        return train()
    key = fit_key("ensemble-base-model", estimator, data_key(X), data_key(Y), int(seed))
    if key is None:
        return train()
    model = cached_call(
        memory,
        "fit",
        key,
        train,
        check=lambda m: (
            isinstance(m, _ConstantAwareMultiLabel)
            and m.n_samples_fit_ == len(Y)
            and m.n_classes_ == np.shape(Y)[1]
            and hasattr(m, "tied_to_")
        ),
    )  # entries cached before tied_to_ existed: refit
    model.empty_labels = empty_labels  # used only without training examples
    return model
