"""Torch building blocks for multi-label base classifiers: modules and a skorch net.

:class:`MultiLabelNet` is the default base model of the certified classifiers. It is a
:class:`skorch.NeuralNet` that outputs one logit per label, trains with the asymmetric loss
(:class:`~sklearn_certify.losses.AsymmetricLoss`) used by MultiGuard, infers its input and
output sizes from the data at ``fit``, and can add fresh Gaussian noise to every training
batch, which is what makes randomized-smoothing certificates non-trivial
(:class:`TrainingNoise`). :class:`TrainingNoise` also trains on several noisy copies with
a consistency term (``noise_copies``, ``consistency``;
:class:`~sklearn_certify.losses.ConsistencyLoss`), and :class:`GaussianDenoiser` learns to
remove the noise for denoised smoothing. The losses live in :mod:`sklearn_certify.losses`.

Training is random (weight initialisation, batch order, training noise) and draws from
torch's global generator: call ``torch.manual_seed(...)`` before ``fit`` for reproducible
results.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.special import expit
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.utils import to_numpy
from torch import nn

from ._consistency import check_consistency_params
from ._denoisers import DenoiserCNN, DenoiserMLP, GaussianDenoiser
from .losses import AsymmetricLoss, ConsistencyLoss

__all__ = ["DenoiserCNN", "DenoiserMLP", "GaussianDenoiser", "MLPModule", "SmallCNN",
           "MultiLabelNet", "TrainingNoise"]


def _as_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral):
        return (int(value),)
    if isinstance(value, Sequence):
        return tuple(int(v) for v in value)
    raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}.")


class MLPModule(nn.Module):
    """Fully connected network with ReLU activations, returning one logit per label.

    Inputs with more than two dimensions (e.g. images ``(N, C, H, W)``) are flattened.

    Parameters
    ----------
    n_features : int
        Number of input features (``C * H * W`` for images).
    n_classes : int
        Number of labels (outputs).
    hidden : int or tuple of int, default=(256,)
        Widths of the hidden layers; ``()`` gives a linear model.
    dropout : float, default=0.0
        Dropout probability after each hidden layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.nets import MLPModule
    >>> MLPModule(64, 10)(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden: int | Sequence[int] = (256,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(n_features)
        for size in self.hidden_widths(hidden):
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, int(n_classes)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))

    @staticmethod
    def hidden_widths(hidden: int | Sequence[int]) -> tuple[int, ...]:
        """The hidden layers' widths as a tuple (``hidden`` as the constructor takes it)."""
        return _as_tuple(hidden, "hidden")

    def linear_layers(self) -> list[nn.Linear]:
        """The fully connected layers, from the input to the output."""
        return [layer for layer in self.layers if isinstance(layer, nn.Linear)]

    def load_linear_weights(self, weights) -> None:
        """Copy ``[(W (out, in), b (out,)), ...]`` into :meth:`linear_layers`, in order."""
        layers = self.linear_layers()
        if len(weights) != len(layers):
            raise ValueError(f"{len(weights)} (W, b) pairs for {len(layers)} layers.")
        with torch.no_grad():
            for layer, (W, b) in zip(layers, weights):
                layer.weight.copy_(torch.as_tensor(W))
                layer.bias.copy_(torch.as_tensor(b))


class SmallCNN(nn.Module):
    """Two conv-ReLU-maxpool blocks and a one-hidden-layer head, one logit per label.

    Parameters
    ----------
    in_channels : int
        Number of input channels ``C`` of images ``(N, C, H, W)``.
    n_classes : int
        Number of labels (outputs).
    image_size : int or (int, int)
        Height and width ``(H, W)`` of the images; both at least 4 (each pooling halves
        them).
    channels : (int, int), default=(16, 32)
        Output channels of the two 3x3 convolutions.
    hidden : int, default=128
        Width of the fully connected hidden layer.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.nets import SmallCNN
    >>> SmallCNN(1, 10, (16, 16))(torch.zeros(5, 1, 16, 16)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        image_size: int | tuple[int, int],
        channels: tuple[int, int] = (16, 32),
        hidden: int = 128,
    ) -> None:
        super().__init__()
        size = _as_tuple(image_size, "image_size")
        height, width = (size[0], size[0]) if len(size) == 1 else size
        if min(height, width) < 4:
            raise ValueError(f"SmallCNN needs images of at least 4x4, got {height}x{width}.")
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(int(in_channels), c1, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n_flat = c2 * (height // 4) * (width // 4)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n_flat, hidden),
            nn.ReLU(),
            nn.Linear(hidden, int(n_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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

    def __init__(self, sigma: float | None = None, copies: int | None = None,
                 consistency: float | None = None, divergence: str = "bernoulli-kl"):
        self.sigma = sigma
        self.copies = copies
        self.consistency = consistency
        self.divergence = divergence

    def _settings(self, net) -> tuple[float, int, float]:
        sigma = getattr(net, "noise_sigma", 0.0) if self.sigma is None else self.sigma
        copies = getattr(net, "noise_copies", None) if self.copies is None else self.copies
        weight = (getattr(net, "consistency", None) if self.consistency is None
                  else self.consistency)
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
                raise TypeError(f"noise_copies > 1 needs tensor targets, got "
                                f"{type(yi).__name__}.")
        elif copies == 1:  # a tuple cannot take a moved tensor: noise on its own device
            Xi.copy_(Xi + sigma * torch.randn_like(Xi))
        else:
            raise TypeError("noise_copies > 1 needs list batches (skorch's default "
                            "collation); got a tuple.")


class MultiLabelNet(NeuralNet):
    """skorch net for multi-label classification: one logit per label, ASL by default.

    ``fit(X, Y)`` takes ``X`` as a flat ``(n_inputs, n_features)`` array or as images
    ``(n_inputs, C, H, W)`` and ``Y`` as a 0/1 indicator matrix ``(n_inputs, n_classes)``;
    both are cast to float32. The module's input and output sizes are inferred from
    ``X`` and ``Y`` at ``fit`` (see ``module``).

    Parameters
    ----------
    module : torch.nn.Module class or instance, or None, default=None
        ``None`` picks :class:`MLPModule` for 2-D ``X`` and :class:`SmallCNN` for 4-D
        ``X``; 3-D ``X`` ``(n_inputs, H, W)`` is then read as single-channel images (a
        channel axis is added, at ``fit`` and at prediction). For a module class (the
        default ones included), the inferred sizes ``n_features`` (``prod(X.shape[1:])``),
        ``n_classes``, ``in_channels`` and ``image_size`` are passed to the constructor
        when it accepts them and the user has not set them as ``module__<name>``. A
        module instance is used as given.
    criterion : torch loss class or instance, default=AsymmetricLoss
        Loss of the logits against float 0/1 targets.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
        Learning rate.
    max_epochs : int, default=20
        Number of training epochs.
    batch_size : int, default=64
        Mini-batch size for training and prediction.
    noise_sigma : float, default=0.0
        Standard deviation of the isotropic Gaussian noise added to the inputs of every
        training batch. Fresh noise is drawn on the batch's device for each batch of each
        epoch (never a fixed noisy copy of the data); prediction and validation batches
        are clean. Use the smoothing sigma here to train a base model for
        randomized smoothing.
    noise_copies : int or None, default=None
        Noisy copies of every training example per batch (``m``), each with its own
        noise; None means 1, or the recommended number when
        :class:`~sklearn_certify.SmoothedMultiLabelClassifier` trains the net with
        ``train_noise="consistency"``. Needs ``noise_sigma > 0``.
    consistency : float or None, default=None
        Weight of the consistency term that pulls the copies' predictions together
        (consistency regularisation, :class:`~sklearn_certify.losses.ConsistencyLoss`;
        ``docs/training.md``); None means 0, or the recommended weight under
        ``train_noise="consistency"``. The loss is the mean criterion over the copies
        plus this weight times the divergence; one copy and weight 0 is plain Gaussian
        data augmentation.
    train_split : callable or None, default=None
        skorch's validation split; ``None`` trains on all data.
    device : str or torch.device, default="cpu"
        Where the module runs, e.g. ``"cuda"``.
    verbose : int, default=0
        skorch's per-epoch log when > 0.
    **kwargs
        Any other :class:`skorch.NeuralNet` argument, including ``module__*``,
        ``criterion__*``, ``optimizer__*``, ``iterator_train__*`` and ``callbacks``.
        Training batches are shuffled (``iterator_train__shuffle=True``) unless set.

    Attributes
    ----------
    module_ : torch.nn.Module
        The initialised module.
    n_features_in_ : int
        Number of input features, ``prod(X.shape[1:])`` (after the channel axis is added).
    input_shape_ : tuple of int
        Shape of one input as the module sees it.
    n_classes_ : int
        Number of labels.

    Notes
    -----
    Weight initialisation, batch order and training noise come from torch's global
    generator; call ``torch.manual_seed(...)`` before ``fit`` for reproducible training.

    Examples
    --------
    >>> import torch
    >>> from sklearn_certify.datasets import make_multidigit
    >>> from sklearn_certify.nets import MultiLabelNet
    >>> X_train, X_test, Y_train, Y_test = make_multidigit(500, 100, random_state=0)
    >>> _ = torch.manual_seed(0)
    >>> net = MultiLabelNet(max_epochs=5, noise_sigma=0.25).fit(X_train, Y_train)
    >>> net.predict_proba(X_test).shape
    (100, 10)
    """

    def __init__(
        self,
        module: type[nn.Module] | nn.Module | None = None,
        *,
        criterion=AsymmetricLoss,
        optimizer=torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 20,
        batch_size: int = 64,
        noise_sigma: float = 0.0,
        noise_copies: int | None = None,
        consistency: float | None = None,
        train_split=None,
        device: str | torch.device = "cpu",
        verbose: int = 0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            device=device,
            verbose=verbose,
            **kwargs,
        )
        self.noise_sigma = noise_sigma
        self.noise_copies = noise_copies
        self.consistency = consistency

    # ------------------------------------------------------------------ data and sizes

    def _prepare_X(self, X_in):
        """X as float32 (array or tensor), with a channel axis for 3-D X and module=None."""
        X = _as_float32(X_in)
        if X is None:
            return X_in  # a Dataset, dict, list of inputs, ...: left to skorch and the module
        if self.module is None and X.ndim == 3:
            X = X[:, None]
        return X

    @staticmethod
    def _prepare_y(y):
        y_float = _as_float32(y)
        if y_float is None:
            return y
        y = y_float
        if y.ndim != 2:
            raise ValueError(
                "MultiLabelNet expects Y as a 2-D 0/1 indicator matrix (n_inputs, "
                f"n_classes), got an array of shape {tuple(y.shape)}."
            )
        return y

    def _prepare_fit_data(self, X, y):
        X, y = self._prepare_X(X), self._prepare_y(y)
        if hasattr(X, "shape") and hasattr(y, "shape"):
            self.input_shape_ = tuple(int(s) for s in X.shape[1:])
            self.n_features_in_ = int(np.prod(self.input_shape_, dtype=np.int64))
            self.n_classes_ = int(y.shape[1])
        return X, y

    def _default_module(self) -> type[nn.Module]:
        shape = getattr(self, "input_shape_", None)
        if shape is None or len(shape) == 1:
            return MLPModule
        if len(shape) == 3:
            return SmallCNN
        raise ValueError(
            "module=None handles flat X (n_inputs, n_features) and images (n_inputs, C, H, W) "
            f"or (n_inputs, H, W); got inputs of shape {shape}. Pass a module."
        )

    def _inferred_module_kwargs(self) -> dict:
        shape = getattr(self, "input_shape_", None)
        if shape is None:
            return {}
        inferred = {"n_features": self.n_features_in_, "n_classes": self.n_classes_}
        if len(shape) == 3:
            inferred.update(in_channels=shape[0], image_size=tuple(shape[1:]))
        return inferred

    def initialize_module(self):
        """Initialise the module, filling in the sizes inferred from the data at ``fit``."""
        module = self._default_module() if self.module is None else self.module
        kwargs = self.get_params_for("module")
        if not isinstance(module, nn.Module):
            accepted = _accepted_kwargs(module)
            inferred = {
                key: val
                for key, val in self._inferred_module_kwargs().items()
                if key in accepted and key not in kwargs
            }
            kwargs = {**inferred, **kwargs}
        self.module_ = self.initialized_instance(module, kwargs)
        return self

    # ------------------------------------------------------------------------ training

    def get_default_callbacks(self):
        """skorch's defaults and :class:`TrainingNoise` (active when ``noise_sigma > 0``)."""
        return [*super().get_default_callbacks(), ("train_noise", TrainingNoise())]

    def _check_noise_sigma(self) -> None:
        sigma = self.noise_sigma
        if sigma and self.callbacks == "disable":
            raise ValueError("noise_sigma > 0 adds noise through a skorch callback, but the "
                             "net has callbacks='disable'.")
        if (
            not isinstance(sigma, numbers.Real)
            or isinstance(sigma, bool)
            or not np.isfinite(sigma)
            or sigma < 0
        ):
            raise ValueError(f"noise_sigma must be a finite float >= 0, got {sigma!r}.")
        copies = 1 if self.noise_copies is None else self.noise_copies
        weight = 0.0 if self.consistency is None else self.consistency
        check_consistency_params(copies, weight, "bernoulli-kl")
        if not sigma and (copies != 1 or weight != 0):
            raise ValueError(
                f"noise_copies={self.noise_copies!r} and consistency={self.consistency!r} "
                "train on noisy copies, but noise_sigma=0: set noise_sigma > 0 (or "
                "SmoothedMultiLabelClassifier's train_noise).")

    def fit(self, X, y=None, **fit_params) -> MultiLabelNet:
        """Initialise the module for the shapes of ``X`` and ``y`` and train it.

        Parameters
        ----------
        X : array-like of shape (n_inputs, n_features) or (n_inputs, C, H, W)
            Training inputs (3-D ``(n_inputs, H, W)`` when ``module`` is None).
        y : array-like of shape (n_inputs, n_classes)
            0/1 label indicator matrix.
        **fit_params : dict
            Passed on to :meth:`skorch.NeuralNet.fit`.

        Returns
        -------
        self : MultiLabelNet
        """
        self._check_noise_sigma()
        X, y = self._prepare_fit_data(X, y)
        return super().fit(X, y, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params) -> MultiLabelNet:
        """Train further without re-initialising (see :meth:`skorch.NeuralNet.partial_fit`)."""
        self._check_noise_sigma()
        if not self.initialized_:
            X, y = self._prepare_fit_data(X, y)
        else:
            X, y = self._prepare_X(X), self._prepare_y(y)
        return super().partial_fit(X, y, classes=classes, **fit_params)

    # ---------------------------------------------------------------------- prediction

    def decision_function(self, X) -> np.ndarray:
        """Logits of the labels.

        Parameters
        ----------
        X : array-like of shape (n_inputs, ...)
            Inputs, shaped as at ``fit``.

        Returns
        -------
        logits : ndarray of shape (n_inputs, n_classes), float32
        """
        X = self._prepare_X(X)
        chunks = []
        for out in self.forward_iter(X, training=False):
            out = out[0] if isinstance(out, tuple) else out
            chunks.append(to_numpy(out))
        return np.concatenate(chunks, axis=0)

    def predict_proba(self, X) -> np.ndarray:
        """Probability of each label, the sigmoid of the logits.

        Returns
        -------
        proba : ndarray of shape (n_inputs, n_classes), float32
            Each entry in [0, 1]; rows need not sum to 1.
        """
        return expit(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        """Predicted label sets: 1 where the probability exceeds 0.5.

        Returns
        -------
        Y_pred : ndarray of shape (n_inputs, n_classes), int
        """
        return (self.predict_proba(X) > 0.5).astype(np.int64)
