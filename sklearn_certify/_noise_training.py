"""Training on noisy inputs: the :class:`~sklearn_certify.nets.TrainingNoise` callback
(public through :mod:`sklearn_certify.nets`) and the helpers the nets share."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import torch
from skorch.callbacks import Callback

from ._consistency import check_consistency_params
from .losses import ConsistencyLoss

__all__ = ["TrainingNoise"]


def _as_float32(data):
    """A float32 copy or view of an array or tensor; None for other kinds of data."""
    if isinstance(data, torch.Tensor):
        return data.to(torch.float32)
    if isinstance(data, np.ndarray) or (
        hasattr(data, "__array__") and not isinstance(data, (Mapping, list, tuple))
    ):
        return np.asarray(data, dtype=np.float32)
    return None


def _accepted_kwargs(factory) -> set[str]:
    """Names of the keyword arguments a module class (or factory) accepts."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in params if p.kind in kinds}


class TrainingNoise(Callback):
    """skorch callback: fresh ``N(0, sigma^2 I)`` noise on the inputs of every training batch.

    The one training-noise mechanism: :class:`MultiLabelNet` uses it for its
    ``noise_sigma``, ``noise_copies`` and ``consistency``, and
    :class:`~sklearn_certify.SmoothedMultiLabelClassifier` adds it to other skorch nets.
    The batch's input tensor is moved to the net's device and the noise is drawn there
    (a GPU net gets GPU-drawn noise; skorch's own move is then a no-op); the noisy
    tensor replaces the input in the batch (a list, as the default collation makes). A
    batch that cannot take it (a tuple) gets the noise written into its input tensor,
    on that tensor's device (one copy only). Validation and prediction batches are left
    clean.

    With ``copies = m > 1`` or ``consistency > 0`` (consistency regularisation, see
    :mod:`sklearn_certify._consistency`), each training batch ``(x, y)`` of ``B``
    examples becomes its ``m`` noisy copies, copy-major (``m * B`` rows, ``y``
    repeated ``m`` times), and for the duration of training (``on_train_begin`` to
    ``on_train_end``) the net's criterion is wrapped in
    :class:`~sklearn_certify.losses.ConsistencyLoss`: the mean criterion over the copies
    plus ``consistency`` times the divergence of the copies' predictions. This is how
    any skorch net gets consistency training:
    ``callbacks=[("noise", TrainingNoise(0.5, copies=2, consistency=1.0))]``.

    Parameters
    ----------
    sigma : float or None, default=None
        Standard deviation of the noise; None uses the net's ``noise_sigma``.
    copies : int or None, default=None
        Noisy copies of each example per batch; None uses the net's ``noise_copies``
        (1 when the net has none or it is None).
    consistency : float or None, default=None
        Weight of the consistency term; None uses the net's ``consistency`` (0 when the
        net has none or it is None).
    divergence : {"bernoulli-kl", "softmax-kl"}, default="bernoulli-kl"
        Divergence of the consistency term
        (:func:`~sklearn_certify._consistency.consistency_divergence`).
    """

    def __init__(
        self,
        sigma: float | None = None,
        copies: int | None = None,
        consistency: float | None = None,
        divergence: str = "bernoulli-kl",
    ):
        self.sigma = sigma
        self.copies = copies
        self.consistency = consistency
        self.divergence = divergence

    def _settings(self, net) -> tuple[float, int, float]:
        sigma = getattr(net, "noise_sigma", 0.0) if self.sigma is None else self.sigma
        copies = getattr(net, "noise_copies", None) if self.copies is None else self.copies
        weight = getattr(net, "consistency", None) if self.consistency is None else self.consistency
        return sigma, 1 if copies is None else copies, 0.0 if weight is None else weight

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        sigma, copies, weight = self._settings(net)
        self._wrapped = None
        if not sigma or (copies == 1 and weight == 0):
            return
        check_consistency_params(copies, weight, self.divergence)
        if isinstance(net.criterion_, ConsistencyLoss):
            return  # already a consistency loss (the user's, or another callback's)
        self._wrapped = net.criterion_
        net.criterion_ = ConsistencyLoss(net.criterion_, copies, weight, self.divergence)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        wrapped = getattr(self, "_wrapped", None)
        if wrapped is not None and isinstance(net.criterion_, ConsistencyLoss):
            net.criterion_ = wrapped  # the net is left with its own criterion
        self._wrapped = None

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        sigma, copies, _ = self._settings(net)
        if not training or not sigma:
            return
        Xi = batch[0]
        if not (torch.is_tensor(Xi) and Xi.is_floating_point()):
            raise TypeError(
                "training noise needs floating-point tensor batches, got "
                f"{type(Xi).__name__}; pass X as one float array or tensor."
            )
        if isinstance(batch, list):
            device = Xi.device if net.device is None else torch.device(net.device)
            Xi = Xi.to(device)
            if copies == 1:
                batch[0] = Xi + sigma * torch.randn_like(Xi)
                return
            noise = torch.randn((copies, *Xi.shape), device=device, dtype=Xi.dtype)
            batch[0] = (Xi.unsqueeze(0) + sigma * noise).reshape(-1, *Xi.shape[1:])
            yi = batch[1]
            if torch.is_tensor(yi):
                batch[1] = yi.repeat(copies, *([1] * (yi.ndim - 1)))
            elif yi is not None:
                raise TypeError(f"noise_copies > 1 needs tensor targets, got {type(yi).__name__}.")
        elif copies == 1:  # a tuple cannot take a moved tensor: noise on its own device
            Xi.copy_(Xi + sigma * torch.randn_like(Xi))
        else:
            raise TypeError(
                "noise_copies > 1 needs list batches (skorch's default collation); got a tuple."
            )
