"""Linear and one-hidden-layer multi-label heads trained by full-batch Adam.

:class:`LinearHead` is a deterministic multi-label classifier on fixed features, the
base model of the PoisoningGuard protocol (small heads over frozen features). Its
training is written for N heads at once (:func:`fit_heads`, on the stacked engine of
:mod:`sklearn_certify._stacked._engine`), so that an ensemble of ``LinearHead`` base models is
trained as one batched program and each head ends where its own ``fit`` ends, up to
float rounding: the objective is each head's mean loss over its own rows, summed over
label columns, plus its own L2 penalty; the optimiser (Adam, full batch) is
element-wise; nothing random happens after the initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._stacked._engine import (
    LOSSES,
    Adam,
    as_features,
    cap_models_by_memory,
    constant_scores,
    elementwise_loss,
    forward_blocks,
    models_per_block,
    natural_layout,
    stacked_gradients,
    train_in_blocks,
)
from ._utils._devices import loadable_device, resolve_device, tensors_to
from ._utils._random import SEED_HIGH
from ._utils._targets import encode_fit_targets

__all__ = ["LinearHead"]

# Models per block: elements of the largest per-batch activation tensor. On the CPU
# small blocks stay in cache (the element-wise loss dominates); on a GPU large blocks
# fill it.
_CPU_BLOCK = 2**16
_GPU_BLOCK = 2**25


def hidden_width(hidden) -> int | None:
    if hidden is None or hidden == 0:
        return None
    if not isinstance(hidden, Integral) or hidden < 1:
        raise ValueError(f"hidden must be None or a positive int, got {hidden!r}.")
    return int(hidden)


def model_seeds(random_state, n_models: int) -> np.ndarray:
    """One init seed per model: the given sequence, or drawn from ``random_state``."""
    if isinstance(random_state, (Sequence, np.ndarray)) and not isinstance(random_state, str):
        seeds = np.asarray(random_state, dtype=np.int64).reshape(-1)
        if seeds.shape != (n_models,):
            raise ValueError(f"random_state holds {seeds.size} seeds for {n_models} models.")
        return seeds
    return check_random_state(random_state).randint(SEED_HIGH, size=n_models).astype(np.int64)


def initial_weights(seeds, n_features: int, n_classes: int, hidden: int | None):
    """Stacked initial parameters ``[W1, b1, (W2, b2)]`` on the CPU.

    Linear heads start at zero. MLP heads: model i draws W1 (d, h) then b1 (h,) from
    ``torch.Generator().manual_seed(seeds[i])``, uniform on ``(-1/sqrt(d), 1/sqrt(d))``
    (the range of ``torch.nn.Linear``'s default initialisation), and its output layer
    W2 (h, c), b2 (c,) starts at zero: random hidden features, and output columns that
    do not depend on how many label columns there are.
    """
    n_models = len(seeds)
    if hidden is None:
        return [torch.zeros(n_models, n_features, n_classes), torch.zeros(n_models, 1, n_classes)]
    W1 = torch.empty(n_models, n_features, hidden)
    b1 = torch.empty(n_models, 1, hidden)
    bound = 1.0 / math.sqrt(n_features)
    for i, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(int(seed))
        for param in (W1, b1):
            param[i] = torch.rand(param.shape[1:], generator=generator) * (2 * bound) - bound
    return [W1, b1, torch.zeros(n_models, hidden, n_classes), torch.zeros(n_models, 1, n_classes)]


def index_block(index_sets, models) -> tuple[np.ndarray, np.ndarray]:
    """Padded row indices (n, m_max) and sizes (n,) of the given models."""
    sizes = np.array([len(index_sets[i]) for i in models], dtype=np.int64)
    m_max = int(sizes.max()) if sizes.size else 0
    if isinstance(index_sets, np.ndarray):
        return np.asarray(index_sets[models], dtype=np.int64).reshape(len(models), m_max), sizes
    block = np.zeros((len(models), m_max), dtype=np.int64)
    for row, i in enumerate(models):
        block[row, : sizes[row]] = index_sets[i]
    return block, sizes


def _auto_models_per_batch(device, m_max: int, width: int, n_features: int) -> int:
    """Models per batched program: a block of about 2**16 activations on the CPU, so
    the element-wise loss runs in cache, and of about 2**25 on a GPU."""
    per_model = m_max * (width if device.type == "cpu" else max(width, n_features))
    return models_per_block(device, per_model, cpu=_CPU_BLOCK, gpu=_GPU_BLOCK)


def _train_block(X, Y, rows, sizes, params, *, loss_fn, epochs, lr, alpha, constant_columns):
    """Train the stacked ``params`` (natural layout, see ``initial_weights``) of one block.

    Returns the trained parameters and the block's constant scores (n_block, c): NaN
    for trained columns, +-inf for constant ones (all -inf for models without rows).
    Training runs in the label-major layout (see :mod:`sklearn_certify._stacked._engine`).
    """
    device = X.device
    n_classes = Y.shape[1]
    rows_t = torch.as_tensor(rows, device=device)
    size_t = torch.as_tensor(sizes, device=device, dtype=torch.float32)[:, None]
    valid = torch.arange(rows.shape[1], device=device)[None, :] < size_t  # (n, m)
    Xb = X[rows_t]  # (n, m, d)
    Yt = Y[rows_t].transpose(1, 2).contiguous()  # (n, c, m)
    if constant_columns == "inf":
        scores = constant_scores(Y, rows_t, sizes)
        fitted = torch.isnan(scores)
    else:
        fitted = size_t.expand(-1, n_classes) > 0
        scores = torch.full((len(sizes), n_classes), float("nan"), device=device)
        scores[~fitted] = -math.inf
    # d(objective)/d(logits) = d(loss)/d(logits) * weight: each model's mean over its
    # own rows, summed over its fitted label columns
    weight = fitted[:, :, None] * (valid / size_t.clamp(min=1))[:, None, :]  # (n, c, m)
    params = natural_layout([p.to(device) for p in params])  # label-major
    if bool(fitted.any()) and epochs > 0:
        Xt = Xb.transpose(1, 2).contiguous()  # (n, d, m)
        optimizer = Adam(params, lr)
        for _ in range(epochs):
            optimizer.step(stacked_gradients(params, Xb, Xt, Yt, weight, loss_fn, alpha))
    return natural_layout(params), scores


def fit_heads(
    X,
    Y,
    index_sets,
    *,
    hidden,
    loss,
    epochs,
    lr,
    alpha,
    device,
    seeds,
    constant_columns,
    models_per_batch,
):
    """Train N heads at once, head i on ``X[index_sets[i]], Y[index_sets[i]]``.

    ``X`` (n, d) and ``Y`` (n, c) are float32 tensors on ``device``; ``seeds`` the
    heads' initialisation seeds. Returns the natural-layout parameters, the constant
    scores (N, c) and the sizes (N,).
    """
    width = hidden_width(hidden)
    loss_fn = elementwise_loss(loss)
    n_models = len(index_sets)
    n_features = X.shape[1]
    n_classes = Y.shape[1]
    sizes = np.array([len(s) for s in index_sets], dtype=np.int64)
    m_max = int(sizes.max())
    if models_per_batch is None:
        models_per_batch = cap_models_by_memory(
            _auto_models_per_batch(device, m_max, max(n_classes, width or 0), n_features),
            device,
            [n_features, *([width] if width else []), n_classes],
            m_max,
        )

    def train(models):
        rows, block_sizes = index_block(index_sets, models)
        init = initial_weights(seeds[models], n_features, n_classes, width)
        return _train_block(
            X,
            Y,
            rows,
            block_sizes,
            init,
            loss_fn=loss_fn,
            epochs=int(epochs),
            lr=float(lr),
            alpha=float(alpha),
            constant_columns=constant_columns,
        )

    params, scores = train_in_blocks(n_models, models_per_batch, train)
    return params, scores, sizes


class LinearHead(ClassifierMixin, BaseEstimator):
    """A linear (or one-hidden-layer) multi-label head trained by full-batch Adam.

    The single-model counterpart of :func:`fit_linear_heads`: the same objective,
    initialisation and optimiser, so a bagging or DPA ensemble of ``LinearHead`` base
    models can be trained all at once, exactly (see
    :mod:`sklearn_certify._stacked._heads`). Also usable on its own, as a
    deterministic multi-label linear classifier on fixed features.

    Parameters
    ----------
    hidden : int or None, default=None
        None: a linear model. An int: one hidden ReLU layer of that width.
    loss : {"asl", "bce"} or callable, default="asl"
        ``"asl"``: :class:`sklearn_certify.losses.AsymmetricLoss` with its defaults;
        ``"bce"``: binary cross-entropy on the logits; a callable maps
        ``(logits, targets)`` to element-wise losses of the same shape.
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
        "loss": [StrOptions(set(LOSSES)), callable],
        "epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        hidden=None,
        *,
        loss="asl",
        epochs: int = 100,
        lr: float = 0.01,
        alpha: float = 1e-4,
        device="cpu",
        random_state=None,
    ):
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
        device = resolve_device(self.device)
        Y_arr, classes = encode_fit_targets(y)
        Xt = as_features(X, device)
        if len(Xt) != len(Y_arr):
            raise ValueError(f"X has {len(Xt)} rows but y has {len(Y_arr)}.")
        if len(Xt) == 0:
            raise ValueError("X has no rows.")
        if isinstance(self.random_state, Integral):
            seeds = np.array([int(self.random_state)], dtype=np.int64)
        else:
            seeds = model_seeds(self.random_state, 1)
        Yt = torch.as_tensor(Y_arr, dtype=torch.float32, device=device)
        params, _, _ = fit_heads(
            Xt,
            Yt,
            [np.arange(len(Xt))],
            hidden=self.hidden,
            loss=self.loss,
            epochs=self.epochs,
            lr=self.lr,
            alpha=self.alpha,
            device=device,
            seeds=seeds,
            constant_columns="fit",
            models_per_batch=1,
        )
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
            state = {
                **state,
                "params_": tensors_to(self.params_, "cpu"),
                "params_device_": str(self.params_[0].device),
            }
        return state

    def __setstate__(self, state):
        if "params_" in state:
            device = loadable_device(state.pop("params_device_", "cpu"))
            state = {**state, "params_": tensors_to(state["params_"], device)}
        super().__setstate__(state)

    def decision_function(self, X) -> np.ndarray:
        """Logits, shape (n_inputs, n_classes).

        An input's logits are the same floats alone and in any batch (products of a
        fixed shape, see :func:`sklearn_certify._stacked._engine.forward_blocks`).
        """
        check_is_fitted(self, "params_")
        device = self.params_[0].device
        X = as_features(X, device)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but LinearHead was fitted on {self.n_features_in_}."
            )
        with torch.inference_mode():
            # fixed-shape blocks: an input's logits do not depend on the batch
            logits = forward_blocks([p[None] for p in self.params_], X)[0]
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
