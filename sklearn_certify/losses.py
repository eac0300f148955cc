"""The asymmetric loss (ASL) of multi-label training, as a torch module, and the
consistency-regularisation wrapper :class:`ConsistencyLoss` of noise-robust training.

Also importable from :mod:`sklearn_certify.nets`, beside the nets that use it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._consistency import ConsistencyLoss

__all__ = ["AsymmetricLoss", "ConsistencyLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class AsymmetricLoss(nn.Module):
    r"""Asymmetric loss (ASL) for multi-label classification.

    The loss of MultiGuard (Jia et al., 2022, Section 4.1) and Ben-Baruch / Ridnik et
    al. (2020). With :math:`q_j = \sigma(z_j)` the predicted probability of label
    :math:`j` and :math:`y_j \in \{0, 1\}` its target, the loss of one input is

    .. math::

        L = \sum_j -y_j L_{j+} - (1 - y_j) L_{j-}, \quad
        L_{j+} = (1 - q_j)^{\gamma_+} \log q_j, \quad
        L_{j-} = q_{j,m}^{\gamma_-} \log(1 - q_{j,m}),

    where :math:`q_{j,m} = \max(q_j - m, 0)` is the shifted probability: easy
    negatives (:math:`q_j \le m`) contribute nothing.

    Parameters
    ----------
    gamma_pos : float, default=0.0
        Focusing exponent :math:`\gamma_+` of the positive labels.
    gamma_neg : float, default=4.0
        Focusing exponent :math:`\gamma_-` of the negative labels.
    clip : float, default=0.05
        Probability margin :math:`m` in ``[0, 1)``.
    eps : float, default=1e-8
        Floor of the arguments of the logarithms and of the focusing bases, for
        numerical stability.
    reduction : {"mean", "sum", "none"}, default="mean"
        ``"mean"``: mean over the batch of the per-input loss (the sum over labels),
        unlike :class:`torch.nn.BCEWithLogitsLoss`, which averages over labels too.
        ``"sum"``: sum over inputs and labels. ``"none"``: the element-wise terms,
        shape ``(n_inputs, n_classes)``.

    Notes
    -----
    With ``gamma_pos=gamma_neg=0`` and ``clip=0`` the loss is binary cross-entropy on
    the logits (summed over labels).

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.losses import AsymmetricLoss
    >>> loss = AsymmetricLoss()
    >>> logits = torch.tensor([[2.0, -1.0, 0.5]])
    >>> targets = torch.tensor([[1.0, 0.0, 1.0]])
    >>> round(float(loss(logits, targets)), 4)
    0.6016
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if gamma_pos < 0 or gamma_neg < 0:
            raise ValueError(
                f"gamma_pos and gamma_neg must be >= 0, got {gamma_pos} and {gamma_neg}."
            )
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"clip must be in [0, 1), got {clip}.")
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}.")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}.")
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)
        self.eps = float(eps)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (n_inputs, n_classes) against 0/1 ``targets`` of the same shape."""
        if logits.shape != targets.shape:
            raise ValueError(
                f"logits and targets must have the same shape, got {tuple(logits.shape)} "
                f"and {tuple(targets.shape)}."
            )
        targets = targets.to(logits.dtype)
        log_eps = math.log(self.eps)

        # log q and log(1 - q) through logsigmoid: exact for large |logits|.
        log_pos = F.logsigmoid(logits).clamp(min=log_eps)
        prob_neg = torch.sigmoid(-logits)  # 1 - q
        if self.clip > 0:
            # 1 - max(q - m, 0) = min(1 - q + m, 1)
            log_neg = torch.log((prob_neg + self.clip).clamp(max=1.0))
        else:
            log_neg = F.logsigmoid(-logits)
        log_neg = log_neg.clamp(min=log_eps)

        if self.gamma_pos > 0:
            log_pos = prob_neg.clamp(min=self.eps).pow(self.gamma_pos) * log_pos
        if self.gamma_neg > 0:
            shifted = (1.0 - prob_neg - self.clip).clamp(min=0.0)  # max(q - m, 0)
            # Where shifted == 0 the log term is exactly 0, so the eps floor changes no
            # value; it only keeps pow's gradient finite for gamma_neg < 1.
            log_neg = shifted.clamp(min=self.eps).pow(self.gamma_neg) * log_neg

        loss = -(targets * log_pos + (1.0 - targets) * log_neg)
        if self.reduction == "mean":
            return loss.sum(dim=1).mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss
