"""Bagging certified against data poisoning (PoisoningGuard Section 3.2, Theorem 1)."""

from __future__ import annotations

from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._stacked._heads import fit_base_models
from .._stacked._nets import fit_net_base_models
from .._stacked._trainers import select_trainer
from .._utils._random import spawn_seeds
from .._utils._validation import check_alpha
from ..certificates._bagging import BAGGING, BAGGING_METHODS
from ..results import CertificationResult
from ._base import CERTIFY_DOCSTRINGS, ENSEMBLE_DOCSTRINGS, BaseCertifiedEnsemble, split_tasks
from ._base_model import fallback_labels, fit_base_model

__all__ = ["BaggingCertifiedClassifier"]


def subsample_indices(seed: int, n_train: int, max_samples: int) -> np.ndarray:
    """The training rows (with repetition) of the base model with this seed.

    ``max_samples`` rows drawn uniformly with replacement from a stream of their own,
    ``numpy.random.default_rng(SeedSequence([seed, 1]))``: independent of the base
    model's training randomness (which ``fit_base_model`` draws from
    ``SeedSequence(seed)``), as Theorem 1 assumes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    return rng.integers(0, n_train, max_samples)


def _fit_subsample_models(estimator, X, Y, seeds, indices, max_samples, k_base, memory=None):
    """Fit the base models of one task; ``indices`` are their positions in the ensemble."""
    n_train, n_classes = Y.shape
    models = []
    for seed, index in zip(seeds, indices):
        rows = subsample_indices(seed, n_train, max_samples)
        models.append(
            fit_base_model(
                estimator,
                X[rows],
                Y[rows],
                seed=int(seed),
                empty_labels=fallback_labels(int(index), k_base, n_classes),
                memory=memory,
            )
        )
    return models


@ENSEMBLE_DOCSTRINGS
class BaggingCertifiedClassifier(BaseCertifiedEnsemble):
    """Multi-label bagging ensemble certified against poisoned training examples.

    PoisoningGuard-Bagging (PoisoningGuard Section 3.2). ``n_estimators`` base models
    are each trained on ``m`` training examples drawn uniformly **with replacement**
    from the ``n`` training examples; for an input, a base model votes for its
    ``k_base`` highest-scoring labels, and the ensemble predicts the ``k`` labels with
    the most votes (ties towards the lower label index). The label probability ``p_l``
    -- the chance that a base model trained on a random subsample votes for ``l`` -- is
    bounded with one-sided Clopper-Pearson intervals from the vote counts (level
    ``alpha / n_classes`` each), and Theorem 1 (Eq. 4) turns the bounds into the
    certified intersection size: how many of an input's true labels stay in the
    predicted top-k when T training examples are modified, added or deleted. The
    guarantee holds with probability at least ``1 - alpha`` per input.

    Parameters
    ----------
    estimator : estimator or None, default=None
        Multi-label base estimator with ``decision_function`` or ``predict_proba``
        (e.g. ``OneVsRestClassifier(LogisticRegression())``,
        ``MultiOutputClassifier(LogisticRegression())``, a multi-label tree, or
        :class:`sklearn_certify.nets.MultiLabelNet`). It is always fitted on a 0/1
        indicator matrix (1-D multi-class targets are one-hot encoded first). Label
        columns that are constant in a subsample are not passed to it (see Notes).
        None uses ``RidgeClassifier()``: linear least-squares scores per label, fast
        enough for thousands of base models.
    n_estimators : int, default=1000
        Number of base models (Monte-Carlo draws of the subsample).
    max_samples : int or float, default=0.1
        Subsample size ``m``: an int is used as is (it may exceed ``n``); a float in
        (0, 1] is a fraction of ``n``, rounded half up, at least 1.
    {label_params}
    alpha : float, default=0.001
        Failure probability of the certificate per input.
    method : {"poisoningguard", "bagging"}, default="poisoningguard"
        Certificate used by :meth:`certify`: Theorem 1 / Eq. 4 in full, or with t
        fixed to 1 ("bagging", Jia et al. 2021 extended to top-k).
    vectorize : {"auto", False}, default="auto"
        ``"auto"``: train all base models at once as one batched torch program when the
        base estimator allows it (see Notes); ``False``: always one by one, through
        joblib. Both give the same models up to float rounding.
    n_jobs : int or None, default=None
        Number of joblib jobs for fitting and for counting votes. None means 1 unless
        in a ``joblib.parallel_backend`` context; any backend works (loky, threading,
        Dask, ...). The fitted models do not depend on ``n_jobs`` or the backend.
    memory : None, str, path or joblib.Memory, default=None
        Cache of fitted base models (a directory or a ``joblib.Memory``, as sklearn's
        Pipeline), for base models trained one by one: each is keyed on its subsample's
        content and its seed (with the base estimator's parameters), so a refit that
        gives a model the same subsample and seed (another ``k``, ``alpha``,
        ``method``, or more ``n_estimators`` with the same ``random_state``) loads it.
        The stacked trainers (``LinearHead`` and ``MultiLabelNet`` heads with
        ``vectorize="auto"``) train all models in one program and cache nothing; with
        ``vectorize=False`` they are trained, and cached, one by one. Results are
        identical with and without it. A directory that cannot be written fails at ``fit``. See
        ``docs/model_selection.md``.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsamples and the base models' own randomness: one 64-bit seed per
        base model is derived up front by ``numpy.random.SeedSequence`` spawning, so
        that no two base models share a seed in practice (see ``seeds_``).
    verbose : int, default=0
        joblib's progress messages while fitting and counting; with vectorised
        ``MultiLabelNet`` training (see Notes), a progress bar over the base models.

    Attributes
    ----------
    {estimator_attribute}
    estimators_ : sequence of base models
        One fitted wrapper per subsample: its ``estimator_`` is the fitted clone of
        ``estimator`` (None when every label column of the subsample was constant),
        ``columns_`` the label columns it was fitted on. A list, except after
        vectorised ``MultiLabelNet`` training, where it is a read-only sequence that
        builds each fitted net when first accessed (see Notes).
    stacked_models_ : StackedModels or None
        The stacked base models when they were trained vectorised (see Notes), else
        None.
    seeds_ : ndarray of uint64, shape (n_estimators,)
        Seed of each base model: its subsample and its own randomness
        (``random_state`` parameters, torch's generator), through
        ``numpy.random.SeedSequence``. Spawned from one ``SeedSequence`` whose entropy
        is drawn from ``random_state``: the same ``random_state`` gives the same seeds.
    estimators_samples_ : list of ndarray of int
        Training rows (with repetition, in draw order) of each base model.
    n_train_ : int
        Number of training examples ``n``.
    max_samples_ : int
        Subsample size ``m``.
    {fitted_targets}

    See Also
    --------
    DPACertifiedClassifier : Deterministic certificate from hash partitions.

    Notes
    -----
    **Vectorised training** (``vectorize="auto"``). For two kinds of base estimator all base
    models are trained at once as one batched torch program on the estimator's
    ``device``, and votes are counted in one pass, with the same training rows, seeds,
    initial weights and learning rule as fitting the models one by one: the same models
    up to floating-point rounding. Votes then agree with one-by-one training in our
    tests and benchmarks; unstable training (a large learning rate, many epochs) can
    amplify rounding differences, as it amplifies a one-ulp change of the data in a
    single skorch fit, and then a few votes may differ. Either way each base model is
    trained on its own subsample by the stated learning rule, so the certificate holds
    for the trained ensemble.

    * :class:`~sklearn_certify.heads.LinearHead` (exactly that class): linear or
      one-hidden-layer heads trained by full-batch Adam.
    * :class:`~sklearn_certify.nets.MultiLabelNet` (exactly that class) with an
      :class:`~sklearn_certify.nets.MLPModule` module (any hidden widths; or
      ``module=None`` with 2-D ``X``), no dropout, ``AsymmetricLoss`` or
      ``BCEWithLogitsLoss``, an element-wise optimiser (SGD, Adam, AdamW, RMSprop,
      Adagrad, Adamax, NAdam, RAdam), ``noise_sigma=0``, ``train_split=None``, no
      callbacks and the default data loading. Each net gets skorch's initial weights,
      mini-batches and optimiser steps (see
      :mod:`sklearn_certify._stacked._nets`; a one-time check against a real
      skorch fit guards this, and falls back to one-by-one training with a warning
      when it fails). ``estimators_`` then builds each fitted skorch net on first
      access, with an empty ``history_``.

    ``stacked_models_`` holds the stacked models; ``n_jobs`` is not used for training on these
    paths. Any other estimator (subclasses and other configurations included), or
    ``vectorize=False``, is trained model by model through joblib. The batched path
    pays off when the base models are small (linear or narrow MLP heads on a few
    hundred features), where one-by-one training is dominated by per-step overhead.

    **Labels.** With 1-D multi-class targets the label space is ``np.unique(y)`` of the
    training set; the certificate then assumes the attack neither removes the last
    example of a class nor adds a new class. Pass a 2-D indicator matrix (fixed
    columns) when that cannot be assumed.

    A subsample may lack a label entirely or hold it in every example. Such a constant
    column is not passed to the base estimator (``LogisticRegression`` cannot fit one);
    the base model scores that label ``-inf`` (never present) or ``+inf`` (always
    present). This is a fixed, deterministic part of the base learning algorithm and
    depends on the subsample only, so Theorem 1 applies unchanged; every base model
    votes for exactly ``k_base`` labels. Likewise, a base model whose ``fit`` raises on
    its subsample votes for the subsample's most frequent labels (a warning says how
    many did; if all did, ``fit`` raises).

    Under addition and deletion attacks the poisoned training set has another size;
    the certificate is about an ensemble with the same subsample size ``m``
    (``max_samples_``), as in the paper.

    Examples
    --------
    >>> from sklearn_certify import BaggingCertifiedClassifier
    >>> from sklearn_certify.datasets import make_multidigit
    >>> X_train, X_test, Y_train, Y_test = make_multidigit(500, 50, random_state=0)
    >>> clf = BaggingCertifiedClassifier(n_estimators=100, max_samples=50,
    ...                                  random_state=0).fit(X_train, Y_train)
    >>> clf.predict(X_test).sum(axis=1).tolist()[:4]
    [3, 3, 3, 3]
    >>> result = clf.certify(X_test, Y_test, radius=[0, 1, 2])
    >>> result.sizes.shape
    (50, 3)
    >>> len(clf.estimators_samples_[0])
    50
    """

    _certificate = "bagging"  # its name in the certificate registry

    _parameter_constraints: dict = {
        **BaseCertifiedEnsemble._parameter_constraints,
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(RealNotInt, 0, 1, closed="right"),
        ],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "method": [StrOptions(set(BAGGING_METHODS))],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        n_estimators: int = 1000,
        max_samples: int | float = 0.1,
        k_base: int = 1,
        k: int = 3,
        alpha: float = 0.001,
        method: str = "poisoningguard",
        vectorize: str | bool = "auto",
        n_jobs: int | None = None,
        memory=None,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        super().__init__(
            estimator,
            k_base=k_base,
            k=k,
            method=method,
            vectorize=vectorize,
            n_jobs=n_jobs,
            memory=memory,
            verbose=verbose,
        )
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.alpha = alpha
        self.random_state = random_state

    def _subsample_size(self, n_train: int) -> int:
        if isinstance(self.max_samples, Integral):
            return int(self.max_samples)
        return max(1, int(np.floor(self.max_samples * n_train + 0.5)))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y) -> BaggingCertifiedClassifier:
        """Train the base models on random subsamples of ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_train, ...)
            Training inputs (flat features, or images for a base estimator that
            takes them).
        y : array-like of {0, 1}, shape (n_train, n_classes), or 1-D labels
            Multi-label indicator matrix, or multi-class labels (one-hot encoded).

        Returns
        -------
        self : BaggingCertifiedClassifier
        """
        memory, X, Y, classes = self._check_fit_data(X, y)
        n_train, n_classes = Y.shape
        estimator = self.estimator_
        max_samples = self._subsample_size(n_train)

        random_state = check_random_state(self.random_state)
        seeds = spawn_seeds(random_state, self.n_estimators)
        self.stacked_models_ = None
        trainer = select_trainer(estimator, X, self.vectorize)
        if trainer is not None:
            train_at_once = (
                fit_base_models
                if trainer == "heads"
                else partial(fit_net_base_models, verbose=self.verbose)
            )
            # All base models at once, exactly as the loop below would train them
            # (same subsamples, seeds and empty-set fallbacks).
            self.stacked_models_, models = train_at_once(
                estimator,
                X,
                Y,
                np.stack([subsample_indices(s, n_train, max_samples) for s in seeds]),
                seeds,
                [fallback_labels(i, self.k_base, n_classes) for i in range(self.n_estimators)],
            )
        else:
            parts = self._parallel(
                _fit_subsample_models,
                (
                    (estimator, X, Y, seeds[chunk], chunk, max_samples, self.k_base, memory)
                    for chunk in split_tasks(self.n_estimators, self.n_jobs)
                ),
            )
            models = [model for part in parts for model in part]
        if self.stacked_models_ is None:  # the stacked trainers have no per-model failures
            self._check_fitted_models(models)
        self.estimators_ = models
        self.seeds_ = seeds
        self.n_train_ = n_train
        self.max_samples_ = max_samples
        self._set_targets(n_classes, classes)
        return self

    @property
    def estimators_samples_(self) -> list[np.ndarray]:
        """Training rows of each base model (with repetition), regenerated from its seed."""
        check_is_fitted(self)
        return [subsample_indices(seed, self.n_train_, self.max_samples_) for seed in self.seeds_]

    @CERTIFY_DOCSTRINGS
    def certify(
        self,
        X,
        Y,
        radius=0,
        *,
        method: str | None = None,
        alpha: float | None = None,
        attack: str = "modification",
        k: int | None = None,
        label: str | None = None,
    ) -> CertificationResult:
        """Certified intersection sizes of ``X``'s true labels against T poisoned examples.

        Parameters
        ----------
        {certify_data}
        method : {"poisoningguard", "bagging"}, optional
            Overrides the ``method`` parameter for this call.
        alpha : float, optional
            Overrides the ``alpha`` parameter for this call.
        {certify_options}

        Returns
        -------
        CertificationResult

        Notes
        -----
        {multiclass_note}
        """
        return self._certify(
            X, Y, radius, k=k, label=label, method=method, alpha=alpha, attack=attack
        )

    def _certificate_options(self, *, method=None, alpha=None, attack="modification") -> dict:
        method = BAGGING.check_method(self.method if method is None else method, {})
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        return dict(
            certificate="bagging",
            method=method,
            alpha=alpha,
            k_base=self.k_base,
            n_train=self.n_train_,
            max_samples=self.max_samples_,
            attack=self._check_attack(attack),
        )
