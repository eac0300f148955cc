"""Noise-robust training: several noisy copies per example and a consistency term.

Consistency regularisation (Jeong and Shin, NeurIPS 2020) trains the base model of
randomized smoothing on ``m`` noisy copies ``x + eps_1, ..., x + eps_m`` of every
training example, with the loss

.. math::

    L = \\frac{1}{m} \\sum_{c=1}^m \\ell(f(x + \\epsilon_c), y)
        + \\lambda \\, D(f(x + \\epsilon_1), \\dots, f(x + \\epsilon_m)),

the mean base loss over the copies plus a weight times a divergence that pulls the
copies' predictions together. For multi-label smoothing the smoothed classifier counts
the base model's top-k' labels, so what must be stable under noise is that label set.
Two divergences are implemented (:class:`ConsistencyLoss`):

* ``"bernoulli-kl"``: per label, the KL divergence of each copy's Bernoulli (sigmoid)
  prediction from the copies' mean prediction, summed over labels;
* ``"softmax-kl"``: the KL divergence of the copies' mean softmax over the labels from
  each copy's softmax (the softmax is the model's distribution of its top-1 label).

The mechanism is a skorch callback, :class:`~sklearn_certify.nets.TrainingNoise`: it
replaces each training batch ``(x, y)`` by its ``m`` noisy copies (copy-major:
``m * B`` rows, targets repeated) and, for the duration of training, wraps the net's
criterion in :class:`ConsistencyLoss`, which splits the scores back into ``m`` copies.
Any skorch net takes it (``callbacks=[TrainingNoise(sigma, copies=2, consistency=5)]``);
:class:`~sklearn_certify.nets.MultiLabelNet` has it built in (``noise_sigma``,
``noise_copies``, ``consistency``).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConsistencyLoss", "DIVERGENCES", "consistency_divergence"]

#: The divergences :class:`ConsistencyLoss` implements.
DIVERGENCES = ("bernoulli-kl", "softmax-kl")

#: Floor of the probabilities inside the logarithms.
_EPS = 1e-6


def consistency_divergence(scores: torch.Tensor, divergence: str = "bernoulli-kl") -> torch.Tensor:
    """Mean over the examples of the divergence between the copies' predictions.

    Parameters
    ----------
    scores : torch.Tensor of shape (m, n_inputs, n_labels)
        Scores (logits) of ``m`` noisy copies of each input.
    divergence : {"bernoulli-kl", "softmax-kl"}
        ``"bernoulli-kl"``: ``mean_c sum_j KL(Ber(qbar_j) || Ber(q_cj))`` with
        ``q = sigmoid(scores)`` and ``qbar`` its mean over the copies.
        ``"softmax-kl"``: ``mean_c KL(pbar || p_c)`` with ``p = softmax(scores)``
        over the labels and ``pbar`` its mean over the copies.

    Returns
    -------
    torch.Tensor
        A scalar, 0 when all copies score alike (and always for one copy).
    """
    if divergence == "bernoulli-kl":
        q = torch.sigmoid(scores).clamp(_EPS, 1 - _EPS)
        qbar = q.mean(0, keepdim=True)
        kl = qbar * (qbar.log() - q.log()) + (1 - qbar) * ((1 - qbar).log() - (1 - q).log())
        return kl.sum(-1).mean()
    if divergence == "softmax-kl":
        log_p = F.log_softmax(scores, dim=-1)
        pbar = log_p.exp().mean(0, keepdim=True)
        kl = pbar * (pbar.clamp(min=1e-12).log() - log_p)
        return kl.sum(-1).mean()
    raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}.")


class ConsistencyLoss(nn.Module):
    """Criterion wrapper: mean base loss over ``copies`` noisy copies plus a consistency term.

    In training mode, the scores and targets it receives hold ``copies`` stacked copies
    of one batch (copy-major, as :class:`~sklearn_certify.nets.TrainingNoise` makes
    them: rows ``c * B .. (c + 1) * B - 1`` are copy ``c``). The loss is the mean of
    ``criterion`` over the copies plus ``weight`` times
    :func:`consistency_divergence`. In evaluation mode (skorch's validation) it is
    ``criterion`` itself. With ``copies=1`` and ``weight=0`` it is ``criterion`` on the
    one noisy copy: plain Gaussian data augmentation.

    Parameters
    ----------
    criterion : torch.nn.Module
        The base loss of scores against targets (e.g.
        :class:`~sklearn_certify.losses.AsymmetricLoss`), with a mean reduction.
    copies : int, default=2
        Noisy copies per example, ``m``.
    weight : float, default=1.0
        Weight ``lambda`` of the consistency term.
    divergence : {"bernoulli-kl", "softmax-kl"}, default="bernoulli-kl"
        See :func:`consistency_divergence`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.losses import AsymmetricLoss, ConsistencyLoss
    >>> loss = ConsistencyLoss(AsymmetricLoss(), copies=2, weight=1.0)
    >>> scores = torch.zeros(6, 4)       # 2 copies of a batch of 3
    >>> targets = torch.ones(6, 4)
    >>> bool(loss(scores, targets) == AsymmetricLoss()(scores[:3], targets[:3]))
    True
    """

    def __init__(
        self,
        criterion: nn.Module,
        copies: int = 2,
        weight: float = 1.0,
        divergence: str = "bernoulli-kl",
    ) -> None:
        super().__init__()
        check_consistency_params(copies, weight, divergence)
        self.criterion = criterion
        self.copies = int(copies)
        self.weight = float(weight)
        self.divergence = divergence

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of stacked copies' ``scores`` against their (repeated) ``targets``."""
        m = self.copies
        if not self.training or m == 1 and self.weight == 0:
            return self.criterion(scores, targets)
        if len(scores) % m:
            raise ValueError(f"{len(scores)} score rows are not {m} copies of one batch.")
        n = len(scores) // m
        base = (
            sum(
                self.criterion(scores[c * n : (c + 1) * n], targets[c * n : (c + 1) * n])
                for c in range(m)
            )
            / m
        )
        if self.weight == 0 or m == 1:
            return base
        stacked = scores.reshape(m, n, *scores.shape[1:]).flatten(2)
        return base + self.weight * consistency_divergence(stacked, self.divergence)


def check_consistency_params(copies, weight, divergence) -> None:
    """Clear errors for invalid ``copies``, ``weight`` or ``divergence``."""
    if not isinstance(copies, numbers.Integral) or isinstance(copies, bool) or copies < 1:
        raise ValueError(f"noise_copies must be an int >= 1, got {copies!r}.")
    if (
        not isinstance(weight, numbers.Real)
        or isinstance(weight, bool)
        or not float(weight) >= 0
        or weight == float("inf")
    ):
        raise ValueError(f"consistency must be a finite float >= 0, got {weight!r}.")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}.")
