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

import numbers

import numpy as np
import torch
from scipy.special import expit
from skorch import NeuralNet
from skorch.utils import to_numpy
from torch import nn

from ._consistency import check_consistency_params
from ._denoisers import DenoiserCNN, DenoiserMLP, GaussianDenoiser
from ._modules import MLPModule, SmallCNN
from ._noise_training import TrainingNoise, _accepted_kwargs, _as_float32
from .losses import AsymmetricLoss

__all__ = [
    "DenoiserCNN",
    "DenoiserMLP",
    "GaussianDenoiser",
    "MLPModule",
    "SmallCNN",
    "MultiLabelNet",
    "TrainingNoise",
]


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
            raise ValueError(
                "noise_sigma > 0 adds noise through a skorch callback, but the "
                "net has callbacks='disable'."
            )
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
                "SmoothedMultiLabelClassifier's train_noise)."
            )

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
