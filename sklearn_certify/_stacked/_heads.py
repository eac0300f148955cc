"""Training the ensembles' linear and MLP heads at once, as one stacked program.

:func:`fit_linear_heads` trains N :class:`~sklearn_certify.heads.LinearHead` models,
each on its own rows, and returns them as one
:class:`~sklearn_certify._stacked._models.StackedModels`.

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

from .._utils._devices import resolve_device
from .._utils._targets import encode_fit_targets
from ..ensembles._base_model import derived_seeds, tied_columns
from ..heads import LinearHead, fit_heads, hidden_width, model_seeds
from ._engine import as_features
from ._models import StackedModels

__all__ = ["fit_base_models", "fit_linear_heads", "is_vectorizable", "stack_fitted_heads"]


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


def fit_linear_heads(
    X,
    Y,
    index_sets,
    *,
    hidden=None,
    loss="asl",
    epochs: int = 100,
    lr: float = 0.01,
    alpha: float = 1e-4,
    device="cpu",
    random_state=None,
    empty_labels=None,
    constant_columns: str = "inf",
    models_per_batch: int | None = None,
) -> StackedModels:
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
        Xt,
        Yt,
        index_sets,
        hidden=hidden,
        loss=loss,
        epochs=epochs,
        lr=lr,
        alpha=alpha,
        device=device,
        seeds=seeds,
        constant_columns=constant_columns,
        models_per_batch=models_per_batch,
    )
    if empty_labels is not None:
        if len(empty_labels) != len(index_sets):
            raise ValueError(
                f"empty_labels has {len(empty_labels)} entries for {len(index_sets)} models."
            )
        for i in np.flatnonzero(sizes == 0):
            labels = torch.as_tensor(np.asarray(empty_labels[i], dtype=np.int64), device=device)
            constant[i, labels] = math.inf
    tied_to = np.stack([tied_columns(Y_arr[rows]) for rows in index_sets])
    return StackedModels(
        params,
        constant,
        seeds,
        sizes,
        hidden=hidden_width(hidden),
        n_features=Xt.shape[1],
        n_classes=Yt.shape[1],
        device=device,
        tied_to=tied_to,
    )


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
        raise TypeError(
            f"{type(estimator).__name__} cannot be trained as stacked heads; only LinearHead can."
        )
    estimator._validate_params()
    draws = [derived_seeds(seed, 1) for seed in seeds]  # LinearHead's random_state
    head_seeds = [params[0] for params, _ in draws]
    wrapper_seeds = [torch_seed for _, torch_seed in draws]
    params = estimator.get_params()
    heads = fit_linear_heads(
        X,
        Y,
        index_sets,
        hidden=params["hidden"],
        loss=params["loss"],
        epochs=params["epochs"],
        lr=params["lr"],
        alpha=params["alpha"],
        device=params["device"],
        random_state=head_seeds,
        empty_labels=empty_labels,
        constant_columns="inf",
    )
    models = heads.base_models(estimator, seeds=wrapper_seeds, empty_labels=empty_labels)
    return heads, models


def stack_fitted_heads(
    estimator, models, *, n_features: int, n_classes: int
) -> StackedModels | None:
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
    params = [
        torch.zeros((len(models), *shape), device=device)
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
        for shape in ((n_in, n_out), (1, n_out))
    ]
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
    constant = torch.as_tensor(
        np.stack([m.constant_scores_ for m in models]), dtype=torch.float32, device=device
    )
    seeds = np.array(
        [m.estimator.get_params()["random_state"] or 0 for m in models], dtype=np.int64
    )
    counts = np.array([m.n_samples_fit_ for m in models], dtype=np.int64)
    tied_to = np.stack([getattr(m, "tied_to_", np.arange(n_classes)) for m in models])
    return StackedModels(
        params,
        constant,
        seeds,
        counts,
        hidden=width,
        n_features=n_features,
        n_classes=n_classes,
        device=device,
        tied_to=tied_to,
    )
