"""Stacked training of an ensemble's MultiLabelNet base models (MLP or linear heads).

A bagging ensemble of ``MultiLabelNet(MLPModule, ...)`` base models trains N small
nets, each by skorch's mini-batch loop on its own subsample; fitted one by one, every
step of every net pays skorch's and torch's per-step overhead, which dominates the
arithmetic of a small head. Here the N nets are trained as one batched program on the
stacked engine (:mod:`sklearn_certify._stacked._engine`), and each net gets what skorch would
have given it (:mod:`sklearn_certify._stacked._skorch_replica`):

* the same initial weights and the same mini-batches in the same order;
* the same loss: the batched objective is the sum of the nets' own losses (the
  criterion's reduction per net, over its own rows and its own trained columns);
* the same optimiser: the net's own class and arguments on the stacked weights, for
  element-wise optimisers only (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam,
  RAdam), for which one optimiser over stacked tensors is N optimisers;
* the same constant columns: a label constant in a net's subsample is not trained
  (fixed score +-inf) and the net has one output per trained column; here its output
  row is padded with zeros that receive no gradient.

The nets end where skorch's one-by-one fits end, up to floating-point rounding;
unstable training (large learning rates, many epochs) amplifies such differences, as
it amplifies a one-ulp change of the data in skorch itself. :func:`replication_check`
compares the replica with a real skorch fit once per process; when they disagree, the
ensembles warn and train one by one.

Example
-------
>>> import numpy as np
>>> from sklearn_certify import BaggingCertifiedClassifier
>>> from sklearn_certify.nets import MLPModule, MultiLabelNet
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 8)).astype(np.float32)
>>> Y = (X[:, :4] > 0).astype(int)
>>> head = MultiLabelNet(MLPModule, module__hidden=(), max_epochs=5, lr=0.01)
>>> clf = BaggingCertifiedClassifier(head, n_estimators=50, max_samples=60, k=2,
...                                  random_state=0).fit(X, Y)
>>> clf.stacked_models_ is not None  # trained stacked
True
>>> type(clf.estimators_[7].estimator_).__name__  # a fitted skorch net, built on access
'MultiLabelNet'
>>> net_blocker(MultiLabelNet(MLPModule, noise_sigma=0.25), X)
Blocker(parameter='noise_sigma', reason='> 0 (training noise)')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.base import clone

from .._utils._torch_seed import estimator_devices, seeded_torch
from ..ensembles._base_model import _ConstantAwareMultiLabel, derived_seeds, tied_columns
from ..nets import MLPModule, MultiLabelNet
from ._engine import (
    as_features,
    cap_models_by_memory,
    constant_scores,
    natural_layout,
    stacked_gradients,
    train_in_blocks,
)
from ._engine import models_per_block as models_per_block_for
from ._models import StackedModels
from ._skorch_replica import (
    NetRecipe,
    epoch_orders,
    initial_weights_and_sampler_seeds,
    net_blocker,
    net_recipe,
)

__all__ = [
    "check_replication",
    "fit_net_base_models",
    "net_blocker",
    "net_recipe",
    "replication_check",
    "replication_is_exact",
    "stack_partition_nets",
    "train_nets",
    "train_partition_nets",
    "wrapper_seeds",
]

# Nets per block: about this many values in the largest per-step tensor, enough to
# amortise the per-operation overhead, with bounded memory.
_CPU_STEP_ELEMENTS = 2**20
_GPU_STEP_ELEMENTS = 2**26


def _stack_initial_weights(weights, columns, recipe, n_features, n_classes):
    """Stacked label-major parameters (W (n, out, in), b (n, out, 1)), output rows at
    each net's trained columns."""
    widths = [n_features, *recipe.hidden, n_classes]
    n_nets = len(weights)
    stacked = []
    for layer in range(len(widths) - 1):
        stacked += [
            torch.zeros(n_nets, widths[layer + 1], widths[layer]),
            torch.zeros(n_nets, widths[layer + 1], 1),
        ]
    last = len(stacked) - 2
    for i, own in enumerate(weights):
        if own is None:
            continue
        for j, param in enumerate(own):
            param = param.reshape(param.shape[0], -1)  # a bias (out,) as (out, 1)
            if j >= last:  # output layer: rows of the trained columns only
                stacked[j][i, torch.as_tensor(columns[i])] = param
            else:
                stacked[j][i] = param
    return stacked


# ----------------------------------------------------------------------- training
def _models_per_block(recipe: NetRecipe, n_rows: int, n_features: int, n_classes: int) -> int:
    """Nets per block: the largest per-step tensor (the gathered inputs or an activation,
    ``batch x width`` per net) holds about ``_*_STEP_ELEMENTS`` values; on a GPU also
    within its memory budget."""
    batch = n_rows if recipe.batch_size == -1 else min(recipe.batch_size, n_rows)
    width = max(n_features, n_classes, *recipe.hidden)
    return cap_models_by_memory(
        models_per_block_for(
            recipe.device, batch * width, cpu=_CPU_STEP_ELEMENTS, gpu=_GPU_STEP_ELEMENTS
        ),
        recipe.device,
        [n_features, *recipe.hidden, n_classes],
        batch,
    )


def _train_block(X, Y, rows, fitted, params, sampler_seeds, recipe):
    """Train one block of stacked nets in place.

    ``rows`` (n, m) training rows of each net, ``fitted`` (n, c) bool trained columns,
    ``sampler_seeds`` (n, epochs) the seeds of each epoch's row order (None: in order).
    """
    n_nets, n_rows = rows.shape
    batch = n_rows if recipe.batch_size == -1 else min(recipe.batch_size, n_rows)
    fitted_f = fitted.to(torch.float32)
    per_net = fitted_f
    if recipe.mean_over_labels:
        per_net = fitted_f / fitted_f.sum(dim=1, keepdim=True).clamp(min=1)
    per_net = per_net[:, :, None]  # (n, c, 1)
    optimizer = recipe.optimizer(params, **recipe.optimizer_kwargs)
    for epoch in range(recipe.epochs):
        if sampler_seeds is None:
            order = rows
        else:
            positions = epoch_orders(sampler_seeds[:, epoch], n_rows).to(rows.device)
            order = torch.gather(rows, 1, positions)
        for start in range(0, n_rows, batch):
            index = order[:, start : start + batch]  # (n, b)
            n_batch = index.shape[1]
            flat = index.reshape(-1)
            Xb = X.index_select(0, flat).view(n_nets, n_batch, -1)
            Yb = Y.index_select(0, flat).view(n_nets, n_batch, -1).transpose(1, 2)
            weight = per_net / n_batch if recipe.mean_over_rows else per_net
            grads = stacked_gradients(params, Xb, Xb.transpose(1, 2), Yb, weight, recipe.loss)
            for param, grad in zip(params, grads):
                param.grad = grad
            optimizer.step()
    for param in params:
        param.grad = None
    return params


def train_nets(X, Y, rows, recipe: NetRecipe, seeds, *, models_per_block=None, progress=None):
    """Train N nets at once, net i on ``X[rows[i]], Y[rows[i]]`` seeded by ``seeds[i]``.

    Parameters
    ----------
    X : array-like of shape (n_train, ...)
    Y : array-like of {0, 1}, shape (n_train, c)
    rows : int array of shape (N, m)
        Training rows of each net (bagging subsamples: every net has m rows).
    recipe : NetRecipe
    seeds : sequence of N ints
        The seed torch's generator gets before net i is built (the base-model wrapper's
        ``seed``).
    models_per_block : int or None
        Nets trained together; None picks a block for the device (on a GPU within half
        its free memory, parameters, gradients and optimiser state counted). A GPU
        out-of-memory error halves the block and retries.
    progress : callable or None
        Called with the number of nets finished after each block.

    Returns
    -------
    params : list of torch.Tensor
        Natural-layout stacked parameters ``[W1 (N, in, out), b1 (N, 1, out), ...]``.
    constant_scores : torch.Tensor of shape (N, c)
        NaN for trained columns, +-inf for the others.
    """
    device = recipe.device
    Xt = as_features(X, device)
    Yt = torch.as_tensor(np.asarray(Y), dtype=torch.float32, device=device)
    rows = np.asarray(rows, dtype=np.int64)
    n_nets, n_rows = rows.shape
    n_features, n_classes = Xt.shape[1], Yt.shape[1]
    if models_per_block is None:
        models_per_block = _models_per_block(recipe, n_rows, n_features, n_classes)

    def train(nets):
        rows_t = torch.as_tensor(rows[nets], device=device)
        scores = constant_scores(Yt, rows_t)
        fitted = torch.isnan(scores)
        columns = [np.flatnonzero(f) for f in fitted.cpu().numpy()]
        weights, sampler_seeds = initial_weights_and_sampler_seeds(
            recipe, [seeds[i] for i in nets], columns, n_features
        )
        params = [
            p.to(device)
            for p in _stack_initial_weights(weights, columns, recipe, n_features, n_classes)
        ]
        if bool(fitted.any()):
            with torch.no_grad():
                params = _train_block(Xt, Yt, rows_t, fitted, params, sampler_seeds, recipe)
        if progress is not None:
            progress(len(nets))
        return natural_layout(params), scores

    return train_in_blocks(n_nets, models_per_block, train)


# ------------------------------------------------------------ ensemble hook-up
def wrapper_seeds(seeds) -> list[int]:
    """The torch seed ``fit_base_model`` gives each base model (no random_state params)."""
    return [derived_seeds(seed, 0)[1] for seed in seeds]


def fit_net_base_models(estimator, X, Y, rows, seeds, empty_labels, *, verbose=0):
    """All MultiLabelNet base models of a bagging ensemble at once.

    Model i is what ``fit_base_model(estimator, X[rows[i]], Y[rows[i]], seed=seeds[i],
    empty_labels=empty_labels[i])`` makes, up to float rounding.

    Returns
    -------
    heads : StackedModels
        The stacked nets, on the net's device, for vote counting.
    models : LazyNetModels
        The per-model fitted wrappers (``estimators_``), built on first access.
    """
    recipe = net_recipe(estimator, X)
    torch_seeds = wrapper_seeds(seeds)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), unit="model", desc="training base models")
    try:
        params, constant = train_nets(
            X, Y, rows, recipe, torch_seeds, progress=None if bar is None else bar.update
        )
    finally:
        if bar is not None:
            bar.close()
    n_features = int(np.prod(np.shape(X)[1:]))
    Y = np.asarray(Y)
    heads = StackedModels(
        params,
        constant,
        np.asarray(torch_seeds, dtype=np.int64),
        np.full(len(rows), np.shape(rows)[1], dtype=np.int64),
        hidden=recipe.hidden,
        n_features=n_features,
        n_classes=int(np.shape(Y)[1]),
        device=recipe.device,
        tied_to=np.stack([tied_columns(Y[r]) for r in np.asarray(rows)]),
    )
    models = LazyNetModels(
        estimator,
        heads,
        torch_seeds,
        empty_labels,
        input_shape=tuple(int(s) for s in np.shape(X)[1:]),
    )
    return heads, models


def train_partition_nets(X_parts, Y_parts, recipe: NetRecipe, seeds, empty_labels):
    """DPA partitions' nets, **one at a time**, each as skorch would train it.

    Net j is trained alone (a block of one) on ``X_parts[j], Y_parts[j]``, so every
    tensor shape and every operation in its training depends on its own partition only
    -- DPA's guarantee needs that bit for bit, and batching nets of several partitions
    would let the others' sizes change float rounding (for instance, which elements of
    a batched tensor go through torch's vectorised or scalar loops). This skips skorch's
    per-batch overhead and keeps the exact replication of its training; it runs inside
    one joblib task per chunk of partitions.

    Returns
    -------
    list of (params, constant_scores)
        Per partition: natural-layout parameters of one net (leading axis 1, on the CPU)
        and its constant scores (1, c); an empty partition gets zero weights and
        ``+inf`` for its ``empty_labels``, ``-inf`` elsewhere.
    """
    out = []
    for X_j, Y_j, seed, empty in zip(X_parts, Y_parts, seeds, empty_labels):
        n_rows, n_classes = np.shape(Y_j)
        if n_rows:
            params, constant = train_nets(
                X_j, Y_j, np.arange(n_rows)[None], recipe, [seed], models_per_block=1
            )
        else:  # no rows: no net, the fixed empty-partition votes
            params = natural_layout(
                _stack_initial_weights(
                    [None], [()], recipe, int(np.prod(np.shape(X_j)[1:])), n_classes
                )
            )
            constant = torch.full((1, n_classes), -math.inf)
            constant[0, torch.as_tensor(np.asarray(empty, dtype=np.int64))] = math.inf
        out.append(([p.cpu() for p in params], constant.cpu()))
    return out


def stack_partition_nets(
    estimator, parts, recipe, seeds, empty_labels, *, sizes, input_shape, n_classes, tied_to=None
):
    """``stacked_models_`` and the lazy ``estimators_`` from :func:`train_partition_nets`' output.

    Stacking fitted nets only serves vote counting, whose shapes do not depend on the
    training data, so a net's scores stay a function of its own partition. ``tied_to``
    (N, c): each partition's :func:`~sklearn_certify.ensembles._base_model.tied_columns`.
    """
    params = [torch.cat(layer).to(recipe.device) for layer in zip(*(p for p, _ in parts))]
    constant = torch.cat([c for _, c in parts]).to(recipe.device)
    heads = StackedModels(
        params,
        constant,
        np.asarray(seeds, dtype=np.int64),
        np.asarray(sizes, np.int64),
        hidden=recipe.hidden,
        n_features=int(np.prod(input_shape)),
        n_classes=n_classes,
        device=recipe.device,
        tied_to=tied_to,
    )
    return heads, LazyNetModels(
        estimator, heads, seeds, empty_labels, input_shape=tuple(input_shape)
    )


class LazyNetModels(Sequence):
    """The fitted base models of vectorised MultiLabelNet training, built on access.

    Item i is the fitted ``_ConstantAwareMultiLabel`` that the one-by-one path would
    have made: its ``estimator_`` a fitted :class:`~sklearn_certify.nets.MultiLabelNet`
    (initialised by skorch, its module holding net i's trained weights; its ``history_``
    is empty) restricted to the trained columns ``columns_``. Building a skorch net
    takes milliseconds, so items are made when first accessed and then kept (not
    pickled).
    """

    def __init__(self, estimator, heads, seeds, empty_labels, *, input_shape):
        self.estimator = clone(estimator)  # later set_params on the ensemble's own stay out
        self.heads = heads
        self.seeds = list(seeds)
        self.empty_labels = list(empty_labels)
        self.input_shape = input_shape
        self._built = {}

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        if index not in self._built:
            self._built[index] = self._build(index)
        return self._built[index]

    def __getstate__(self):
        return {**self.__dict__, "_built": {}}

    def _build(self, i: int):
        own, constant, columns = self.heads.model_parameters(i)
        wrapper = _ConstantAwareMultiLabel(
            self.estimator, empty_labels=self.empty_labels[i], seed=self.seeds[i]
        )
        net = None
        if own is not None:
            net = clone(self.estimator)
            net.input_shape_ = self.input_shape
            net.n_features_in_ = self.heads.n_features_in_
            net.n_classes_ = int(columns.size)
            with seeded_torch(self.seeds[i], estimator_devices(net)):
                net.initialize()
            net.module_.load_linear_weights([(W.T, b[0]) for W, b in zip(own[0::2], own[1::2])])
        return wrapper._set_fitted(
            constant, self.heads.sizes_[i], net, tied_to=self.heads.model_ties(i)
        )


# ------------------------------------------------------------------ exactness probe
@dataclass(frozen=True)
class ReplicationReport:
    """Whether the replica reproduced a real skorch fit, and if not, why."""

    exact: bool
    reason: str | None = None


#: What a changed torch or skorch can make the replica raise; anything else is a bug
#: and propagates.
_PROBE_ERRORS = (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError)


@lru_cache(maxsize=1)
def replication_check() -> ReplicationReport:
    """Whether the stacked trainer reproduces a real skorch fit in this environment.

    Trains a tiny net (3 features, 2 hidden units, 3 labels, 11 rows, batches of 4,
    3 epochs, Adam) both ways, from the same seed, and compares the weights. Cached
    per process.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 3)).astype(np.float32)
    Y = (rng.random((11, 3)) < 0.5).astype(np.int64)
    Y[:, 2] = 1  # a constant column, left out of training
    Y[0, :2], Y[1, :2] = (0, 1), (1, 0)
    net = MultiLabelNet(MLPModule, module__hidden=(2,), max_epochs=3, batch_size=4, lr=0.05)
    seed = 12345
    try:
        reference = _ConstantAwareMultiLabel(net, seed=seed).fit(X, Y)
        if reference.estimator_ is None:
            return ReplicationReport(False, f"skorch's fit failed: {reference.fit_error_}")
        params, _ = train_nets(X, Y, np.arange(11)[None], net_recipe(net, X), [seed])
        own = [p[0] for p in params]
        expected = [
            p.detach()
            for layer in reference.estimator_.module_.linear_layers()
            for p in (layer.weight, layer.bias)
        ]
        got = [own[0].T, own[1][0], own[2].T[:2], own[3][0, :2]]
        differ = [
            j
            for j, (a, b) in enumerate(zip(got, expected, strict=True))
            if not torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        ]
    except _PROBE_ERRORS as exc:
        return ReplicationReport(False, f"the replica raised {type(exc).__name__}: {exc}")
    if differ:
        return ReplicationReport(False, f"parameters {differ} differ from skorch's fit")
    return ReplicationReport(True)


def replication_is_exact() -> bool:
    """``replication_check().exact``."""
    return replication_check().exact


def check_replication() -> bool:
    """:func:`replication_is_exact`, with a warning that says why when it is not."""
    if replication_is_exact():
        return True
    warnings.warn(
        "the stacked training of MultiLabelNet base models does not reproduce skorch's "
        f"training with torch {torch.__version__} ({replication_check().reason}); "
        "training them one by one instead.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False
