"""A replica of skorch's training loop for MultiLabelNet(MLPModule) base models.

The stacked trainer (:mod:`sklearn_certify._stacked._nets`) gives every net
what a one-by-one skorch fit would give it. This module holds what that takes, each
piece mirroring a specific source:

* :func:`net_recipe` / :func:`net_blocker`: which configurations are reproduced --
  ``skorch.net.NeuralNet`` (``fit_loop``, ``run_single_epoch``, ``train_step_single``,
  ``get_iterator``, ``initialize_module``, ``initialize_optimizer``), the default
  ``skorch.dataset.Dataset`` and no callbacks, ``train_split=None``;
* :func:`initial_weights_and_sampler_seeds`: the initial weights and the draws from
  torch's global generator, in order -- ``MLPModule``'s constructor after
  ``torch.manual_seed``; per epoch, ``torch.utils.data.dataloader``'s
  ``_BaseDataLoaderIter.__init__`` draws the iterator's base seed
  (``torch.empty((), dtype=torch.int64).random_()``) and, when shuffling,
  ``torch.utils.data.sampler.RandomSampler.__iter__`` draws its own seed the same way;
* :func:`epoch_orders`: ``RandomSampler``'s ``torch.randperm(n, generator=g)`` with a
  fresh ``torch.Generator`` seeded by that seed; ``BatchSampler`` then cuts the order
  into batches of ``batch_size`` (``drop_last=False``: the last one short).

Because this follows implementation details of torch and skorch, the stacked trainer
checks it once per process against a real skorch fit
(:func:`~sklearn_certify._stacked._nets.replication_check`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from .._utils._random import is_int
from .._utils._torch_seed import seeded_torch
from ..losses import AsymmetricLoss
from ..nets import MLPModule, MultiLabelNet

__all__ = [
    "ELEMENTWISE_OPTIMIZERS",
    "Blocker",
    "NetRecipe",
    "NotReplicable",
    "epoch_orders",
    "initial_weights_and_sampler_seeds",
    "net_blocker",
    "net_recipe",
]

#: Optimisers whose update of a tensor entry depends on that entry's own gradient
#: history only (and on scalar hyper-parameters and the step count).
ELEMENTWISE_OPTIMIZERS = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.RMSprop,
    torch.optim.Adagrad,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
)


@dataclass(frozen=True)
class NetRecipe:
    """Everything about a MultiLabelNet's training that the replica reproduces."""

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


@dataclass(frozen=True)
class Blocker:
    """Why the replica cannot train a net: the parameter at fault and the reason."""

    parameter: str
    reason: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.reason}"


class NotReplicable(ValueError):
    """Raised by :func:`net_recipe`; ``blocker`` is the :class:`Blocker`."""

    def __init__(self, parameter: str, reason: str):
        self.blocker = Blocker(parameter, reason)
        super().__init__(str(self.blocker))


def _criterion_loss(net) -> tuple[object, bool, bool]:
    """(element-wise loss, mean over rows, mean over labels) of the net's criterion."""
    params = net.get_params_for("criterion")
    reduction = params.get("reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise NotReplicable("criterion__reduction", f"{reduction!r} is not 'mean' or 'sum'")
    if net.criterion is AsymmetricLoss:
        if set(params) - {"gamma_pos", "gamma_neg", "clip", "eps", "reduction"}:
            raise NotReplicable("criterion__*", f"unsupported parameters {sorted(params)}")
        try:
            loss = AsymmetricLoss(**{**params, "reduction": "none"})  # validates them
        except (TypeError, ValueError) as exc:
            raise NotReplicable("criterion__*", f"invalid parameters ({exc})") from None
        return loss, reduction == "mean", False
    if net.criterion is torch.nn.BCEWithLogitsLoss:
        if set(params) - {"reduction"}:
            raise NotReplicable("criterion__*", f"unsupported parameters {sorted(params)}")
        return "bce", reduction == "mean", reduction == "mean"
    raise NotReplicable(
        "criterion", f"{net.criterion!r} is not AsymmetricLoss or BCEWithLogitsLoss (the class)"
    )


def net_blocker(estimator, X) -> Blocker | None:
    """Why the replica cannot train ``estimator`` on ``X`` (a :class:`Blocker`); None if
    it can.

    It can when it is exactly a :class:`~sklearn_certify.nets.MultiLabelNet` with

    * ``module`` the class :class:`~sklearn_certify.nets.MLPModule` (or None and 2-D
      ``X``), no dropout, no ``module__n_features``/``module__n_classes``;
    * ``criterion`` the class :class:`~sklearn_certify.losses.AsymmetricLoss` or
      ``torch.nn.BCEWithLogitsLoss`` (without weights), reduction "mean" or "sum";
    * ``optimizer`` one of ``ELEMENTWISE_OPTIMIZERS``, without ``param_groups``,
      ``differentiable`` or ``capturable``, with arguments the optimiser accepts;
    * ``noise_sigma=0``, ``train_split=None``, no callbacks, no ``compile``, the
      default dataset (no ``dataset__*``) and ``DataLoader`` with at most
      ``iterator_train__shuffle`` and ``iterator_train__batch_size`` set, integer
      ``batch_size`` and ``max_epochs``, no ``random_state`` parameters, and a CPU or an
      available CUDA device (None: the CPU).
    """
    try:
        net_recipe(estimator, X)
    except NotReplicable as exc:
        return exc.blocker
    return None


def net_recipe(estimator, X) -> NetRecipe:
    """The :class:`NetRecipe` of a MultiLabelNet the replica can train; else
    :class:`NotReplicable` says why not."""
    from skorch.dataset import Dataset
    from torch.utils.data import DataLoader

    net = estimator
    if type(net) is not MultiLabelNet:
        raise NotReplicable("estimator", f"{type(net).__name__} is not a MultiLabelNet")
    if not (net.module is MLPModule or (net.module is None and np.ndim(X) == 2)):
        raise NotReplicable("module", "not MLPModule (or None with 2-D X)")
    module_kwargs = net.get_params_for("module")
    if set(module_kwargs) - {"hidden", "dropout"}:
        raise NotReplicable("module__*", f"unsupported parameters {sorted(module_kwargs)}")
    if module_kwargs.get("dropout", 0.0) != 0:
        raise NotReplicable("module__dropout", "dropout > 0")
    default_hidden = inspect.signature(MLPModule).parameters["hidden"].default
    hidden = MLPModule.hidden_widths(module_kwargs.get("hidden", default_hidden))
    loss, mean_rows, mean_labels = _criterion_loss(net)
    if net.optimizer not in ELEMENTWISE_OPTIMIZERS:
        raise NotReplicable("optimizer", f"{net.optimizer!r} is not element-wise")
    optimizer_kwargs = {"lr": net.lr, **net.get_params_for("optimizer")}
    if "param_groups" in optimizer_kwargs:
        raise NotReplicable("optimizer__param_groups", "per-group settings")
    for flag in ("differentiable", "capturable"):  # autograd through the step, CUDA graphs
        if optimizer_kwargs.get(flag):
            raise NotReplicable(f"optimizer__{flag}", "True")
    try:  # invalid arguments: the one-by-one path reports them per base model
        net.optimizer([torch.zeros(1, requires_grad=True)], **optimizer_kwargs)
    except (TypeError, ValueError) as exc:
        raise NotReplicable("optimizer__*", f"invalid arguments ({exc})") from None
    if net.noise_sigma:
        raise NotReplicable("noise_sigma", "> 0 (training noise)")
    if net.train_split is not None:
        raise NotReplicable("train_split", "not None")
    if net.callbacks not in (None, "disable") and len(net.callbacks):
        raise NotReplicable("callbacks", "skorch callbacks run inside the training loop")
    if getattr(net, "compile", False):
        raise NotReplicable("compile", "True")
    if net.dataset is not Dataset or net.iterator_train is not DataLoader:
        raise NotReplicable("dataset", "a custom dataset or iterator_train")
    loader_kwargs = net.get_params_for("iterator_train")
    if set(loader_kwargs) - {"shuffle", "batch_size"}:
        raise NotReplicable("iterator_train__*", f"unsupported parameters {sorted(loader_kwargs)}")
    if any(
        key == "random_state" or key.endswith("__random_state") for key in net.get_params(deep=True)
    ):
        raise NotReplicable("random_state", "parameters named random_state")
    if net.get_params_for("dataset"):
        raise NotReplicable("dataset__*", "dataset parameters")
    try:  # skorch leaves the module and the data where they are for device=None
        device = torch.device("cpu" if net.device is None else net.device)
    except (TypeError, RuntimeError):
        raise NotReplicable("device", f"{net.device!r} is not a device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NotReplicable("device", "CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise NotReplicable("device", f"{device} is not a CPU or CUDA device")
    batch_size = loader_kwargs.get("batch_size", net.batch_size)
    if not is_int(batch_size) or batch_size == 0 or batch_size < -1:
        raise NotReplicable("batch_size", f"{batch_size!r} is not a positive int or -1")
    if not is_int(net.max_epochs):
        raise NotReplicable("max_epochs", f"{net.max_epochs!r} is not an int")
    return NetRecipe(
        hidden=hidden,
        module_kwargs=module_kwargs,
        loss=loss,
        mean_over_rows=mean_rows,
        mean_over_labels=mean_labels,
        optimizer=net.optimizer,
        optimizer_kwargs=optimizer_kwargs,
        epochs=int(net.max_epochs),
        batch_size=batch_size,
        shuffle=bool(loader_kwargs.get("shuffle", True)),
        device=device,
    )


def initial_weights_and_sampler_seeds(recipe: NetRecipe, seeds, columns, n_features: int):
    """Each net's initial weights and its per-epoch RandomSampler seeds, as skorch draws them.

    Net i: torch's CPU generator seeded with ``seeds[i]`` builds its module (one output
    per trained column ``columns[i]``), then each epoch draws the DataLoader iterator's
    base seed and, when shuffling, the RandomSampler's seed, from which the sampler
    takes ``torch.randperm`` with a fresh generator (see :func:`epoch_orders`).

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
            module = MLPModule(n_features=n_features, n_classes=len(cols), **recipe.module_kwargs)
            weights.append(
                [p.detach() for layer in module.linear_layers() for p in (layer.weight, layer.bias)]
            )
            for epoch in range(epochs):
                draw.random_()  # the DataLoader iterator's base seed
                if recipe.shuffle:  # RandomSampler's seed
                    sampler_seeds[i, epoch] = int(draw.random_().item())
    return weights, (sampler_seeds if recipe.shuffle else None)


def epoch_orders(sampler_seeds, n_rows: int) -> torch.Tensor:
    """Row positions (n_nets, n_rows) in batch order for one epoch: RandomSampler's
    ``torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))`` (one
    Generator reused, reseeded: the same permutation)."""
    generator = torch.Generator()
    return torch.stack(
        [
            torch.randperm(n_rows, generator=generator.manual_seed(int(seed)))
            if seed >= 0
            else torch.arange(n_rows)
            for seed in sampler_seeds
        ]
    )
