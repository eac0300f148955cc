"""Vectorised training of many small multi-label heads at once (issue 6, item 2).

The PoisoningGuard protocol trains hundreds or thousands of *small* base models --
linear heads (or one-hidden-layer MLPs) on fixed features -- each on its own subsample
(bagging) or partition (DPA). Fitted one by one, each step of each model is a handful
of tiny tensor operations and the time goes to per-operation overhead. Here the N
models are stacked (weights of shape ``(N, d, c)``) and trained as one batched torch
program (``torch.baddbmm``), each on its own rows gathered into an ``(N, m, d)`` block
(ragged sets such as partitions are padded and masked).

Why it is exact
---------------
The batched objective is the **sum over models of each model's own loss** (its mean
loss over its own examples, summed over labels, plus its own L2 penalty), and the
optimiser is full-batch Adam, which is element-wise. The gradient that reaches model
i's parameters is therefore the gradient of model i's loss alone, and Adam updates
each parameter from its own gradient history: model i follows exactly the trajectory
of a separate fit of :class:`LinearHead` on the same rows with the same seed, up to
floating-point rounding of the batched matrix products. There is no mini-batching,
no shuffling and no training noise, so nothing random happens after the weight
initialisation (zeros for linear heads; a per-model seeded ``torch.Generator`` on
the CPU for the hidden layer of an MLP head, so the initial weights do not depend on
the device or on how the models are batched).

Label columns that are constant in a model's training rows get the fixed score
``+inf`` (always present) or ``-inf`` (never present) and do not enter that model's
loss, and a model without training rows scores ``+inf`` for its ``empty_labels`` and
``-inf`` elsewhere: the rule of the ensembles' base-model wrapper
(:class:`sklearn_certify.ensembles._base._ConstantAwareMultiLabel`). This is the same
model as that wrapper around a :class:`LinearHead` fitted on the non-constant columns
only: every output column has its own weights, starts at zero and has its own loss
term, so a column left out of the loss stays at zero and changes nothing else (for MLP
heads, the shared hidden layer only receives gradients from the trained columns, as in
a head fitted on those columns alone).

Used by the ensembles
---------------------
:func:`is_vectorizable` says whether a base estimator can take this path (a
:class:`LinearHead`, exactly that class; ``MultiLabelNet`` heads have their own
trainer, :mod:`sklearn_certify.ensembles._vectorized_net`) and
:func:`fit_base_models` trains a whole ensemble's base models here, with the seeds,
subsamples and empty-set fallbacks that ``sklearn_certify.ensembles._base.fit_base_model``
would use one model at a time, and returns the stacked heads (for fast vote counting)
and the per-model fitted wrappers (``estimators_``).

Example
-------
>>> import numpy as np
>>> from sklearn_certify.ensembles._vectorized import LinearHead, fit_linear_heads
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
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._devices import loadable_device, tensors_to
from .._scores import nan_scores_error
from .._targets import encode_fit_targets
from ..nets import AsymmetricLoss

__all__ = ["LinearHead", "LinearHeadEnsemble", "fit_base_models", "fit_linear_heads",
           "is_vectorizable", "stack_fitted_heads"]

_MAX_SEED = np.iinfo(np.int32).max
_LOSSES = ("asl", "bce")
# Auto batching: elements of the largest per-batch activation tensor. On the CPU small
# blocks stay in cache (the element-wise loss dominates); on a GPU large blocks fill it.
_CPU_BLOCK = 2**16
_GPU_BLOCK = 2**25
# GPU blocks are also capped by memory: parameters, gradients, two Adam moments and a
# layout copy of each, plus the step's activations, within this fraction of the free
# device memory (see _model_bytes).
_STATE_COPIES = 5
_GPU_MEMORY_FRACTION = 0.5


# ----------------------------------------------------------------------------- helpers
def _device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_features(X, device: torch.device) -> torch.Tensor:
    """X as a float32 ``(n, d)`` tensor on ``device`` (inputs of any shape flattened)."""
    X = torch.as_tensor(X) if torch.is_tensor(X) else torch.as_tensor(np.asarray(X))
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 dimensions, got shape {tuple(X.shape)}.")
    return X.reshape(len(X), -1).to(device=device, dtype=torch.float32)


def _elementwise_loss(loss):
    """An AsymmetricLoss, "bce", or a callable ``(logits, targets) -> element-wise loss``."""
    if loss == "asl":
        return AsymmetricLoss(reduction="none")
    if loss == "bce" or isinstance(loss, AsymmetricLoss):
        return loss
    if isinstance(loss, str):
        raise ValueError(f"loss must be one of {list(_LOSSES)} or a callable, got {loss!r}.")
    if not callable(loss):
        raise TypeError(f"loss must be one of {list(_LOSSES)} or a callable, got {loss!r}.")
    return loss


def _hidden_width(hidden) -> int | None:
    if hidden is None or hidden == 0:
        return None
    if not isinstance(hidden, Integral) or hidden < 1:
        raise ValueError(f"hidden must be None or a positive int, got {hidden!r}.")
    return int(hidden)


def _model_seeds(random_state, n_models: int) -> np.ndarray:
    """One init seed per model: the given sequence, or drawn from ``random_state``."""
    if isinstance(random_state, (Sequence, np.ndarray)) and not isinstance(random_state, str):
        seeds = np.asarray(random_state, dtype=np.int64).reshape(-1)
        if seeds.shape != (n_models,):
            raise ValueError(f"random_state holds {seeds.size} seeds for {n_models} models.")
        return seeds
    return check_random_state(random_state).randint(_MAX_SEED, size=n_models).astype(np.int64)


def _initial_weights(seeds, n_features: int, n_classes: int, hidden: int | None):
    """Stacked initial parameters ``[W1, b1, (W2, b2)]`` on the CPU.

    Linear heads start at zero. MLP heads: model i draws W1 (d, h) then b1 (h,) from
    ``torch.Generator().manual_seed(seeds[i])``, uniform on ``(-1/sqrt(d), 1/sqrt(d))``
    (the range of ``torch.nn.Linear``'s default initialisation), and its output layer
    W2 (h, c), b2 (c,) starts at zero: random hidden features, and output columns that
    do not depend on how many label columns there are.
    """
    n_models = len(seeds)
    if hidden is None:
        return [torch.zeros(n_models, n_features, n_classes),
                torch.zeros(n_models, 1, n_classes)]
    W1 = torch.empty(n_models, n_features, hidden)
    b1 = torch.empty(n_models, 1, hidden)
    bound = 1.0 / math.sqrt(n_features)
    for i, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(int(seed))
        for param in (W1, b1):
            param[i] = torch.rand(param.shape[1:], generator=generator) * (2 * bound) - bound
    return [W1, b1, torch.zeros(n_models, hidden, n_classes),
            torch.zeros(n_models, 1, n_classes)]


def _first_layer_matrix(W: torch.Tensor) -> torch.Tensor:
    """Stacked first-layer weights (N, d, width) as one (d, N * width) matrix (a copy)."""
    n_models, n_features, width = W.shape
    return W.permute(1, 0, 2).reshape(n_features, n_models * width)


def _forward_shared(params, X: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of stacked models on the same inputs: ``X`` (b, d) -> (N, b, c).

    The first layer of all models is one (b, d) x (d, N * width) product; ``first`` is
    that matrix when the caller keeps it (else it is built from ``params[0]``).
    """
    n_models, _, width = params[0].shape
    out = X @ (_first_layer_matrix(params[0]) if first is None else first)
    out = out.reshape(len(X), n_models, width).transpose(0, 1) + params[1]
    for layer in range(1, len(params) // 2):
        out = torch.baddbmm(params[2 * layer + 1], torch.relu(out), params[2 * layer])
    return out


def _index_block(index_sets, models) -> tuple[np.ndarray, np.ndarray]:
    """Padded row indices (n, m_max) and sizes (n,) of the given models."""
    sizes = np.array([len(index_sets[i]) for i in models], dtype=np.int64)
    m_max = int(sizes.max()) if sizes.size else 0
    if isinstance(index_sets, np.ndarray):
        return np.asarray(index_sets[models], dtype=np.int64).reshape(len(models), m_max), sizes
    block = np.zeros((len(models), m_max), dtype=np.int64)
    for row, i in enumerate(models):
        block[row, :sizes[row]] = index_sets[i]
    return block, sizes


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


def _auto_models_per_batch(device, m_max: int, width: int, n_features: int) -> int:
    """Models per batched program: a block of about 2**16 activations on the CPU, so
    the element-wise loss runs in cache, and of about 2**25 on a GPU."""
    if device.type == "cpu":
        return max(1, _CPU_BLOCK // max(1, m_max * width))
    return max(1, _GPU_BLOCK // max(1, m_max * max(width, n_features)))


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


def cap_models_by_memory(n_models: int, device: torch.device, layer_sizes: Sequence[int],
                         rows: int) -> int:
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
    out_of_memory = (getattr(torch, "OutOfMemoryError", None)
                     or torch.cuda.OutOfMemoryError)
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
    """Derivative of :class:`~sklearn_certify.nets.AsymmetricLoss`'s element-wise terms.

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
        d_pos = (asl.gamma_pos * _power(base, asl.gamma_pos - 1) * d_base * log_pos
                 + _power(base, asl.gamma_pos) * d_pos)
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
        d_neg = (asl.gamma_neg * power).mul_(d_base).mul_(log_neg).add_(
            power.mul_(base).mul_(d_neg))
    # -(y dL+ + (1 - y) dL-), y in {0, 1}
    return (d_pos.sub_(d_neg)).mul_(targets).add_(d_neg).neg_()


def _loss_grad(loss_fn, z: torch.Tensor, targets: torch.Tensor):
    """Element-wise derivative of the loss with respect to the logits ``z``."""
    if isinstance(loss_fn, AsymmetricLoss):
        return _asl_grad(z, targets, loss_fn)
    if loss_fn == "bce":
        return torch.sigmoid(z) - targets
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(z, targets).sum(), z)
    return grad


class _Adam:
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
        step_size = self.lr / (1.0 - beta1 ** self.t)
        root_correction = math.sqrt(1.0 - beta2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq):
            m.lerp_(g, 1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            denom = (v.sqrt() / root_correction).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


def _train_block(X, Y, rows, sizes, params, *, loss_fn, epochs, lr, alpha, constant_columns):
    """Train the stacked ``params`` (natural layout, see ``_initial_weights``) of one block.

    Returns the trained parameters and the block's constant scores (n_block, c): NaN
    for trained columns, +-inf for constant ones (all -inf for models without rows).

    Training runs in the label-major layout (logits ``(n, c, m)``, weights ``(n, c, d)``),
    which makes the batched products much faster on the CPU, with the gradients written
    out by hand (no autograd graph) and the Adam update in place.
    """
    device = X.device
    n_block = len(sizes)
    n_classes = Y.shape[1]
    rows_t = torch.as_tensor(rows, device=device)
    size_t = torch.as_tensor(sizes, device=device, dtype=torch.float32)[:, None]
    valid = torch.arange(rows.shape[1], device=device)[None, :] < size_t  # (n, m)
    Xb = X[rows_t]  # (n, m, d)
    Yt = Y[rows_t].transpose(1, 2).contiguous()  # (n, c, m)
    positives = (Yt * valid[:, None, :]).sum(dim=2)  # (n, c)
    always = (positives == size_t) & (size_t > 0)
    never = positives == 0
    scores = torch.full((n_block, n_classes), float("nan"), device=device)
    if constant_columns == "inf":
        scores[never] = -math.inf
        scores[always] = math.inf
        fitted = ~(always | never)
    else:
        fitted = size_t.expand(-1, n_classes) > 0
        scores[~fitted] = -math.inf
    # d(objective)/d(logits) = d(loss)/d(logits) * weight: each model's mean over its
    # own rows, summed over its fitted label columns
    weight = fitted[:, :, None] * (valid / size_t.clamp(min=1))[:, None, :]  # (n, c, m)
    # label-major parameters: W^T (n, out, in), b^T (n, out, 1)
    params = [p.to(device).transpose(1, 2).contiguous() for p in params]
    if bool(fitted.any()) and epochs > 0:
        Xt = Xb.transpose(1, 2).contiguous()  # (n, d, m)
        optimizer = _Adam(params, lr)
        for _ in range(epochs):
            optimizer.step(_gradients(params, Xb, Xt, Yt, weight, loss_fn, alpha))
    return [p.transpose(1, 2).contiguous() for p in params], scores


def _gradients(params, Xb, Xt, Yt, weight, loss_fn, alpha):
    """Gradients of the summed objective for label-major ``params``."""
    if len(params) == 2:
        W, b = params
        z = torch.baddbmm(b, W, Xt)  # (n, c, m)
        g = _loss_grad(loss_fn, z, Yt).mul_(weight)
        grad_W = torch.bmm(g, Xb)
        if alpha:
            grad_W.add_(W, alpha=alpha)
        return [grad_W, g.sum(dim=2, keepdim=True)]
    W1, b1, W2, b2 = params
    pre = torch.baddbmm(b1, W1, Xt)  # (n, h, m)
    hidden = torch.relu(pre)
    z = torch.baddbmm(b2, W2, hidden)  # (n, c, m)
    g = _loss_grad(loss_fn, z, Yt).mul_(weight)
    grad_W2 = torch.bmm(g, hidden.transpose(1, 2))
    g_hidden = torch.bmm(W2.transpose(1, 2), g).mul_(torch.gt(pre, 0.0, out=torch.empty_like(pre)))
    grad_W1 = torch.bmm(g_hidden, Xb)
    if alpha:
        grad_W1.add_(W1, alpha=alpha)
        grad_W2.add_(W2, alpha=alpha)
    return [grad_W1, g_hidden.sum(dim=2, keepdim=True), grad_W2, g.sum(dim=2, keepdim=True)]


def _fit_heads(X, Y, index_sets, *, hidden, loss, epochs, lr, alpha, device, seeds,
               constant_columns, models_per_batch):
    """Core shared by :func:`fit_linear_heads` and :class:`LinearHead`."""
    width = _hidden_width(hidden)
    loss_fn = _elementwise_loss(loss)
    n_models = len(index_sets)
    n_features = X.shape[1]
    n_classes = Y.shape[1]
    sizes = np.array([len(s) for s in index_sets], dtype=np.int64)
    m_max = int(sizes.max())
    if models_per_batch is None:
        models_per_batch = cap_models_by_memory(
            _auto_models_per_batch(device, m_max, max(n_classes, width or 0), n_features),
            device, [n_features, *([width] if width else []), n_classes], m_max)

    def train(models):
        rows, block_sizes = _index_block(index_sets, models)
        init = _initial_weights(seeds[models], n_features, n_classes, width)
        return _train_block(
            X, Y, rows, block_sizes, init, loss_fn=loss_fn, epochs=int(epochs),
            lr=float(lr), alpha=float(alpha), constant_columns=constant_columns)

    params, scores = train_in_blocks(n_models, models_per_batch, train)
    return params, scores, sizes


def _top_indices(scores: torch.Tensor, k: int, first: int = 0) -> torch.Tensor:
    """Indices (..., k) of the k highest scores of the last axis, ties to the lower index.

    NaN scores (a broken model) raise :func:`~sklearn_certify._scores.nan_scores_error`,
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


# ----------------------------------------------------------------------------- ensemble
class LinearHeadEnsemble:
    """N fitted heads, stored stacked on one device.

    Made by :func:`fit_linear_heads` (``LinearHead`` models) and by the vectorised
    training of ``MultiLabelNet`` base models
    (:mod:`sklearn_certify.ensembles._vectorized_net`).

    Attributes
    ----------
    params_ : list of torch.Tensor
        ``[W, b]`` with W (N, d, c), b (N, 1, c) for linear heads, or
        ``[W1, b1, W2, b2, ...]`` (W1 (N, d, h1), b1 (N, 1, h1), ..., the last layer
        (N, h, c) and (N, 1, c)) for MLP heads, ReLU between layers; on ``device_``.
    constant_scores_ : torch.Tensor of shape (N, c)
        NaN for trained label columns, ``+inf``/``-inf`` for fixed ones (constant in
        the model's rows, or every column of a model without rows).
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
                 n_classes, device):
        self.params_ = params
        self.constant_scores_ = constant_scores
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
                 "constant_scores_": tensors_to(self.constant_scores_, "cpu")}
        state.pop("_first_layer", None)
        return state

    def __setstate__(self, state):
        device = loadable_device(state["device_"])
        self.__dict__.update(state, device_=device,
                             params_=tensors_to(state["params_"], device),
                             constant_scores_=tensors_to(state["constant_scores_"], device))

    def _first_layer_of_all(self) -> torch.Tensor:
        """The first-layer matrix of every model, built once per ``params_[0]``: the
        per-chunk copy would otherwise dominate vote counting on a GPU."""
        W = self.params_[0]
        cached = self.__dict__.get("_first_layer")
        if cached is None or cached[0] is not W:
            with torch.no_grad():
                cached = self._first_layer = (W, _first_layer_matrix(W.detach()))
        return cached[1]

    def _scores(self, X: torch.Tensor, models=slice(None)) -> torch.Tensor:
        params = [p[models] for p in self.params_]
        constant = self.constant_scores_[models]
        every = models == slice(None)
        logits = _forward_shared(params, X, self._first_layer_of_all() if every else None)
        return torch.where(torch.isnan(constant)[:, None, :], logits, constant[:, None, :])

    def _input_chunk(self, n_inputs: int, batch_size) -> int:
        if batch_size is not None:
            return max(1, int(batch_size))
        width = max(p.shape[-1] for p in self.params_[0::2])
        return max(1, min(n_inputs, (2**23) // max(1, len(self) * width)))

    def decision_function(self, X, *, as_tensor: bool = False):
        """Scores of every model, shape (N, n_inputs, c); fixed columns are +-inf.

        Returns a float64 ndarray, or the float32 tensor on ``device_`` when
        ``as_tensor``.
        """
        X = _as_features(X, self.device_)
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
        (default: a block of about 8 million scores).

        Returns
        -------
        counts : ndarray of int64 (or a tensor on ``device_``), shape (n_inputs, c)
            Every row sums to ``N * k_base``.
        """
        k_base = int(k_base)
        if not 1 <= k_base <= self.n_classes_:
            raise ValueError(f"k_base must be in [1, {self.n_classes_}], got {k_base}.")
        X = _as_features(X, self.device_)
        self._check_width(X)
        n_inputs = len(X)
        counts = torch.zeros((n_inputs, self.n_classes_), dtype=torch.int64,
                             device=self.device_)
        step = self._input_chunk(n_inputs, batch_size)
        with torch.inference_mode():
            for first in range(0, n_inputs, step):
                top = _top_indices(self._scores(X[first:first + step]), k_base, first)  # (N, b, k)
                top = top.permute(1, 0, 2).reshape(top.shape[1], -1)
                counts[first:first + step].scatter_add_(
                    1, top, torch.ones_like(top))
        return counts if as_tensor else counts.cpu().numpy()

    def base_models(self, estimator=None, *, seeds=None, empty_labels=None) -> list:
        """The N heads as the ensembles' fitted base models, one per model.

        Each is a fitted :class:`~sklearn_certify.ensembles._base._ConstantAwareMultiLabel`
        around a fitted :class:`LinearHead` restricted to the model's trained label
        columns (its ``estimator_``; None when every column is fixed), with the same
        ``constant_scores_`` and ``columns_`` as the generic path builds, so that
        ``estimators_`` keeps its meaning (and its ``decision_function``) when an
        ensemble is trained here. Parameters are copied to the CPU.

        Parameters
        ----------
        estimator : LinearHead or None
            The template; each wrapper's ``estimator`` is a clone of it with
            ``random_state`` set to the model's seed. None: ``LinearHead()`` with this
            ensemble's ``hidden``.
        seeds, empty_labels : sequences of length N or None
            Stored as each wrapper's ``seed`` and ``empty_labels`` (bookkeeping only).
        """
        from sklearn.base import clone

        from ._base import _ConstantAwareMultiLabel

        template = LinearHead(self.hidden) if estimator is None else estimator
        params = [p.detach().cpu() for p in self.params_]
        constant = self.constant_scores_.cpu().numpy().astype(np.float64)
        models = []
        for i in range(len(self)):
            head = clone(template).set_params(random_state=int(self.seeds_[i]))
            wrapper = _ConstantAwareMultiLabel(
                head, empty_labels=() if empty_labels is None else empty_labels[i],
                seed=None if seeds is None else int(seeds[i]))
            columns = np.flatnonzero(np.isnan(constant[i]))
            fitted = None
            if columns.size:
                fitted = clone(head)
                own = [p[i].clone() for p in params]
                own[-2] = own[-2][:, columns].contiguous()  # output layer: trained columns
                own[-1] = own[-1][:, columns].contiguous()
                fitted._set_fitted(own, n_features=self.n_features_in_)
            models.append(wrapper._set_fitted(constant[i], self.sizes_[i], fitted))
        return models

    def top_labels(self, X, k_base: int, model: int) -> np.ndarray:
        """Boolean (n_inputs, c): model ``model``'s top-k_base labels."""
        X = _as_features(X, self.device_)
        self._check_width(X)
        with torch.inference_mode():
            top = _top_indices(self._scores(X, slice(model, model + 1))[0], int(k_base))
        out = torch.zeros((len(X), self.n_classes_), dtype=torch.bool, device=self.device_)
        out.scatter_(1, top, True)
        return out.cpu().numpy()


def fit_linear_heads(X, Y, index_sets, *, hidden=None, loss="asl", epochs: int = 100,
                     lr: float = 0.01, alpha: float = 1e-4, device="cpu", random_state=None,
                     empty_labels=None, constant_columns: str = "inf",
                     models_per_batch: int | None = None) -> LinearHeadEnsemble:
    """Train N multi-label heads at once, model i on the rows ``index_sets[i]``.

    Each model minimises, by ``epochs`` steps of full-batch Adam (learning rate
    ``lr``), the mean over its own rows of its element-wise loss summed over label
    columns, plus ``alpha / 2`` times the squared norm of its weight matrices. All
    models run as one batched torch program (``models_per_batch`` at a time); model i
    ends where ``LinearHead(..., random_state=seeds_[i]).fit(X[index_sets[i]],
    Y[index_sets[i]])`` ends, up to float rounding (see the module docstring).

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
    loss : {"asl", "bce"} or callable, default="asl"
        ``"asl"``: :class:`sklearn_certify.nets.AsymmetricLoss` with its defaults;
        ``"bce"``: binary cross-entropy on the logits; a callable maps
        ``(logits, targets)`` to element-wise losses of the same shape.
    epochs : int, default=100
        Number of full-batch Adam steps.
    lr : float, default=0.01
        Adam's learning rate.
    alpha : float, default=1e-4
        L2 penalty on the weight matrices (not the biases).
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
    LinearHeadEnsemble
    """
    if constant_columns not in ("inf", "fit"):
        raise ValueError(f"constant_columns must be 'inf' or 'fit', got {constant_columns!r}.")
    device = _device(device)
    Y_arr, _ = encode_fit_targets(Y)
    Xt = _as_features(X, device)
    if len(Xt) != len(Y_arr):
        raise ValueError(f"X has {len(Xt)} rows but Y has {len(Y_arr)}.")
    index_sets = _check_index_sets(index_sets, len(Xt))
    seeds = _model_seeds(random_state, len(index_sets))
    Yt = torch.as_tensor(Y_arr, dtype=torch.float32, device=device)
    params, constant, sizes = _fit_heads(
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
    return LinearHeadEnsemble(params, constant, seeds, sizes, hidden=_hidden_width(hidden),
                              n_features=Xt.shape[1], n_classes=Yt.shape[1], device=device)


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
    ``sklearn_certify.ensembles._base.fit_base_model(estimator, ..., seed=seeds[i],
    empty_labels=empty_labels[i])`` gives it: ``RandomState(seeds[i])`` draws the
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
    heads : LinearHeadEnsemble
        The stacked models, on ``estimator.device``, for fast vote counting
        (``heads.vote_counts(X, k_base)``).
    models : list of fitted ``_ConstantAwareMultiLabel``
        The per-model view (``estimators_``), parameters on the CPU.
    """
    if not is_vectorizable(estimator):
        raise TypeError(f"{type(estimator).__name__} cannot be trained by the vectorised "
                        "path; only LinearHead can.")
    estimator._validate_params()
    draws = [np.random.RandomState(int(seed)).randint(_MAX_SEED, size=2) for seed in seeds]
    head_seeds = [int(d[0]) for d in draws]
    wrapper_seeds = [int(d[1]) for d in draws]
    params = estimator.get_params()
    heads = fit_linear_heads(
        X, Y, index_sets, hidden=params["hidden"], loss=params["loss"],
        epochs=params["epochs"], lr=params["lr"], alpha=params["alpha"],
        device=params["device"], random_state=head_seeds, empty_labels=empty_labels,
        constant_columns="inf")
    models = heads.base_models(estimator, seeds=wrapper_seeds, empty_labels=empty_labels)
    return heads, models


def stack_fitted_heads(estimator, models, *, n_features: int,
                       n_classes: int) -> LinearHeadEnsemble | None:
    """Base models fitted one by one around ``LinearHead`` s, stacked for vote counting.

    Nothing is trained: model i's own parameters go into the stack, on
    ``estimator.device``, its output layer widened to every label (zero weights for
    its fixed columns, whose ``constant_scores_`` replace the logits). A head fitted
    on a single column (a binary classifier with two outputs) contributes the output of
    class 1, the score its wrapper ranks. None when ``estimator`` is not a
    :class:`LinearHead` (see :func:`is_vectorizable`).
    """
    if not is_vectorizable(estimator):
        return None
    device = _device(estimator.device)
    width = _hidden_width(estimator.hidden)
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
    return LinearHeadEnsemble(params, constant, seeds, counts, hidden=width,
                              n_features=n_features, n_classes=n_classes, device=device)


# ------------------------------------------------------------------------ single model
class LinearHead(ClassifierMixin, BaseEstimator):
    """A linear (or one-hidden-layer) multi-label head trained by full-batch Adam.

    The single-model counterpart of :func:`fit_linear_heads`: the same objective,
    initialisation and optimiser, so a bagging or DPA ensemble of ``LinearHead`` base
    models can be trained all at once, exactly (see
    :mod:`sklearn_certify.ensembles._vectorized`). Also usable on its own, as a
    deterministic multi-label linear classifier on fixed features.

    Parameters
    ----------
    hidden : int or None, default=None
        None: a linear model. An int: one hidden ReLU layer of that width.
    loss : {"asl", "bce"} or callable, default="asl"
        See :func:`fit_linear_heads`.
    epochs : int, default=100
        Number of full-batch Adam steps.
    lr : float, default=0.01
        Adam's learning rate.
    alpha : float, default=1e-4
        L2 penalty on the weight matrices.
    device : str or torch.device, default="cpu"
        Where it trains and predicts (``"auto"``: CUDA when available).
    random_state : int, RandomState instance or None, default=None
        Seed of the hidden layer's initialisation (an int is used as the
        ``torch.Generator`` seed). Linear heads start at zero and ignore it.

    Notes
    -----
    A pickled ``LinearHead`` (and the stacked heads of an ensemble) holds its tensors
    as CPU tensors, so a model fitted on a GPU loads on a machine without one: the
    tensors go back to the device they were saved from when it exists, else to the
    CPU with a ``skorch.exceptions.DeviceWarning`` (as skorch nets do).

    Attributes
    ----------
    coefs_ : list of ndarray
        Weight matrices, ``(n_features, n_outputs)`` per layer.
    intercepts_ : list of ndarray
        Bias vectors per layer.
    classes_ : ndarray
        Column indices for a label matrix, the sorted classes for 1-D ``y``.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "hidden": [None, Interval(Integral, 1, None, closed="left")],
        "loss": [StrOptions(set(_LOSSES)), callable],
        "epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(self, hidden=None, *, loss="asl", epochs: int = 100, lr: float = 0.01,
                 alpha: float = 1e-4, device="cpu", random_state=None):
        self.hidden = hidden
        self.loss = loss
        self.epochs = epochs
        self.lr = lr
        self.alpha = alpha
        self.device = device
        self.random_state = random_state

    def fit(self, X, y):
        """Fit on ``X`` (n, ...) and a 0/1 label matrix (or 1-D multi-class ``y``)."""
        self._validate_params()
        device = _device(self.device)
        Y_arr, classes = encode_fit_targets(y)
        Xt = _as_features(X, device)
        if len(Xt) != len(Y_arr):
            raise ValueError(f"X has {len(Xt)} rows but y has {len(Y_arr)}.")
        if len(Xt) == 0:
            raise ValueError("X has no rows.")
        if isinstance(self.random_state, Integral):
            seeds = np.array([int(self.random_state)], dtype=np.int64)
        else:
            seeds = _model_seeds(self.random_state, 1)
        Yt = torch.as_tensor(Y_arr, dtype=torch.float32, device=device)
        params, _, _ = _fit_heads(
            Xt, Yt, [np.arange(len(Xt))], hidden=self.hidden, loss=self.loss,
            epochs=self.epochs, lr=self.lr, alpha=self.alpha, device=device, seeds=seeds,
            constant_columns="fit", models_per_batch=1)
        self._set_fitted([p[0] for p in params], n_features=Xt.shape[1], classes=classes)
        return self

    def _set_fitted(self, params, *, n_features: int, classes=None) -> None:
        """Fitted state from per-layer parameters ``[W1 (d, h), b1 (1, h), ...]``."""
        self.params_ = params
        self.coefs_ = [p.cpu().numpy() for p in params[0::2]]
        self.intercepts_ = [p.cpu().numpy().reshape(-1) for p in params[1::2]]
        self.multiclass_ = classes is not None
        self.classes_ = classes if classes is not None else np.arange(params[-1].shape[-1])
        self.n_features_in_ = n_features

    def __getstate__(self):
        state = super().__getstate__()
        if "params_" in state:  # CPU tensors in the pickle (see _devices)
            state = {**state, "params_": tensors_to(self.params_, "cpu"),
                     "params_device_": str(self.params_[0].device)}
        return state

    def __setstate__(self, state):
        if "params_" in state:
            device = loadable_device(state.pop("params_device_", "cpu"))
            state = {**state, "params_": tensors_to(state["params_"], device)}
        super().__setstate__(state)

    def decision_function(self, X) -> np.ndarray:
        """Logits, shape (n_inputs, n_classes)."""
        check_is_fitted(self, "params_")
        device = self.params_[0].device
        X = _as_features(X, device)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but LinearHead was fitted on "
                             f"{self.n_features_in_}.")
        with torch.inference_mode():
            logits = _forward_shared([p[None] for p in self.params_], X)[0]
        return logits.cpu().numpy().astype(np.float64)

    def predict_proba(self, X) -> np.ndarray:
        """Per-label probabilities ``sigmoid(logits)``, shape (n_inputs, n_classes)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def predict(self, X) -> np.ndarray:
        """0/1 labels (logit > 0); the top class for a 1-D ``y`` fit."""
        scores = self.decision_function(X)
        if self.multiclass_:
            return self.classes_[scores.argmax(axis=1)]
        return (scores > 0).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        tags.non_deterministic = False
        return tags
