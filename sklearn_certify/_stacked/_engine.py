"""One engine for N stacked multi-label heads (linear or MLP), trained as one program.

The ensembles train hundreds or thousands of small base models, each on its own rows.
Here the weights of N models are stacked along a leading axis and every layer runs as
one batched product (``torch.baddbmm`` / ``torch.bmm``). This module holds what the two
stacked trainers share:

* the **forward and backward pass** of N stacked ReLU networks (any depth, linear heads
  included) with the gradient of an element-wise loss written out by hand
  (:func:`stacked_gradients`), and the inference pass (:func:`forward_shared`, and
  :func:`forward_blocks`, whose scores of an input do not depend on the batch);
* the **loss gradients** (:class:`~sklearn_certify.losses.AsymmetricLoss`, binary
  cross-entropy, or autograd through any element-wise callable);
* the **constant-label-column rule** of the ensembles' base models, batched
  (:func:`constant_scores`);
* **block sizing** (:func:`models_per_block`, capped on a GPU by
  :func:`cap_models_by_memory`), the block loop (:func:`train_in_blocks`, which retries
  a block that runs out of device memory in halves) and the layouts.

Layouts. *Natural*: ``W (N, in, out)``, ``b (N, 1, out)`` (inference,
:class:`~sklearn_certify._stacked._models.StackedModels`). *Label-major*:
``W (N, out, in)``, ``b (N, out, 1)`` (training: activations are kept
``(N, width, rows)``, so the products are (out x in) times (in x rows), fast on a CPU
for narrow outputs). :func:`natural_layout` converts one to the other.

Why stacking is exact: the batched objective is the sum over models of each model's
own loss, so the gradient reaching model i's parameters is model i's gradient alone,
and an element-wise optimiser moves each entry by its own gradient history. Model i
follows the trajectory of its own fit, up to floating-point rounding of the batched
products.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._utils._scores import nan_scores_error
from ..losses import AsymmetricLoss

__all__ = [
    "LOSSES",
    "SCORE_ROWS",
    "Adam",
    "as_features",
    "cap_models_by_memory",
    "constant_scores",
    "elementwise_loss",
    "first_layer_matrix",
    "forward_blocks",
    "forward_shared",
    "loss_grad",
    "models_per_block",
    "natural_layout",
    "stacked_gradients",
    "top_indices",
    "train_in_blocks",
]

LOSSES = ("asl", "bce")
# GPU blocks are also capped by memory: parameters, gradients, two Adam moments and a
# layout copy of each, plus the step's activations, within this fraction of the free
# device memory (see _model_bytes).
_STATE_COPIES = 5
_GPU_MEMORY_FRACTION = 0.5
# Inputs per product in forward_blocks: every product has this many rows, whatever the
# batch, so the BLAS / cuBLAS kernel (and its summation order) is the same for every
# input (a 1-row product runs as a matrix-vector kernel, 2-3 and >= 4 rows as others).
SCORE_ROWS = 64


def as_features(X, device: torch.device) -> torch.Tensor:
    """X as a float32 ``(n, d)`` tensor on ``device`` (inputs of any shape flattened)."""
    X = torch.as_tensor(X) if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 dimensions, got shape {tuple(X.shape)}.")
    return X.reshape(len(X), -1).to(device=device, dtype=torch.float32)


def elementwise_loss(loss):
    """An AsymmetricLoss, "bce", or a callable ``(logits, targets) -> element-wise loss``."""
    if loss == "asl":
        return AsymmetricLoss(reduction="none")
    if loss == "bce" or isinstance(loss, AsymmetricLoss):
        return loss
    if isinstance(loss, str):
        raise ValueError(f"loss must be one of {list(LOSSES)} or a callable, got {loss!r}.")
    if not callable(loss):
        raise TypeError(f"loss must be one of {list(LOSSES)} or a callable, got {loss!r}.")
    return loss


def models_per_block(device: torch.device, elements_per_model: int, *, cpu: int, gpu: int) -> int:
    """Models trained together: the largest per-step tensor holds about ``cpu`` (or
    ``gpu``) values; small blocks stay in a CPU's cache, large ones fill a GPU."""
    budget = cpu if device.type == "cpu" else gpu
    return max(1, budget // max(1, int(elements_per_model)))


def _model_bytes(layer_sizes: Sequence[int], rows: int) -> int:
    """Device bytes one model of a batched block takes while training (float32).

    ``layer_sizes`` is ``(d, h1, ..., c)`` and ``rows`` the rows of one step. Counted:
    the parameters, their gradients, two optimiser moments (Adam) and one layout copy
    (``_STATE_COPIES`` in all), then the step's gathered inputs (twice: both layouts)
    and three tensors per layer output (pre-activation, activation, gradient).
    """
    params = sum((n_in + 1) * n_out for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]))
    activations = rows * (2 * layer_sizes[0] + 3 * sum(layer_sizes[1:]))
    return 4 * (_STATE_COPIES * params + activations)


def _memory_budget(device: torch.device) -> int | None:
    """Bytes a batched block may take on ``device``: a fraction of a CUDA device's free
    memory; None (no cap) on the CPU."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free * _GPU_MEMORY_FRACTION)


def cap_models_by_memory(
    n_models: int, device: torch.device, layer_sizes: Sequence[int], rows: int
) -> int:
    """``n_models`` capped so that a block fits the device's memory budget (at least 1)."""
    budget = _memory_budget(device)
    if budget is None:
        return n_models
    return max(1, min(n_models, budget // _model_bytes(layer_sizes, rows)))


def train_in_blocks(n_models: int, models_per_block: int, train_block):
    """``train_block(models)`` over consecutive blocks of at most ``models_per_block``
    models; each returns ``(params, constant_scores)`` with a leading model axis.

    Returns the blocks' parameters and constant scores concatenated along that axis.
    A device out-of-memory error halves the block and trains it again (down to one
    model, which then raises): the models do not depend on the block size (up to float
    rounding), so running out of memory costs time, not ``fit``.
    """
    out_of_memory = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    results, first, size = [], 0, max(1, int(models_per_block))
    while first < n_models:
        models = np.arange(first, min(first + size, n_models))
        try:
            results.append(train_block(models))
        except out_of_memory:
            if len(models) == 1:
                raise
            size = (len(models) + 1) // 2
        else:
            first += len(models)
            continue
        if torch.cuda.is_initialized():  # outside the except: its frames are released
            torch.cuda.empty_cache()
    params = [torch.cat(parts) for parts in zip(*(p for p, _ in results))]
    return params, torch.cat([scores for _, scores in results])


# ----------------------------------------------------------- constant label columns
def constant_scores(
    Y: torch.Tensor, rows: torch.Tensor, sizes=None, *, max_elements: int = 2**20
) -> torch.Tensor:
    """The ensembles' constant-column rule for N models at once.

    Model i is trained on the rows ``rows[i, :sizes[i]]`` of the 0/1 matrix ``Y``
    (``sizes=None``: all of ``rows[i]``). Returns ``(N, c)``: ``+inf`` for a label
    present in every one of its rows, ``-inf`` for a label absent from all of them
    (every label of a model without rows), NaN for the labels it is trained on -- the
    rule of :class:`sklearn_certify.ensembles._base_model._ConstantAwareMultiLabel`.
    """
    n_models, width = rows.shape
    n_classes = Y.shape[1]
    if sizes is None:
        sizes = torch.full((n_models,), width, device=Y.device)
    sizes = torch.as_tensor(sizes, device=Y.device).to(Y.dtype)
    valid = torch.arange(width, device=Y.device)[None, :] < sizes[:, None]  # (N, m)
    positives = torch.empty((n_models, n_classes), dtype=Y.dtype, device=Y.device)
    step = max(1, max_elements // max(1, width * n_classes))
    for first in range(0, n_models, step):  # a bounded (step, m, c) gather at a time
        block = slice(first, first + step)
        positives[block] = (Y[rows[block]] * valid[block, :, None]).sum(dim=1)
    scores = torch.full_like(positives, float("nan"))
    scores[positives == 0] = -math.inf
    scores[(positives == sizes[:, None]) & (sizes[:, None] > 0)] = math.inf
    return scores


# -------------------------------------------------------------------- loss gradients
def _power(x: torch.Tensor, exponent: float) -> torch.Tensor:
    """``x ** exponent``, by repeated products for small integer exponents (faster)."""
    if exponent == int(exponent) and 0 <= exponent <= 8:
        out = torch.ones_like(x) if exponent == 0 else x
        for _ in range(int(exponent) - 1):
            out = out * x
        return out
    return x.pow(exponent)


def _at_least(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Float indicator ``x >= threshold`` (written straight into a float tensor: much
    faster on the CPU than a boolean mask converted by a product or ``where``)."""
    return torch.ge(x, threshold, out=torch.empty_like(x))


def _asl_grad(z: torch.Tensor, targets: torch.Tensor, asl: AsymmetricLoss) -> torch.Tensor:
    """Derivative of :class:`~sklearn_certify.losses.AsymmetricLoss`'s element-wise terms.

    The chain rule through the module's own formula, clamps included (a clamp passes
    the gradient where its input is inside its bounds, as torch's does); ``targets``
    are 0/1 floats.
    """
    eps, clip = asl.eps, asl.clip
    log_eps = math.log(eps)
    prob_neg = torch.sigmoid(-z)  # 1 - q
    slope = prob_neg * (1.0 - prob_neg)  # q (1 - q) = d q / dz
    # positive term L+ = clamp(log q, log eps) [* clamp(1 - q, eps) ** gamma_pos];
    # d log q / dz = 1 - q where log q >= log eps, i.e. where z >= logit(eps)
    d_pos = prob_neg * _at_least(z, math.log(eps / (1.0 - eps)))
    if asl.gamma_pos > 0:
        log_pos = F.logsigmoid(z).clamp_(min=log_eps)
        base = prob_neg.clamp(min=eps)
        d_base = -slope * _at_least(prob_neg, eps)
        d_pos = (
            asl.gamma_pos * _power(base, asl.gamma_pos - 1) * d_base * log_pos
            + _power(base, asl.gamma_pos) * d_pos
        )
    # negative term L- = clamp(log(1 - q_m), log eps) [* clamp(q_m, eps) ** gamma_neg],
    # 1 - q_m = min(1 - q + clip, 1)
    if clip > 0:
        shifted_neg = prob_neg + clip
        inner = shifted_neg.clamp(max=1.0)
        log_neg = torch.log(inner)
        d_neg = slope / inner
        d_neg.mul_(_at_least(-shifted_neg, -1.0)).mul_(_at_least(log_neg, log_eps)).neg_()
    else:
        log_neg = F.logsigmoid(-z)
        d_neg = (prob_neg - 1.0).mul_(_at_least(log_neg, log_eps))
    if asl.gamma_neg > 0:
        log_neg = log_neg.clamp_(min=log_eps)
        shifted = 1.0 - prob_neg - clip  # q - clip
        base = shifted.clamp(min=eps)
        d_base = slope.mul_(_at_least(shifted, eps))
        power = _power(base, asl.gamma_neg - 1)
        d_neg = (
            (asl.gamma_neg * power).mul_(d_base).mul_(log_neg).add_(power.mul_(base).mul_(d_neg))
        )
    # -(y dL+ + (1 - y) dL-), y in {0, 1}
    return (d_pos.sub_(d_neg)).mul_(targets).add_(d_neg).neg_()


def loss_grad(loss_fn, z: torch.Tensor, targets: torch.Tensor):
    """Element-wise derivative of the loss with respect to the logits ``z``."""
    if isinstance(loss_fn, AsymmetricLoss):
        return _asl_grad(z, targets, loss_fn)
    if loss_fn == "bce":
        return torch.sigmoid(z) - targets
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(z, targets).sum(), z)
    return grad


class Adam:
    """Adam (the update of ``torch.optim.Adam``, no amsgrad), on plain tensors in place.

    Element-wise: each parameter entry moves by its own gradient history only.
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8):
        self.params = params
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads) -> None:
        self.t += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1.0 - beta1**self.t)
        root_correction = math.sqrt(1.0 - beta2**self.t)
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            m.lerp_(g, 1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            denom = (v.sqrt() / root_correction).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


# ----------------------------------------------------------------- forward, backward
def stacked_gradients(params, Xb, Xt, targets, weight, loss_fn, alpha: float = 0.0):
    """Gradients of the summed objective of N stacked ReLU networks.

    ``params`` label-major (``[W1 (N, h1, d), b1 (N, h1, 1), ..., Wk (N, c, h), bk]``),
    inputs ``Xb`` (N, m, d) and the same inputs ``Xt`` (N, d, m) (a transposed view or a
    contiguous copy), targets (N, c, m), and ``weight`` broadcast to (N, c, m): each
    logit's factor in the objective (e.g. one over the model's rows, zero for the
    columns it is not trained on). ``alpha``: an L2 penalty ``alpha / 2 * ||W||^2`` on
    every weight matrix (not the biases).
    """
    n_layers = len(params) // 2
    inputs, pre_activations = [Xt], []
    for layer in range(n_layers):
        z = torch.baddbmm(params[2 * layer + 1], params[2 * layer], inputs[-1])
        if layer < n_layers - 1:
            pre_activations.append(z)
            inputs.append(torch.relu(z))
    g = loss_grad(loss_fn, z, targets).mul_(weight)  # d objective / d logits
    grads = [None] * len(params)
    for layer in reversed(range(n_layers)):
        grads[2 * layer] = torch.bmm(g, Xb if layer == 0 else inputs[layer].transpose(1, 2))
        grads[2 * layer + 1] = g.sum(dim=2, keepdim=True)
        if alpha:
            grads[2 * layer].add_(params[2 * layer], alpha=alpha)
        if layer:
            pre = pre_activations[layer - 1]
            g = torch.bmm(params[2 * layer].transpose(1, 2), g)
            g.mul_(torch.gt(pre, 0.0, out=torch.empty_like(pre)))
    return grads


def natural_layout(params) -> list[torch.Tensor]:
    """Label-major stacked parameters in the natural layout, and back (a transpose)."""
    return [p.detach().transpose(1, 2).contiguous() for p in params]


def first_layer_matrix(W: torch.Tensor) -> torch.Tensor:
    """Stacked first-layer weights (N, d, width) as one (d, N * width) matrix (a copy)."""
    n_models, n_features, width = W.shape
    return W.permute(1, 0, 2).reshape(n_features, n_models * width)


def forward_shared(params, X: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of stacked models (natural layout) on the same inputs: (b, d) -> (N, b, c).

    The first layer of all models is one (b, d) x (d, N * width) product; ``first`` is
    that matrix when the caller keeps it (else it is built from ``params[0]``).
    """
    n_models, _, width = params[0].shape
    out = X @ (first_layer_matrix(params[0]) if first is None else first)
    out = out.reshape(len(X), n_models, width).transpose(0, 1) + params[1]
    for layer in range(1, len(params) // 2):
        out = torch.baddbmm(params[2 * layer + 1], torch.relu(out), params[2 * layer])
    return out


def forward_blocks(
    params, X: torch.Tensor, first: torch.Tensor | None = None, rows: int = SCORE_ROWS
) -> torch.Tensor:
    """:func:`forward_shared` on fixed-shape blocks: an input's logits do not depend on
    the batch.

    The inputs are copied, ``rows`` at a time, into a fresh zero-padded ``(rows, d)``
    block (the last one padded), and each block goes through :func:`forward_shared`.
    Every product then has the same shapes and a freshly allocated, aligned input, so
    the library picks the same kernel and summation order for every block, and an
    input's logits are the same bits alone, in any batch, at any position and with any
    chunking (checked on the CPU: a 1-row product sums in another order than a 16-row
    one, and the row's position inside a block does not matter). A single input costs a
    ``rows``-row product.
    """
    n_inputs = len(X)
    if n_inputs == 0:
        return forward_shared(params, X, first)
    parts = []
    for start in range(0, n_inputs, rows):
        part = X[start : start + rows]
        block = X.new_zeros((rows, X.shape[1]))
        block[: len(part)] = part
        parts.append(forward_shared(params, block, first)[:, : len(part)])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def top_indices(scores: torch.Tensor, k: int, first: int = 0) -> torch.Tensor:
    """Indices (..., k) of the k highest scores of the last axis, ties to the lower index.

    NaN scores (a broken model) raise :func:`~sklearn_certify._utils._scores.nan_scores_error`,
    as in the ensembles' other base models; ``first`` is the index of the first input.
    """
    nan = torch.isnan(scores)
    if bool(nan.any()):  # one check per block of scores, on the device
        nan = nan.reshape(-1, *nan.shape[-2:])
        models = torch.nonzero(nan.any(dim=(1, 2))).ravel().tolist()
        raise nan_scores_error(
            [first + i for i in torch.nonzero(nan.any(dim=(0, 2))).ravel().tolist()],
            torch.nonzero(nan.any(dim=(0, 1))).ravel().tolist(),
            models if scores.ndim == 3 else None,
        )
    if k == 1:
        return scores.argmax(dim=-1, keepdim=True)
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
