"""Vectorised training of a bagging ensemble's :class:`~sklearn_certify.nets.MultiLabelNet`
base models (MLP or linear heads), reproducing skorch's one-by-one training (issue 6).

A bagging ensemble of ``MultiLabelNet(MLPModule, module__hidden=...)`` base models
trains N small nets, each by skorch's mini-batch loop on its own subsample. Fitted one
by one, every step of every net pays skorch's and torch's per-step overhead (about 2 ms
for a linear head here), which dominates the arithmetic of a small head. This module
trains all of them as one batched torch program -- the weights of the N nets stacked
along a leading axis, ``torch.baddbmm`` / ``torch.bmm`` for every layer, one optimiser
step for all -- and gives each net exactly what skorch would have given it:

* **Same initial weights.** Net i's module is built by the same constructor
  (``MLPModule(n_features, n_classes_i, **module__params)``) right after torch's CPU
  generator was seeded with the seed that the ensembles' one-by-one path
  (``sklearn_certify.ensembles._base.fit_base_model``) seeds it with.
* **Same batches in the same order.** skorch iterates a ``DataLoader`` once per epoch;
  starting the iteration draws one int64 from torch's generator (the loader's base
  seed) and, when shuffling, ``RandomSampler`` draws another one, seeds a fresh
  ``torch.Generator`` with it and takes ``torch.randperm``. The same draws are made here,
  net by net, from the same seeded generator, so net i sees the same rows in the same
  mini-batches, the last one short.
* **Same loss and the same optimiser.** The batched objective is the sum of the nets'
  own losses (the criterion's reduction per net, over its own rows and its own trained
  label columns), so each net's weights receive that net's gradient only; the gradient
  is written out by hand (the chain rule through the MLP and the element-wise loss).
  The optimiser is the net's own class and arguments applied to the stacked weights:
  only element-wise optimisers are accepted (SGD, Adam, AdamW, RMSprop, Adagrad,
  Adamax, NAdam, RAdam), for which one optimiser over stacked tensors is N optimisers.
* **Same constant columns.** As in the ensembles' base-model wrapper, a label column
  constant in a net's subsample is not trained (fixed score +-inf) and the net is built
  with one output per trained column; here its output row is padded with zeros that
  receive no gradient.

The nets therefore end where skorch's one-by-one fits end, up to floating-point rounding
(batched products, and the hand-written gradient instead of autograd); unstable training
(large learning rates, many epochs) amplifies such differences, as it amplifies a
one-ulp change of the data in skorch itself. Because this
reproduces implementation details of torch's ``DataLoader``, the first use in a process
checks it against a real skorch fit of a tiny net (:func:`replication_is_exact`); when
they disagree (another torch or skorch version), the ensemble warns and trains one by
one.

:func:`net_blocker` lists the conditions. What cannot be reproduced is trained one by
one: training noise (``noise_sigma > 0``), dropout, callbacks, a validation split,
custom data loading, non-element-wise optimisers, other modules or criteria.

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
>>> clf.heads_ is not None  # trained vectorised
True
>>> type(clf.estimators_[7].estimator_).__name__  # a fitted skorch net, built on access
'MultiLabelNet'
>>> net_blocker(MultiLabelNet(MLPModule, noise_sigma=0.25), X)
'noise_sigma > 0 (training noise)'
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from sklearn.base import clone

from .._torch_seed import estimator_devices, seeded_torch
from ..nets import AsymmetricLoss, MLPModule, MultiLabelNet, _as_tuple
from ._base import MAX_INT
from ._vectorized import (
    LinearHeadEnsemble,
    _as_features,
    _loss_grad,
    cap_models_by_memory,
    train_in_blocks,
)

__all__ = ["NetRecipe", "net_blocker", "net_recipe", "replication_is_exact",
           "fit_net_base_models", "train_partition_nets", "stack_partition_nets"]

#: Optimisers whose update of a tensor entry depends on that entry's own gradient
#: history only (and on scalar hyper-parameters and the step count).
ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW,
                          torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adamax,
                          torch.optim.NAdam, torch.optim.RAdam)
# Models per batched program: about this many values in the largest per-step tensor,
# enough to amortise the per-operation overhead, with bounded memory.
_CPU_STEP_ELEMENTS = 2**20
_GPU_STEP_ELEMENTS = 2**26


@dataclass(frozen=True)
class NetRecipe:
    """Everything about a MultiLabelNet's training that the vectorised path reproduces."""

    hidden: tuple[int, ...]
    module_kwargs: dict
    loss: object  # AsymmetricLoss(reduction="none") or "bce"
    mean_over_rows: bool
    mean_over_labels: bool
    optimizer: type
    optimizer_kwargs: dict
    epochs: int
    batch_size: int  # -1: the whole training set in one batch
    shuffle: bool
    device: torch.device


def _criterion_loss(net) -> tuple[object, bool, bool]:
    """(element-wise loss, mean over rows, mean over labels) of the net's criterion."""
    params = net.get_params_for("criterion")
    reduction = params.get("reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"criterion reduction {reduction!r}")
    if net.criterion is AsymmetricLoss:
        if set(params) - {"gamma_pos", "gamma_neg", "clip", "eps", "reduction"}:
            raise ValueError(f"criterion parameters {sorted(params)}")
        loss = AsymmetricLoss(**{**params, "reduction": "none"})  # validates them
        return loss, reduction == "mean", False
    if net.criterion is torch.nn.BCEWithLogitsLoss:
        if set(params) - {"reduction"}:
            raise ValueError(f"criterion parameters {sorted(params)}")
        return "bce", reduction == "mean", reduction == "mean"
    raise ValueError(f"criterion {net.criterion!r}")


def net_blocker(estimator, X) -> str | None:
    """Why ``estimator`` cannot be trained by the vectorised path on ``X``; None if it can.

    It can when it is exactly a :class:`~sklearn_certify.nets.MultiLabelNet` with

    * ``module`` the class :class:`~sklearn_certify.nets.MLPModule` (or None and 2-D
      ``X``), no dropout, no ``module__n_features``/``module__n_classes``;
    * ``criterion`` the class :class:`~sklearn_certify.nets.AsymmetricLoss` or
      ``torch.nn.BCEWithLogitsLoss`` (without weights), reduction "mean" or "sum";
    * ``optimizer`` one of ``ELEMENTWISE_OPTIMIZERS``, without ``param_groups``,
      ``differentiable`` or ``capturable``, with arguments the optimiser accepts;
    * ``noise_sigma=0``, ``train_split=None``, no callbacks, no ``compile``, the
      default dataset (no ``dataset__*``) and ``DataLoader`` with at most
      ``iterator_train__shuffle`` and ``iterator_train__batch_size`` set, integer
      ``batch_size`` and ``max_epochs``, no ``random_state`` parameters, and a CPU or an
      available CUDA device (None: the CPU).
    """
    if type(estimator) is not MultiLabelNet:
        return f"{type(estimator).__name__} is not a MultiLabelNet"
    try:
        net_recipe(estimator, X)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def net_recipe(estimator, X) -> NetRecipe:
    """The :class:`NetRecipe` of a vectorisable MultiLabelNet; ValueError says why not."""
    from skorch.dataset import Dataset
    from torch.utils.data import DataLoader

    net = estimator
    if type(net) is not MultiLabelNet:
        raise ValueError(f"{type(net).__name__} is not a MultiLabelNet")
    if not (net.module is MLPModule or (net.module is None and np.ndim(X) == 2)):
        raise ValueError("module is not MLPModule (or None with 2-D X)")
    module_kwargs = net.get_params_for("module")
    if set(module_kwargs) - {"hidden", "dropout"}:
        raise ValueError(f"module parameters {sorted(module_kwargs)}")
    if module_kwargs.get("dropout", 0.0) != 0:
        raise ValueError("dropout > 0")
    default_hidden = inspect.signature(MLPModule).parameters["hidden"].default
    hidden = _as_tuple(module_kwargs.get("hidden", default_hidden), "hidden")
    try:
        loss, mean_rows, mean_labels = _criterion_loss(net)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unsupported {exc}") from None
    if net.optimizer not in ELEMENTWISE_OPTIMIZERS:
        raise ValueError(f"optimizer {net.optimizer!r} is not element-wise")
    optimizer_kwargs = {"lr": net.lr, **net.get_params_for("optimizer")}
    if "param_groups" in optimizer_kwargs:
        raise ValueError("optimizer__param_groups")
    for flag in ("differentiable", "capturable"):  # autograd through the step, CUDA graphs
        if optimizer_kwargs.get(flag):
            raise ValueError(f"optimizer__{flag}=True")
    try:  # invalid arguments: the one-by-one path reports them per base model
        net.optimizer([torch.zeros(1, requires_grad=True)], **optimizer_kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer arguments ({exc})") from None
    if net.noise_sigma:
        raise ValueError("noise_sigma > 0 (training noise)")
    if net.train_split is not None:
        raise ValueError("train_split is not None")
    if net.callbacks not in (None, "disable") and len(net.callbacks):
        raise ValueError("callbacks")
    if getattr(net, "compile", False):
        raise ValueError("compile=True")
    if net.dataset is not Dataset or net.iterator_train is not DataLoader:
        raise ValueError("custom dataset or iterator_train")
    loader_kwargs = net.get_params_for("iterator_train")
    if set(loader_kwargs) - {"shuffle", "batch_size"}:
        raise ValueError(f"iterator_train parameters {sorted(loader_kwargs)}")
    if any(key == "random_state" or key.endswith("__random_state")
           for key in net.get_params(deep=True)):
        raise ValueError("random_state parameters")
    if net.get_params_for("dataset"):
        raise ValueError("dataset parameters")
    try:  # skorch leaves the module and the data where they are for device=None
        device = torch.device("cpu" if net.device is None else net.device)
    except (TypeError, RuntimeError):
        raise ValueError(f"device {net.device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device}")
    batch_size = loader_kwargs.get("batch_size", net.batch_size)
    if not _is_int(batch_size) or batch_size == 0 or batch_size < -1:
        raise ValueError(f"batch_size {batch_size!r}")
    if not _is_int(net.max_epochs):
        raise ValueError(f"max_epochs {net.max_epochs!r}")
    return NetRecipe(
        hidden=hidden, module_kwargs=module_kwargs, loss=loss, mean_over_rows=mean_rows,
        mean_over_labels=mean_labels, optimizer=net.optimizer,
        optimizer_kwargs=optimizer_kwargs, epochs=int(net.max_epochs),
        batch_size=batch_size, shuffle=bool(loader_kwargs.get("shuffle", True)),
        device=device)


# --------------------------------------------------------------------- randomness
def _initial_weights_and_sampler_seeds(recipe: NetRecipe, seeds, columns,
                                       n_features: int):
    """Each net's initial weights and its per-epoch RandomSampler seeds, as skorch draws them.

    Net i: torch's CPU generator seeded with ``seeds[i]`` builds its module (one output
    per trained column ``columns[i]``), then each epoch draws the DataLoader iterator's
    base seed and, when shuffling, the RandomSampler's seed, from which the sampler
    takes ``torch.randperm`` with a fresh generator (see :func:`_epoch_orders`).

    Returns the torch-layout weights of every net (list over nets of
    ``[W1 (out, in), b1 (out,), ...]``, None for a net without trained columns) and the
    sampler seeds, int64 ``(n_nets, epochs)`` (-1 for nets that are not trained; None
    when not shuffling).
    """
    epochs = recipe.epochs
    weights = []
    sampler_seeds = np.full((len(seeds), epochs), -1, dtype=np.int64)
    draw = torch.empty((), dtype=torch.int64)  # reused: draws like torch.empty(...).random_()
    with seeded_torch(0):  # forks torch's generators: the caller's state is untouched
        for i, (seed, cols) in enumerate(zip(seeds, columns)):
            if len(cols) == 0:
                weights.append(None)
                continue
            torch.default_generator.manual_seed(int(seed))
            module = MLPModule(n_features=n_features, n_classes=len(cols),
                               **recipe.module_kwargs)
            weights.append([p.detach() for p in module.parameters()])
            for epoch in range(epochs):
                draw.random_()  # the DataLoader iterator's base seed
                if recipe.shuffle:  # RandomSampler's seed
                    sampler_seeds[i, epoch] = int(draw.random_().item())
    return weights, (sampler_seeds if recipe.shuffle else None)


def _epoch_orders(sampler_seeds, n_rows: int) -> torch.Tensor:
    """Row positions (n_nets, n_rows) in batch order for one epoch: RandomSampler's
    ``torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))`` (one
    Generator reused, reseeded: the same permutation)."""
    generator = torch.Generator()
    return torch.stack([
        torch.randperm(n_rows, generator=generator.manual_seed(int(seed))) if seed >= 0
        else torch.arange(n_rows)
        for seed in sampler_seeds])


def _stack_initial_weights(weights, columns, recipe, n_features, n_classes):
    """Stacked torch-layout parameters, output rows at each net's trained columns."""
    widths = [n_features, *recipe.hidden, n_classes]
    n_nets = len(weights)
    stacked = []
    for layer in range(len(widths) - 1):
        stacked += [torch.zeros(n_nets, widths[layer + 1], widths[layer]),
                    torch.zeros(n_nets, widths[layer + 1])]
    last = len(stacked) - 2
    for i, own in enumerate(weights):
        if own is None:
            continue
        for j, param in enumerate(own):
            if j >= last:  # output layer: rows of the trained columns only
                stacked[j][i, torch.as_tensor(columns[i])] = param
            else:
                stacked[j][i] = param
    return stacked


# ----------------------------------------------------------------------- training
def _gradients(params, Xb, Yb, weight, loss):
    """Gradients of the summed objective of stacked nets on one mini-batch each.

    ``params`` in torch's layout (W (n, out, in), b (n, out)), inputs ``Xb`` (n, b, d),
    targets ``Yb`` (n, c, b) and per-net column weights ``weight`` (n, c, 1).
    Activations are kept feature-major, (n, width, b): the batched products are then
    (out x in) times (in x b), much faster on a CPU than (b x in) times (in x out) for
    narrow outputs.
    """
    n_layers = len(params) // 2
    inputs, pre_activations = [Xb.transpose(1, 2)], []
    for layer in range(n_layers):
        W, b = params[2 * layer], params[2 * layer + 1]
        z = torch.baddbmm(b.unsqueeze(2), W, inputs[-1])  # (n, out, b)
        if layer < n_layers - 1:
            pre_activations.append(z)
            inputs.append(torch.relu(z))
    g = _loss_grad(loss, z, Yb).mul_(weight)  # d objective / d logits, (n, c, b)
    grads = [None] * len(params)
    for layer in reversed(range(n_layers)):
        grads[2 * layer] = torch.bmm(g, inputs[layer].transpose(1, 2))
        grads[2 * layer + 1] = g.sum(dim=2)
        if layer:
            g = torch.bmm(params[2 * layer].transpose(1, 2), g)
            g.mul_(pre_activations[layer - 1] > 0)
    return grads


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
            positions = _epoch_orders(sampler_seeds[:, epoch], n_rows).to(rows.device)
            order = torch.gather(rows, 1, positions)
        for start in range(0, n_rows, batch):
            index = order[:, start:start + batch]  # (n, b)
            n_batch = index.shape[1]
            flat = index.reshape(-1)
            Xb = X.index_select(0, flat).view(n_nets, n_batch, -1)
            Yb = Y.index_select(0, flat).view(n_nets, n_batch, -1).transpose(1, 2)
            weight = per_net / n_batch if recipe.mean_over_rows else per_net
            grads = _gradients(params, Xb, Yb, weight, recipe.loss)
            for param, grad in zip(params, grads):
                param.grad = grad
            optimizer.step()
    for param in params:
        param.grad = None
    return params


def _natural_layout(params) -> list[torch.Tensor]:
    """Torch-layout stacked parameters (W (n, out, in), b (n, out)) as
    :class:`LinearHeadEnsemble` holds them: W (n, in, out), b (n, 1, out)."""
    return [p.detach().transpose(1, 2).contiguous() if p.ndim == 3 else p.detach()[:, None, :]
            for p in params]


def _constant_scores(Y: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """NaN for trained columns, +inf / -inf for columns constant in a net's rows."""
    n_nets, n_rows = rows.shape
    positives = torch.empty((n_nets, Y.shape[1]), dtype=Y.dtype, device=Y.device)
    step = max(1, _CPU_STEP_ELEMENTS // max(1, n_rows * Y.shape[1]))
    for first in range(0, n_nets, step):  # a bounded (step, m, c) gather at a time
        positives[first:first + step] = Y[rows[first:first + step]].sum(dim=1)
    scores = torch.full_like(positives, float("nan"))
    scores[positives == 0] = -math.inf
    scores[positives == n_rows] = math.inf
    return scores


def _models_per_block(recipe: NetRecipe, n_rows: int, n_features: int,
                      n_classes: int) -> int:
    """Nets per block: the largest per-step tensor (the gathered inputs or an activation,
    ``batch x width`` per net) holds about ``_*_STEP_ELEMENTS`` values."""
    batch = n_rows if recipe.batch_size == -1 else min(recipe.batch_size, n_rows)
    width = max(n_features, n_classes, *recipe.hidden)
    budget = _CPU_STEP_ELEMENTS if recipe.device.type == "cpu" else _GPU_STEP_ELEMENTS
    return cap_models_by_memory(max(1, budget // max(1, batch * width)), recipe.device,
                                [n_features, *recipe.hidden, n_classes], batch)


def train_nets(X, Y, rows, recipe: NetRecipe, seeds, *, models_per_block=None,
               progress=None):
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
    Xt = _as_features(X, device)
    Yt = torch.as_tensor(np.asarray(Y), dtype=torch.float32, device=device)
    rows = np.asarray(rows, dtype=np.int64)
    n_nets, n_rows = rows.shape
    n_features, n_classes = Xt.shape[1], Yt.shape[1]
    if models_per_block is None:
        models_per_block = _models_per_block(recipe, n_rows, n_features, n_classes)

    def train(nets):
        rows_t = torch.as_tensor(rows[nets], device=device)
        scores = _constant_scores(Yt, rows_t)
        fitted = torch.isnan(scores)
        columns = [np.flatnonzero(f) for f in fitted.cpu().numpy()]
        weights, sampler_seeds = _initial_weights_and_sampler_seeds(
            recipe, [seeds[i] for i in nets], columns, n_features)
        params = [p.to(device) for p in _stack_initial_weights(
            weights, columns, recipe, n_features, n_classes)]
        if bool(fitted.any()):
            with torch.no_grad():
                params = _train_block(Xt, Yt, rows_t, fitted, params,
                                      sampler_seeds, recipe)
        if progress is not None:
            progress(len(nets))
        return _natural_layout(params), scores

    return train_in_blocks(n_nets, models_per_block, train)


# ------------------------------------------------------------ ensemble hook-up
def wrapper_seeds(seeds) -> list[int]:
    """The torch seed ``fit_base_model`` gives each base model (no random_state params)."""
    return [int(np.random.RandomState(int(seed)).randint(MAX_INT)) for seed in seeds]


def fit_net_base_models(estimator, X, Y, rows, seeds, empty_labels, *, verbose=0):
    """All MultiLabelNet base models of a bagging ensemble at once.

    Model i is what ``fit_base_model(estimator, X[rows[i]], Y[rows[i]], seed=seeds[i],
    empty_labels=empty_labels[i])`` makes, up to float rounding.

    Returns
    -------
    heads : LinearHeadEnsemble
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
        params, constant = train_nets(X, Y, rows, recipe, torch_seeds,
                                      progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    n_features = int(np.prod(np.shape(X)[1:]))
    heads = LinearHeadEnsemble(
        params, constant, np.asarray(torch_seeds, dtype=np.int64),
        np.full(len(rows), np.shape(rows)[1], dtype=np.int64), hidden=recipe.hidden,
        n_features=n_features, n_classes=int(np.shape(Y)[1]), device=recipe.device)
    models = LazyNetModels(estimator, heads, torch_seeds, empty_labels,
                           input_shape=tuple(int(s) for s in np.shape(X)[1:]))
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
            params, constant = train_nets(X_j, Y_j, np.arange(n_rows)[None], recipe, [seed],
                                          models_per_block=1)
        else:  # no rows: no net, the fixed empty-partition votes
            params = _natural_layout(_stack_initial_weights(
                [None], [()], recipe, int(np.prod(np.shape(X_j)[1:])), n_classes))
            constant = torch.full((1, n_classes), -math.inf)
            constant[0, torch.as_tensor(np.asarray(empty, dtype=np.int64))] = math.inf
        out.append(([p.cpu() for p in params], constant.cpu()))
    return out


def stack_partition_nets(estimator, parts, recipe, seeds, empty_labels, *, sizes,
                         input_shape, n_classes):
    """``heads_`` and the lazy ``estimators_`` from :func:`train_partition_nets`' output.

    Stacking fitted nets only serves vote counting, whose shapes do not depend on the
    training data, so a net's scores stay a function of its own partition.
    """
    params = [torch.cat(layer).to(recipe.device) for layer in zip(*(p for p, _ in parts))]
    constant = torch.cat([c for _, c in parts]).to(recipe.device)
    heads = LinearHeadEnsemble(
        params, constant, np.asarray(seeds, dtype=np.int64), np.asarray(sizes, np.int64),
        hidden=recipe.hidden, n_features=int(np.prod(input_shape)), n_classes=n_classes,
        device=recipe.device)
    return heads, LazyNetModels(estimator, heads, seeds, empty_labels,
                                input_shape=tuple(input_shape))


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
        from ._base import _ConstantAwareMultiLabel

        heads = self.heads
        constant = heads.constant_scores_[i].cpu().numpy().astype(np.float64)
        columns = np.flatnonzero(np.isnan(constant))
        wrapper = _ConstantAwareMultiLabel(self.estimator, empty_labels=self.empty_labels[i],
                                           seed=self.seeds[i])
        net = None
        if columns.size:
            net = clone(self.estimator)
            net.input_shape_ = self.input_shape
            net.n_features_in_ = heads.n_features_in_
            net.n_classes_ = int(columns.size)
            with seeded_torch(self.seeds[i], estimator_devices(net)):
                net.initialize()
            params = [p[i] for p in heads.params_]
            state = {}
            for layer in range(len(params) // 2):
                W, b = params[2 * layer].T, params[2 * layer + 1][0]  # (out, in), (out,)
                if layer == len(params) // 2 - 1:
                    W, b = W[columns], b[columns]
                state[f"layers.{2 * layer}.weight"] = W
                state[f"layers.{2 * layer}.bias"] = b
            net.module_.load_state_dict(state)
        return wrapper._set_fitted(constant, heads.sizes_[i], net)


# ------------------------------------------------------------------ exactness probe
@lru_cache(maxsize=1)
def replication_is_exact() -> bool:
    """Whether the vectorised path reproduces a real skorch fit in this environment.

    Trains a tiny net (3 features, 2 hidden units, 3 labels, 11 rows, batches of 4,
    3 epochs, Adam) both ways, from the same seed, and compares the weights. Cached
    per process.
    """
    from ._base import _ConstantAwareMultiLabel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(11, 3)).astype(np.float32)
    Y = (rng.random((11, 3)) < 0.5).astype(np.int64)
    Y[:, 2] = 1  # a constant column, left out of training
    Y[0, :2], Y[1, :2] = (0, 1), (1, 0)
    net = MultiLabelNet(MLPModule, module__hidden=(2,), max_epochs=3, batch_size=4, lr=0.05)
    seed = 12345
    try:  # any failure (e.g. changed internals) means: do not rely on the replica
        reference = _ConstantAwareMultiLabel(net, seed=seed).fit(X, Y)
        params, _ = train_nets(X, Y, np.arange(11)[None], net_recipe(net, X), [seed])
        own = [p[0] for p in params]
        expected = [p.detach() for p in reference.estimator_.module_.parameters()]
        got = [own[0].T, own[1][0], own[2].T[:2], own[3][0, :2]]
        return all(torch.allclose(a, b, rtol=1e-4, atol=1e-6)
                   for a, b in zip(got, expected, strict=True))
    except Exception:
        return False


def check_replication() -> bool:
    """:func:`replication_is_exact`, with a warning when it is not."""
    if replication_is_exact():
        return True
    warnings.warn(
        "the vectorised training of MultiLabelNet base models does not reproduce skorch's "
        f"training with torch {torch.__version__}; training them one by one instead.",
        RuntimeWarning, stacklevel=3)
    return False
