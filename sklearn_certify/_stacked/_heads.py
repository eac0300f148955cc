"""Stacked heads in the ensembles: vote counting and the per-model view.

:class:`StackedModels` holds N fitted heads stacked on one device (linear or MLP,
from :func:`fit_linear_heads` for :class:`~sklearn_certify.heads.LinearHead` base
models, or from the skorch replica for ``MultiLabelNet`` base models) and counts their
votes in one pass. :meth:`StackedModels.model_parameters` is the one adapter from
the stacked weights to one model's own weights (restricted to its trained columns).

:func:`fit_base_models` trains a bagging ensemble's ``LinearHead`` base models at once
with the seeds, subsamples and empty-set fallbacks that
``sklearn_certify.ensembles._base_model.fit_base_model`` would use one model at a time.

Example
-------
>>> import numpy as np
>>> from sklearn_certify.heads import LinearHead
>>> from sklearn_certify._stacked._heads import fit_linear_heads
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)).astype(np.float32)
>>> Y = (X[:, :3] > 0).astype(int)
>>> index_sets = rng.integers(0, 300, size=(50, 60))   # 50 bagging subsamples of 60 rows
>>> heads = fit_linear_heads(X, Y, index_sets, epochs=50, lr=0.05, random_state=0)
>>> counts = heads.vote_counts(X[:5], k_base=1)
>>> counts.shape, counts.sum(axis=1).tolist()
((5, 3), [50, 50, 50, 50, 50])
>>> single = LinearHead(epochs=50, lr=0.05, random_state=int(heads.seeds_[7]))
>>> single = single.fit(X[index_sets[7]], Y[index_sets[7]])
>>> bool(np.allclose(single.decision_function(X[:5]),
...                  heads.decision_function(X[:5])[7], atol=1e-4))
True
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import clone

from .._utils._devices import loadable_device, resolve_device, tensors_to
from .._utils._targets import encode_fit_targets
from ..ensembles._base_model import _ConstantAwareMultiLabel, derived_seeds, tied_columns
from ..heads import LinearHead, fit_heads, hidden_width, model_seeds
from ._engine import (
    SCORE_ROWS,
    as_features,
    first_layer_matrix,
    forward_blocks,
    top_indices,
)

__all__ = ["StackedModels", "fit_base_models", "fit_linear_heads", "is_vectorizable",
           "stack_fitted_heads"]


def _check_index_sets(index_sets, n_train: int):
    """A 2-D int array (equal sizes) or a list of 1-D int arrays (ragged)."""
    if isinstance(index_sets, np.ndarray) and index_sets.ndim == 2:
        sets = index_sets.astype(np.int64, copy=False)
        flat = sets.reshape(-1)
    else:
        sets = [np.asarray(s, dtype=np.int64).reshape(-1) for s in index_sets]
        flat = np.concatenate(sets) if sets else np.zeros(0, dtype=np.int64)
    if len(sets) == 0:
        raise ValueError("index_sets is empty: at least one model is needed.")
    if flat.size and (flat.min() < 0 or flat.max() >= n_train):
        raise ValueError(f"index_sets hold row indices outside [0, {n_train}).")
    return sets


class StackedModels:
    """N fitted heads, stored stacked on one device.

    Made by :func:`fit_linear_heads` (``LinearHead`` models) and by the vectorised
    training of ``MultiLabelNet`` base models
    (:mod:`sklearn_certify._stacked._nets`).

    Attributes
    ----------
    params_ : list of torch.Tensor
        ``[W, b]`` with W (N, d, c), b (N, 1, c) for linear heads, or
        ``[W1, b1, W2, b2, ...]`` (W1 (N, d, h1), b1 (N, 1, h1), ..., the last layer
        (N, h, c) and (N, 1, c)) for MLP heads, ReLU between layers; on ``device_``.
    constant_scores_ : torch.Tensor of shape (N, c)
        NaN for trained label columns, ``+inf``/``-inf`` for fixed ones (constant in
        the model's rows, or every column of a model without rows).
    tied_to_ : torch.Tensor of int64, shape (N, c)
        For each model and label, the first label with the same column in the model's
        training labels (:func:`~sklearn_certify.ensembles._base_model.tied_columns`): the
        label is scored by that label's score, so such labels tie exactly (see
        :meth:`vote_counts`).
    seeds_ : ndarray of int64, shape (N,)
        Initialisation seed of each model (``LinearHead(random_state=seeds_[i])``, or
        the torch seed of a ``MultiLabelNet``).
    sizes_ : ndarray of int64, shape (N,)
        Number of training rows of each model.
    n_features_in_, n_classes_ : int
    hidden : int, tuple of int or None
        Hidden width of ``LinearHead`` models; the hidden widths of nets.
    device_ : torch.device
    """

    def __init__(self, params, constant_scores, seeds, sizes, *, hidden, n_features,
                 n_classes, device, tied_to=None):
        self.params_ = params
        self.constant_scores_ = constant_scores
        if tied_to is None:
            tied_to = np.broadcast_to(np.arange(n_classes), (len(seeds), n_classes))
        self.tied_to_ = torch.as_tensor(np.asarray(tied_to, dtype=np.int64), device=device)
        self.seeds_ = seeds
        self.sizes_ = sizes
        self.hidden = hidden
        self.n_features_in_ = n_features
        self.n_classes_ = n_classes
        self.device_ = device

    def __len__(self) -> int:
        return len(self.seeds_)

    def __getstate__(self):
        # CPU tensors in the pickle: loadable without the device (see _devices).
        state = {**self.__dict__, "params_": tensors_to(self.params_, "cpu"),
                 "constant_scores_": tensors_to(self.constant_scores_, "cpu"),
                 "tied_to_": tensors_to(self.__dict__.get("tied_to_"), "cpu")}
        state.pop("_first_layer", None)
        return state

    def __setstate__(self, state):
        device = loadable_device(state["device_"])
        self.__dict__.update(state, device_=device,
                             params_=tensors_to(state["params_"], device),
                             constant_scores_=tensors_to(state["constant_scores_"], device),
                             tied_to_=tensors_to(state.get("tied_to_"), device))

    def _first_layer_of_all(self) -> torch.Tensor:
        """The first-layer matrix of every model, built once per ``params_[0]``: the
        per-chunk copy would otherwise dominate vote counting on a GPU."""
        W = self.params_[0]
        cached = self.__dict__.get("_first_layer")
        if cached is None or cached[0] is not W:
            with torch.no_grad():
                cached = self._first_layer = (W, first_layer_matrix(W.detach()))
        return cached[1]

    def _scores(self, X: torch.Tensor, models=slice(None)) -> torch.Tensor:
        params = [p[models] for p in self.params_]
        constant = self.constant_scores_[models]
        every = models == slice(None)
        logits = forward_blocks(params, X, self._first_layer_of_all() if every else None)
        scores = torch.where(torch.isnan(constant)[:, None, :], logits, constant[:, None, :])
        tied_to = self.tied_to_
        if tied_to is None:  # pickled before tied_to_ existed
            return scores
        # Labels with identical training columns take the score of the first of them:
        # exact ties, whatever the rounding of the batched product.
        return torch.gather(scores, 2, tied_to[models][:, None, :].expand_as(scores))

    def _input_chunk(self, n_inputs: int, batch_size) -> int:
        if batch_size is not None:
            return max(1, int(batch_size))
        width = max(p.shape[-1] for p in self.params_[0::2])
        step = max(1, min(n_inputs, (2**23) // max(1, len(self) * width)))
        return -(-step // SCORE_ROWS) * SCORE_ROWS  # whole blocks of forward_blocks

    def decision_function(self, X, *, as_tensor: bool = False):
        """Scores of every model, shape (N, n_inputs, c); fixed columns are +-inf.

        Returns a float64 ndarray, or the float32 tensor on ``device_`` when
        ``as_tensor``.
        """
        X = as_features(X, self.device_)
        self._check_width(X)
        with torch.inference_mode():
            scores = self._scores(X)
        return scores if as_tensor else scores.cpu().numpy().astype(np.float64)

    def _check_width(self, X: torch.Tensor) -> None:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but the heads were fitted on "
                             f"{self.n_features_in_}.")

    def vote_counts(self, X, k_base: int, *, batch_size: int | None = None,
                    as_tensor: bool = False):
        """Label counts over the N heads: how many put each label in their top-k_base.

        Ties break towards the lower label index; NaN scores raise (as in the
        ensembles). The work runs on ``device_``, ``batch_size`` inputs at a time
        (default: a block of about 8 million scores). An input's counts do not depend
        on the other inputs, their order or ``batch_size``: labels tied in a model's
        training labels (``tied_to_``) get exactly the same score, and every input is
        scored in products of one fixed shape
        (:func:`~sklearn_certify._stacked._engine.forward_blocks`), so its scores are the same
        bits in any batch.

        Returns
        -------
        counts : ndarray of int64 (or a tensor on ``device_``), shape (n_inputs, c)
            Every row sums to ``N * k_base``.
        """
        k_base = int(k_base)
        if not 1 <= k_base <= self.n_classes_:
            raise ValueError(f"k_base must be in [1, {self.n_classes_}], got {k_base}.")
        X = as_features(X, self.device_)
        self._check_width(X)
        n_inputs = len(X)
        counts = torch.zeros((n_inputs, self.n_classes_), dtype=torch.int64,
                             device=self.device_)
        step = self._input_chunk(n_inputs, batch_size)
        with torch.inference_mode():
            for first in range(0, n_inputs, step):
                top = top_indices(self._scores(X[first:first + step]), k_base,
                                  first)  # (N, b, k)
                top = top.permute(1, 0, 2).reshape(top.shape[1], -1)
                counts[first:first + step].scatter_add_(
                    1, top, torch.ones_like(top))
        return counts if as_tensor else counts.cpu().numpy()

    def model_parameters(self, i: int):
        """Model ``i``'s own weights: the one adapter from the stacked heads to one model.

        Returns ``(params, constant, columns)``: natural-layout parameters on the CPU
        (``[W1 (d, h1), b1 (1, h1), ..., Wk (h, len(columns)), bk]``, the output layer
        restricted to the trained ``columns``; None when no column is trained), the
        float64 constant scores (c,) and the trained columns (NaN constant scores).
        """
        constant = self.constant_scores_[i].cpu().numpy().astype(np.float64)
        columns = np.flatnonzero(np.isnan(constant))
        if not columns.size:
            return None, constant, columns
        own = [p[i].detach().cpu().clone() for p in self.params_]
        own[-2] = own[-2][:, columns].contiguous()
        own[-1] = own[-1][:, columns].contiguous()
        return own, constant, columns

    def model_ties(self, i: int) -> np.ndarray | None:
        """Model ``i``'s ``tied_to_`` row as an ndarray (None for heads pickled before it)."""
        return None if self.tied_to_ is None else self.tied_to_[i].cpu().numpy()

    def base_models(self, estimator=None, *, seeds=None, empty_labels=None) -> list:
        """The N heads as the ensembles' fitted base models, one per model.

        Each is a fitted :class:`~sklearn_certify.ensembles._base_model._ConstantAwareMultiLabel`
        around a fitted :class:`~sklearn_certify.heads.LinearHead` restricted to the
        model's trained label columns (its ``estimator_``; None when every column is
        fixed), with the same ``constant_scores_`` and ``columns_`` as one-by-one
        training builds. Parameters are copied to the CPU.

        Parameters
        ----------
        estimator : LinearHead or None
            The template; each wrapper's ``estimator`` is a clone of it with
            ``random_state`` set to the model's seed. None: ``LinearHead()`` with this
            ensemble's ``hidden``.
        seeds, empty_labels : sequences of length N or None
            Stored as each wrapper's ``seed`` and ``empty_labels`` (bookkeeping only).
        """
        template = LinearHead(self.hidden) if estimator is None else estimator
        models = []
        for i in range(len(self)):
            head = clone(template).set_params(random_state=int(self.seeds_[i]))
            wrapper = _ConstantAwareMultiLabel(
                head, empty_labels=() if empty_labels is None else empty_labels[i],
                seed=None if seeds is None else int(seeds[i]))
            own, constant, _ = self.model_parameters(i)
            fitted = None
            if own is not None:
                fitted = clone(head)
                fitted._set_fitted(own, n_features=self.n_features_in_)
            models.append(wrapper._set_fitted(constant, self.sizes_[i], fitted,
                                              tied_to=self.model_ties(i)))
        return models

    def top_labels(self, X, k_base: int, model: int) -> np.ndarray:
        """Boolean (n_inputs, c): model ``model``'s top-k_base labels."""
        X = as_features(X, self.device_)
        self._check_width(X)
        with torch.inference_mode():
            top = top_indices(self._scores(X, slice(model, model + 1))[0], int(k_base))
        out = torch.zeros((len(X), self.n_classes_), dtype=torch.bool, device=self.device_)
        out.scatter_(1, top, True)
        return out.cpu().numpy()


def fit_linear_heads(X, Y, index_sets, *, hidden=None, loss="asl", epochs: int = 100,
                     lr: float = 0.01, alpha: float = 1e-4, device="cpu", random_state=None,
                     empty_labels=None, constant_columns: str = "inf",
                     models_per_batch: int | None = None) -> StackedModels:
    """Train N multi-label heads at once, model i on the rows ``index_sets[i]``.

    Each model minimises, by ``epochs`` steps of full-batch Adam (learning rate
    ``lr``), the mean over its own rows of its element-wise loss summed over label
    columns, plus ``alpha / 2`` times the squared norm of its weight matrices. All
    models run as one batched torch program (``models_per_batch`` at a time); model i
    ends where ``LinearHead(..., random_state=seeds_[i]).fit(X[index_sets[i]],
    Y[index_sets[i]])`` ends, up to float rounding (see :mod:`sklearn_certify.heads`).

    Parameters
    ----------
    X : array-like or tensor of shape (n_train, ...)
        Training inputs; flattened to (n_train, d) float32.
    Y : array-like of {0, 1}, shape (n_train, c)
        Label indicator matrix (a 1-D ``y`` is one-hot encoded over its sorted classes).
    index_sets : int array of shape (N, m), or sequence of N 1-D int arrays
        Training rows of each model, repetitions allowed (bagging subsamples with
        replacement), sizes may differ and be 0 (DPA partitions).
    hidden : int or None, default=None
        None: linear heads. An int: one hidden ReLU layer of that width.
    loss, epochs, lr, alpha :
        As in :class:`~sklearn_certify.heads.LinearHead` (``alpha``: the L2 penalty on
        the weight matrices, not the biases).
    device : str or torch.device, default="cpu"
        Where training and prediction run (``"auto"``: CUDA when available).
    random_state : int, RandomState, None, or sequence of N ints
        Initialisation seeds: a sequence gives each model's seed; otherwise N seeds are
        drawn with ``check_random_state(random_state).randint(2**31 - 1, size=N)``.
        Only MLP heads use them (linear heads start at zero).
    empty_labels : sequence of N int arrays or None, default=None
        Labels scored ``+inf`` by a model with no training rows (``-inf`` for the
        others); None: ``-inf`` for all (ties then pick the lowest label indices).
    constant_columns : {"inf", "fit"}, default="inf"
        ``"inf"``: a label constant in a model's rows is scored ``+inf`` (always
        present) or ``-inf`` (never present) and left out of its loss, as the
        ensembles' base models do. ``"fit"``: every column is trained, as a standalone
        :class:`LinearHead` does.
    models_per_batch : int or None, default=None
        Models trained together in one batched program; None picks a block that stays
        in cache on the CPU and fills a GPU within half its free memory (parameters,
        gradients and optimiser state counted). A GPU out-of-memory error during
        training halves the block and retries. Results do not depend on it (up to float
        rounding).

    Returns
    -------
    StackedModels
    """
    if constant_columns not in ("inf", "fit"):
        raise ValueError(f"constant_columns must be 'inf' or 'fit', got {constant_columns!r}.")
    device = resolve_device(device)
    Y_arr, _ = encode_fit_targets(Y)
    Xt = as_features(X, device)
    if len(Xt) != len(Y_arr):
        raise ValueError(f"X has {len(Xt)} rows but Y has {len(Y_arr)}.")
    index_sets = _check_index_sets(index_sets, len(Xt))
    seeds = model_seeds(random_state, len(index_sets))
    Yt = torch.as_tensor(Y_arr, dtype=torch.float32, device=device)
    params, constant, sizes = fit_heads(
        Xt, Yt, index_sets, hidden=hidden, loss=loss, epochs=epochs, lr=lr, alpha=alpha,
        device=device, seeds=seeds, constant_columns=constant_columns,
        models_per_batch=models_per_batch)
    if empty_labels is not None:
        if len(empty_labels) != len(index_sets):
            raise ValueError(f"empty_labels has {len(empty_labels)} entries for "
                             f"{len(index_sets)} models.")
        for i in np.flatnonzero(sizes == 0):
            labels = torch.as_tensor(np.asarray(empty_labels[i], dtype=np.int64),
                                     device=device)
            constant[i, labels] = math.inf
    tied_to = np.stack([tied_columns(Y_arr[rows]) for rows in index_sets])
    return StackedModels(params, constant, seeds, sizes, hidden=hidden_width(hidden),
                              n_features=Xt.shape[1], n_classes=Yt.shape[1], device=device,
                              tied_to=tied_to)


# ------------------------------------------------------------------- ensemble hook-up
def is_vectorizable(estimator) -> bool:
    """Whether an ensemble's base models can be trained here: a :class:`LinearHead`.

    Exactly that class (a subclass may change ``fit``), with any parameters; a callable
    ``loss`` must be element-wise.
    """
    return type(estimator) is LinearHead


def fit_base_models(estimator, X, Y, index_sets, seeds, empty_labels):
    """All base models of an ensemble at once, as ``fit_base_model`` makes them one by one.

    Model i is trained on ``X[index_sets[i]], Y[index_sets[i]]`` with the randomness
    ``sklearn_certify.ensembles._base_model.fit_base_model(estimator, ..., seed=seeds[i],
    empty_labels=empty_labels[i])`` gives it: ``model_random_state(seeds[i])`` draws the
    head's ``random_state`` and then the wrapper's ``seed``. Same subsamples, same
    seeds, same learning rule (constant columns fixed at +-inf, the empty-set
    fallback), so the same models up to floating-point rounding.

    Parameters
    ----------
    estimator : LinearHead
        The (unfitted) base estimator; see :func:`is_vectorizable`.
    X : array-like of shape (n_train, ...)
    Y : array-like of {0, 1}, shape (n_train, c)
    index_sets : int array (N, m) or sequence of N 1-D int arrays
    seeds : sequence of N ints
    empty_labels : sequence of N int arrays
        Labels voted for by a model without training rows.

    Returns
    -------
    heads : StackedModels
        The stacked models, on ``estimator.device``, for fast vote counting
        (``heads.vote_counts(X, k_base)``).
    models : list of fitted ``_ConstantAwareMultiLabel``
        The per-model view (``estimators_``), parameters on the CPU.
    """
    if not is_vectorizable(estimator):
        raise TypeError(f"{type(estimator).__name__} cannot be trained as stacked heads; "
                        "only LinearHead can.")
    estimator._validate_params()
    draws = [derived_seeds(seed, 1) for seed in seeds]  # LinearHead's random_state
    head_seeds = [params[0] for params, _ in draws]
    wrapper_seeds = [torch_seed for _, torch_seed in draws]
    params = estimator.get_params()
    heads = fit_linear_heads(
        X, Y, index_sets, hidden=params["hidden"], loss=params["loss"],
        epochs=params["epochs"], lr=params["lr"], alpha=params["alpha"],
        device=params["device"], random_state=head_seeds, empty_labels=empty_labels,
        constant_columns="inf")
    models = heads.base_models(estimator, seeds=wrapper_seeds, empty_labels=empty_labels)
    return heads, models


def stack_fitted_heads(estimator, models, *, n_features: int,
                       n_classes: int) -> StackedModels | None:
    """Base models fitted one by one around ``LinearHead`` s, stacked for vote counting.

    Nothing is trained: model i's own parameters go into the stack, on
    ``estimator.device``, its output layer widened to every label (zero weights for
    its fixed columns, whose ``constant_scores_`` replace the logits). A head fitted
    on a single column (a binary classifier with two outputs) contributes the output of
    class 1, the score its wrapper ranks. None when ``estimator`` is not a
    :class:`~sklearn_certify.heads.LinearHead` (see :func:`is_vectorizable`).
    """
    if not is_vectorizable(estimator):
        return None
    device = resolve_device(estimator.device)
    width = hidden_width(estimator.hidden)
    sizes = [n_features, *([width] if width else []), n_classes]
    params = [torch.zeros((len(models), *shape), device=device)
              for n_in, n_out in zip(sizes[:-1], sizes[1:]) for shape in ((n_in, n_out),
                                                                        (1, n_out))]
    for i, model in enumerate(models):
        head = model.estimator_
        if head is None:
            continue
        own = [p.detach().to(device) for p in head.params_]
        outputs = slice(None)
        if head.multiclass_:  # one column, fitted as the classes (0, 1)
            outputs = np.flatnonzero(np.asarray(head.classes_) == 1)[:1]
        for layer, p in enumerate(own[:-2]):
            params[layer][i] = p
        columns = torch.as_tensor(model.columns_, device=device)
        params[-2][i, :, columns] = own[-2][:, outputs]
        params[-1][i, :, columns] = own[-1][:, outputs]
    constant = torch.as_tensor(np.stack([m.constant_scores_ for m in models]),
                               dtype=torch.float32, device=device)
    seeds = np.array([m.estimator.get_params()["random_state"] or 0 for m in models],
                     dtype=np.int64)
    counts = np.array([m.n_samples_fit_ for m in models], dtype=np.int64)
    tied_to = np.stack([getattr(m, "tied_to_", np.arange(n_classes)) for m in models])
    return StackedModels(params, constant, seeds, counts, hidden=width,
                              n_features=n_features, n_classes=n_classes, device=device,
                              tied_to=tied_to)
