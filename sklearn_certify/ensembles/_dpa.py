"""Deep Partition Aggregation certified against data poisoning.

PoisoningGuard Section 3.3, Theorem 2: base models trained on disjoint partitions of
the training set chosen by a content hash of each example.

Partitions follow :mod:`sklearn_certify.ensembles._partitions` (a content hash of each
example, the same in every process and on every machine).

Finite Aggregation (``spread = d > 1``)
---------------------------------------
The same hash, modulo ``n_partitions * d``, puts each example in one of that many
buckets; there are as many base models, model j trained on the buckets
``(j - s) % (n_partitions * d)`` for the ``d`` shifts ``s`` of
:func:`~sklearn_certify.certificates._finite_aggregation.spread_shifts` (Wang, Levine
& Feizi 2022), its rows ordered by digest. Every bucket feeds ``d`` models, and each
model sees about ``1 / n_partitions`` of the data, as in DPA. ``d = 1`` is DPA: model j
is trained on partition j.
"""

from __future__ import annotations

import sys
from numbers import Integral

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from .._stacked._heads import stack_fitted_heads
from .._stacked._nets import net_recipe, stack_partition_nets, train_partition_nets, wrapper_seeds
from .._stacked._trainers import select_trainer
from .._utils._torch_seed import determinism_settings, run_with_determinism
from ..certificates._dpa import DPA, DPA_METHODS
from ..certificates._finite_aggregation import model_buckets
from ..results import CertificationResult
from ._base import CERTIFY_DOCSTRINGS, ENSEMBLE_DOCSTRINGS, BaseCertifiedEnsemble, split_tasks
from ._base_model import fallback_labels, fit_base_model, tied_columns
from ._partitions import example_digests, hash_partitions

__all__ = ["DPACertifiedClassifier"]


def _label_dtype(n_classes: int):
    """The smallest signed integer type holding every label index."""
    return np.int16 if n_classes <= np.iinfo(np.int16).max else np.int32


def _votes_of_models(models, X, k_base: int) -> np.ndarray:
    """Labels each model votes for, int (n_inputs, len(models), k_base), ascending."""
    n_classes = models[0].n_classes_ if models else 1
    out = np.empty((len(X), len(models), k_base), dtype=_label_dtype(n_classes))
    for position, model in enumerate(models):
        out[:, position] = np.nonzero(model.top_labels(X, k_base))[1].reshape(len(X), k_base)
    return out


def _votes_of_heads(heads, X, k_base: int) -> np.ndarray:
    """The same for stacked heads, counted on their device (ties as ``vote_counts``)."""
    import torch

    from .._stacked._engine import as_features, top_indices

    X = as_features(X, heads.device_)
    heads._check_width(X)
    out = np.empty((len(X), len(heads), k_base), dtype=_label_dtype(heads.n_classes_))
    step = heads._input_chunk(len(X), None)
    with torch.inference_mode():
        for first in range(0, len(X), step):
            top = top_indices(heads._scores(X[first : first + step]), k_base, first)
            out[first : first + step] = (
                torch.sort(top, dim=-1).values.permute(1, 0, 2).cpu().numpy()
            )
    return out


def _fit_partition_models(estimator, parts, k_base, n_classes, memory=None):
    """Fit the base models of one task; ``parts`` holds (index, X_j, Y_j) triples."""
    return [
        fit_base_model(
            estimator,
            X_j,
            Y_j,
            seed=int(j),
            empty_labels=fallback_labels(int(j), k_base, n_classes),
            memory=memory,
        )
        for j, X_j, Y_j in parts
    ]


@ENSEMBLE_DOCSTRINGS
class DPACertifiedClassifier(BaseCertifiedEnsemble):
    """Multi-label Deep Partition Aggregation, deterministically certified against poisoning.

    PoisoningGuard-DPA (PoisoningGuard Section 3.3). The training set is split into
    ``n_partitions`` disjoint partitions by a sha256 hash of each example's content (see
    :func:`hash_partitions`); one base model is trained per partition, in parallel. For
    an input, each base model votes for its ``k_base`` highest-scoring labels and the
    ensemble predicts the ``k`` labels with the most votes (ties towards the lower label
    index). T poisoned training examples change at most T~ partitions (T~ = 2T for
    modification, T for addition or deletion), so at most T~ base models change their
    votes, and Theorem 2 (Eq. 9) gives the certified intersection size from the vote
    counts alone: the certificate is deterministic, with no confidence level.

    Parameters
    ----------
    estimator : estimator or None, default=None
        Multi-label base estimator with ``decision_function`` or ``predict_proba``,
        always fitted on a 0/1 indicator matrix (1-D multi-class targets are one-hot
        encoded first). Label columns constant within a partition are not passed to it
        (see Notes). None uses ``RidgeClassifier()``.
    n_partitions : int, default=300
        Number of partitions ``N``: each base model is trained on about ``1 / N`` of
        the training set.
    spread : int, default=1
        Finite Aggregation's ``d``: the training set is hashed into ``N * d`` buckets
        and there are ``N * d`` base models, each trained on ``d`` buckets, each bucket
        feeding ``d`` models (see :func:`hash_partitions` and the module docstring).
        A poisoned example then changes up to ``d`` models, but the certificate
        (``method="finite-aggregation"``) uses which labels each model votes for and
        certifies more than DPA with as many examples per model. Training costs ``d``
        times DPA's. ``spread=1`` is DPA, bit for bit.
    {label_params}
    method : {"poisoningguard", "dpa", "finite-aggregation"}, default="poisoningguard"
        Certificate used by :meth:`certify`: Theorem 2 / Eq. 9 in full, with t fixed
        to 1 ("dpa", Levine & Feizi 2021 extended to top-k), or Finite Aggregation's
        certificate from every base model's votes (``docs/poisoningguard.md``; never
        below Eq. 9; at ``spread=1`` above it mainly through ties and models that vote
        for both labels of a pair). With ``spread > 1``, "poisoningguard" (the
        default) certifies with "finite-aggregation"; "dpa" is Eq. 9 with t = 1 and
        T~ replaced by ``spread * T~``, and ``result.recertify(method="poisoningguard")``
        gives Eq. 9 itself in that form.
    vectorize : {"auto", False}, default="auto"
        ``"auto"``: a ``MultiLabelNet`` base that the skorch replica reproduces is
        trained by the replica, one partition at a time, and its votes are counted in
        one stacked pass (see Notes), as are the votes of ``LinearHead`` bases;
        ``False``: every base model is fitted and counted by its own methods, through
        joblib. Both give the same models up to float rounding.
    n_jobs : int or None, default=None
        Number of joblib jobs for fitting and for counting votes. Any joblib backend
        works; the fitted models do not depend on it.
    memory : None, str, path or joblib.Memory, default=None
        Cache of fitted base models (a directory or a ``joblib.Memory``, as sklearn's
        Pipeline), for base models trained through ``fit`` one by one: each is keyed on
        its partition's content (its examples, in digest order) and its seed (the
        partition index), with the base estimator's parameters. Refitting after adding,
        removing or changing a few training examples then trains only the partitions
        whose content changed, and the ensemble equals a fresh fit. ``MultiLabelNet``
        heads trained by the stacked net trainer (``vectorize="auto"``) are not cached;
        with ``vectorize=False`` they are.
        A directory that cannot be written fails at ``fit``. See
        ``docs/model_selection.md``.
    verbose : int, default=0
        joblib's progress messages while fitting and counting.

    Attributes
    ----------
    {estimator_attribute}
    estimators_ : sequence of base models, length n_partitions * spread
        The model of partition j at position j (with ``spread > 1``: of the buckets
        ``model_buckets_[j]``): its ``estimator_`` is the fitted clone of ``estimator``
        (None for an empty partition or when every label column of the partition was
        constant), ``columns_`` the label columns it was fitted on.
    stacked_models_ : StackedModels or None
        The fitted base models stacked for vote counting (on their device, without
        joblib): ``MultiLabelNet`` heads trained without skorch (see Notes), or
        :class:`~sklearn_certify.heads.LinearHead` base models; else None.
    partitions_ : ndarray of int, shape (n_train,)
        Partition of each training example (its bucket, with ``spread > 1``).
    partition_sizes_ : ndarray of int, shape (n_partitions * spread,)
        Number of training examples per partition (bucket).
    model_buckets_ : ndarray of int, shape (n_partitions * spread, spread)
        The partitions (buckets) each base model is trained on; ``[[0], [1], ...]``
        for DPA.
    {fitted_targets}

    See Also
    --------
    BaggingCertifiedClassifier : Probabilistic certificate from random subsamples.

    Notes
    -----
    **One model at a time.** DPA's guarantee needs each base model to be a function of
    its own partition only, down to the last bit: poisoning one partition must leave
    every other model unchanged. The base models are therefore always trained one by
    one (through joblib); the vectorised trainers, which batch models of different
    partitions together, are used by :class:`BaggingCertifiedClassifier` only. A
    :class:`~sklearn_certify.nets.MultiLabelNet` base that bagging would vectorise (see
    its Notes) is trained here one net at a time by the same replica of skorch's
    training, without skorch's per-batch overhead: the same models as skorch's fits up
    to float rounding, each computed from its own partition only. ``stacked_models_`` then
    stacks them for vote counting and ``estimators_`` builds each fitted skorch net on
    first access.

    **Deterministic training on CUDA.** For torch bases on CUDA, call
    ``torch.use_deterministic_algorithms(True)`` and set
    ``torch.backends.cudnn.deterministic = True`` and
    ``torch.backends.cudnn.benchmark = False`` before ``fit``; these settings are
    recorded at ``fit`` and applied in every joblib worker's training task (loky and
    Dask workers are separate processes with torch's defaults). torch releases up to
    at least 2.8 also need the environment variable ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    (or ``:16:8``) set before CUDA starts: set it in the shell, or in ``os.environ``
    before the first CUDA call (workers inherit it). Models are then reproducible on
    the same GPU model, software versions and settings.

    **Labels.** With 1-D multi-class targets the label space is ``np.unique(y)`` of the
    training set, and the fallback votes below depend on its size: the certificate then
    assumes the attack neither removes the last example of a class nor adds a new
    class. Pass a 2-D indicator matrix (fixed columns) when that cannot be assumed.

    **Empty partitions.** A partition with no training example gets a base model that
    votes, for every input, for the fixed labels ``(j * k_base + i) % n_classes``,
    ``i = 0 .. k_base - 1`` (j the partition index): it looks at no data, so no
    poisoning can change it unless an example is inserted into that partition -- which
    the certificate already counts as a touched partition -- and it casts exactly
    ``k_base`` votes like every other base model, as Theorem 2 requires. The index
    rotation spreads the votes of several empty partitions over the labels.

    **Constant label columns.** A label absent from (or present in) every example of a
    partition is not passed to the base estimator; that base model scores it ``-inf``
    (or ``+inf``). This is a deterministic function of the partition's contents, so the
    guarantee is unchanged. A partition with one example thus votes for that example's
    labels (then the lowest-index others, up to ``k_base``).
    A base model whose ``fit`` raises on its partition votes for the partition's most
    frequent labels instead (a warning says how many did; if all did, ``fit`` raises).

    Each base model's own randomness (``random_state`` parameters, torch's generator
    while training) is seeded from its partition index, so training is deterministic.

    Examples
    --------
    >>> from sklearn_certify import DPACertifiedClassifier
    >>> from sklearn_certify.datasets import make_multidigit
    >>> X_train, X_test, Y_train, Y_test = make_multidigit(500, 50, random_state=0)
    >>> clf = DPACertifiedClassifier(n_partitions=20).fit(X_train, Y_train)
    >>> int(clf.partition_sizes_.sum()), float(clf.predict_proba(X_test).sum(axis=1)[0])
    (500, 1.0)
    >>> result = clf.certify(X_test, Y_test, radius=[0, 1, 2])
    >>> result.sizes.shape
    (50, 3)
    >>> bool((clf.partition_of(X_train, Y_train) == clf.partitions_).all())
    True
    """

    _certificate = "dpa"  # its name in the certificate registry

    _parameter_constraints: dict = {
        **BaseCertifiedEnsemble._parameter_constraints,
        "n_partitions": [Interval(Integral, 1, None, closed="left")],
        "spread": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions(set(DPA_METHODS))],
    }

    def __init__(
        self,
        estimator=None,
        *,
        n_partitions: int = 300,
        spread: int = 1,
        k_base: int = 1,
        k: int = 3,
        method: str = "poisoningguard",
        vectorize: str | bool = "auto",
        n_jobs: int | None = None,
        memory=None,
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
        self.n_partitions = n_partitions
        self.spread = spread

    def partition_of(self, X, y) -> np.ndarray:
        """Partition index of each example ``(x_i, y_i)`` (see :func:`hash_partitions`).

        Needs no fitting: it depends on ``n_partitions``, ``spread`` and the examples
        only. With ``spread > 1`` it is the bucket, among ``n_partitions * spread``.

        Parameters
        ----------
        X : array-like of shape (n, ...)
        y : array-like of {0, 1}, shape (n, n_classes), or 1-D labels

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        return hash_partitions(X, y, self.n_partitions * self.spread)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y) -> DPACertifiedClassifier:
        """Hash the examples into partitions (buckets) and train the base models.

        Parameters
        ----------
        X : array-like of shape (n_train, ...)
            Training inputs.
        y : array-like of {0, 1}, shape (n_train, n_classes), or 1-D labels
            Multi-label indicator matrix, or multi-class labels (one-hot encoded).

        Returns
        -------
        self : DPACertifiedClassifier
        """
        memory, X, Y, classes = self._check_fit_data(X, y)
        n_classes = Y.shape[1]
        estimator = self.estimator_
        n_parts = self.n_partitions * self.spread  # buckets, and base models

        digests = example_digests(X, np.asarray(y).ravel() if classes is not None else Y)
        partitions = np.array([int.from_bytes(d, "big") % n_parts for d in digests], dtype=np.int64)
        # Rows grouped by partition, ordered by digest inside each partition.
        order = np.array(
            sorted(range(len(digests)), key=lambda i: (partitions[i], digests[i])), dtype=np.int64
        )
        sizes = np.bincount(partitions, minlength=n_parts)
        buckets = np.split(order, np.cumsum(sizes)[:-1])
        uses = model_buckets(n_parts, self.spread)
        if self.spread == 1:
            groups = buckets
        else:  # the union of the model's buckets, ordered by digest
            groups = [
                np.array(
                    sorted(np.concatenate([buckets[b] for b in row]), key=lambda i: digests[i]),
                    dtype=np.int64,
                )
                for row in uses
            ]
        model_sizes = np.array([len(g) for g in groups], dtype=np.int64)

        # One model per partition, each a function of its own partition only. The
        # vectorised trainers are not used here: batching models of several partitions
        # would let the other partitions' sizes change a model's float rounding, which
        # DPA's guarantee does not allow. MultiLabelNet heads are trained one at a time
        # without skorch's per-batch overhead (same models as skorch's fits).
        self.stacked_models_ = None
        # torch's determinism settings are per process: each task applies the caller's.
        settings = determinism_settings() if "torch" in sys.modules else None
        chunks = split_tasks(n_parts, self.n_jobs)
        empty_labels = [fallback_labels(j, self.k_base, n_classes) for j in range(n_parts)]
        if select_trainer(estimator, X, self.vectorize) == "nets":
            recipe = net_recipe(estimator, X)
            seeds = wrapper_seeds(range(n_parts))
            parts = self._parallel(
                run_with_determinism,
                (
                    (
                        settings,
                        train_partition_nets,
                        [X[groups[j]] for j in chunk],
                        [Y[groups[j]] for j in chunk],
                        recipe,
                        [seeds[j] for j in chunk],
                        [empty_labels[j] for j in chunk],
                    )
                    for chunk in chunks
                ),
            )
            self.stacked_models_, models = stack_partition_nets(
                estimator,
                [net for part in parts for net in part],
                recipe,
                seeds,
                empty_labels,
                sizes=model_sizes,
                input_shape=X.shape[1:],
                n_classes=n_classes,
                tied_to=np.stack([tied_columns(Y[group]) for group in groups]),
            )
        else:
            parts = self._parallel(
                run_with_determinism,
                (
                    (
                        settings,
                        _fit_partition_models,
                        estimator,
                        [(j, X[groups[j]], Y[groups[j]]) for j in chunk],
                        self.k_base,
                        n_classes,
                        memory,
                    )
                    for chunk in chunks
                ),
            )
            models = [model for part in parts for model in part]
            self._check_fitted_models(models)
            if self.vectorize == "auto":
                # LinearHead bases: vote counting runs on the stacked heads, on their
                # device.
                self.stacked_models_ = stack_fitted_heads(
                    estimator,
                    models,
                    n_features=int(np.prod(X.shape[1:], dtype=np.int64)),
                    n_classes=n_classes,
                )
        self.estimators_ = models
        self.partitions_ = partitions
        self.partition_sizes_ = sizes
        self.model_buckets_ = uses
        self._set_targets(n_classes, classes)
        return self

    @CERTIFY_DOCSTRINGS
    def certify(
        self,
        X,
        Y,
        radius=0,
        *,
        method: str | None = None,
        attack: str = "modification",
        k: int | None = None,
        label: str | None = None,
    ) -> CertificationResult:
        """Certified intersection sizes of ``X``'s true labels against T poisoned examples.

        Deterministic: there is no ``alpha``.

        Parameters
        ----------
        {certify_data}
        method : {"poisoningguard", "dpa", "finite-aggregation"}, optional
            Overrides the ``method`` parameter for this call (with ``spread > 1``,
            "poisoningguard" certifies with "finite-aggregation", as the parameter).
        {certify_options}

        Returns
        -------
        CertificationResult

        Notes
        -----
        With ``method="finite-aggregation"`` the result's ``counts`` hold every base
        model's votes, int of shape (n_inputs, n_models, k_base) (the labels model j
        votes for on input i, ascending), which the certificate needs; its
        ``recertify`` (other T, k, attack, or the Eq. 9 methods), ``certified_radius``,
        ``save`` and ``load`` work from them.

        {multiclass_note}
        """
        return self._certify(X, Y, radius, k=k, label=label, method=method, attack=attack)

    def _certificate_options(self, *, method=None, attack="modification") -> dict:
        method = DPA.check_method(self.method if method is None else method, {})
        # The fitted assignment, not the parameter (which may have been set since).
        uses = getattr(self, "model_buckets_", None)
        spread = 1 if uses is None else int(uses.shape[1])
        if spread > 1 and method == "poisoningguard":
            method = "finite-aggregation"  # Eq. 9 is for disjoint partitions
        spec = dict(
            certificate="dpa", method=method, k_base=self.k_base, attack=self._check_attack(attack)
        )
        if spread != 1:
            spec["spread"] = spread
        return spec

    def _certify_counts(self, X, spec: dict):
        """Vote counts, or every model's votes where the method's counts are those."""
        if DPA.counts_layout(spec["method"]) != "model-votes":
            return self._label_counts(X)
        return self._model_votes(
            X,
            empty=lambda n_models: np.zeros(
                (0, n_models, self.k_base), dtype=_label_dtype(self.n_classes_)
            ),
            of_stacked=lambda stacked, X: _votes_of_heads(stacked, X, self.k_base),
            of_models=_votes_of_models,
            combine=lambda parts: np.concatenate(parts, axis=1),
        )
