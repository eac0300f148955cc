"""Gaussian denoisers for denoised smoothing (Salman et al., NeurIPS 2020).

A denoiser ``D`` is trained to undo Gaussian noise at the smoothing ``sigma``; the base
classifier under noise is then ``f(D(x + noise))``, which lets a classifier trained on
clean inputs be certified without retraining it. :class:`GaussianDenoiser` is the skorch
net that :class:`~sklearn_certify.SmoothedMultiLabelClassifier` trains for its
``denoiser`` parameter; it is re-exported from :mod:`sklearn_certify.nets`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skorch import NeuralNet
from skorch.utils import to_numpy
from torch import nn

__all__ = ["DenoiserCNN", "DenoiserMLP", "GaussianDenoiser", "OBJECTIVES"]

#: The training objectives of :class:`GaussianDenoiser`.
OBJECTIVES = ("mse", "stability")


class DenoiserCNN(nn.Module):
    """Small residual CNN denoiser (DnCNN-style): ``x - g(x)``, ``g`` predicting the noise.

    Parameters
    ----------
    in_channels : int
        Channels ``C`` of images ``(N, C, H, W)``.
    width : int, default=32
        Channels of the hidden 3x3 convolutions.
    depth : int, default=5
        Number of convolutions (at least 2).

    Notes
    -----
    The last convolution starts at zero, so an untrained denoiser is the identity.
    """

    def __init__(self, in_channels: int, width: int = 32, depth: int = 5) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}.")
        layers: list[nn.Module] = [nn.Conv2d(int(in_channels), width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        last = nn.Conv2d(width, int(in_channels), 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


class DenoiserMLP(nn.Module):
    """Residual MLP denoiser for flat inputs: ``x - g(x)``, reshaped like ``x``.

    Parameters
    ----------
    n_features : int
        Number of input features (``prod`` of one input's shape).
    hidden : int or tuple of int, default=(512,)
        Widths of the hidden layers.

    Notes
    -----
    The output layer starts at zero, so an untrained denoiser is the identity.
    """

    def __init__(self, n_features: int, hidden: int | Sequence[int] = (512,)) -> None:
        super().__init__()
        widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        layers: list[nn.Module] = []
        width = int(n_features)
        for size in widths:
            layers += [nn.Linear(width, int(size)), nn.ReLU()]
            width = int(size)
        last = nn.Linear(width, int(n_features))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (flat - self.body(flat)).reshape(x.shape)


class GaussianDenoiser(NeuralNet):
    """skorch net that learns to remove Gaussian noise ``N(0, sigma^2 I)`` from inputs.

    ``fit(X)`` trains on the inputs alone: every training batch is noised afresh at
    ``sigma`` (:class:`~sklearn_certify.nets.TrainingNoise`) and the module learns to
    map it back. ``transform(X)`` (or ``predict``) returns the denoised inputs, shaped
    like ``X``. As the ``denoiser`` of
    :class:`~sklearn_certify.SmoothedMultiLabelClassifier` it is cloned and trained by
    ``fit`` at the smoothing ``sigma``, on the training inputs and (for
    ``"stability"``) through the fitted base classifier, on that classifier's device.

    Parameters
    ----------
    module : torch.nn.Module class or instance, or None, default=None
        ``None`` picks :class:`DenoiserCNN` for images ``(n, C, H, W)`` and
        :class:`DenoiserMLP` for other shapes (given ``n_features`` or ``in_channels``
        from ``X`` when the class accepts them and ``module__*`` does not set them).
    sigma : float, default=0.5
        Standard deviation of the noise to remove (the smoothing classifier sets it to
        its own ``sigma``).
    objective : {"mse", "stability"}, default="mse"
        The objectives of Salman et al. (2020). ``"mse"``: reconstruction,
        ``||D(x + noise) - x||^2`` (mean over the features). ``"stability"``: the
        reconstruction loss plus ``stability_weight`` times
        ``KL(softmax(f(x)) || softmax(f(D(x + noise))))``, the divergence of the
        frozen base classifier's label distribution on the denoised copy from the one on
        the clean input (the softmax over the label scores is the distribution of its
        top-1 label, what the smoothed classifier counts); ``f`` is passed to ``fit``
        as ``classifier`` and never trained. Keeping the reconstruction term is
        Salman et al.'s "MSE + stability" recipe in one stage.
    stability_weight : float, default=5.0
        Weight of the stability term (``objective="stability"`` only). Measured on
        ``make_multidigit`` at sigma = 0.5 (certified f1 at R = 0.5 of a clean-trained
        MLP behind the denoiser): 16.0 % at weight 1, 17.6 % at 5, 17.2 % at 20, 13.8 %
        for ``"mse"`` (``docs/training.md``).
    criterion : torch loss class, default=torch.nn.MSELoss
        Reconstruction loss.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
    train_split : callable or None, default=None
    device : str or torch.device, default="cpu"
    verbose : int, default=0
    **kwargs
        Any other :class:`skorch.NeuralNet` argument.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained denoiser.
    input_shape_ : tuple of int
        Shape of one input at ``fit``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn_certify.nets import GaussianDenoiser
    >>> X = np.random.default_rng(0).random((200, 16), dtype=np.float32)
    >>> _ = torch.manual_seed(0)
    >>> den = GaussianDenoiser(sigma=0.5, max_epochs=2).fit(X)
    >>> den.transform(X[:3]).shape
    (3, 16)
    """

    def __init__(
        self,
        module: type[nn.Module] | nn.Module | None = None,
        *,
        sigma: float = 0.5,
        objective: str = "mse",
        stability_weight: float = 5.0,
        criterion=nn.MSELoss,
        optimizer=torch.optim.Adam,
        lr: float = 1e-3,
        max_epochs: int = 20,
        batch_size: int = 64,
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
        self.sigma = sigma
        self.objective = objective
        self.stability_weight = stability_weight

    @property
    def noise_sigma(self) -> float:
        """The training noise of :class:`~sklearn_certify.nets.TrainingNoise`: ``sigma``."""
        return self.sigma

    def get_default_callbacks(self):
        """skorch's defaults and :class:`~sklearn_certify.nets.TrainingNoise` at ``sigma``."""
        from ._noise_training import TrainingNoise

        return [*super().get_default_callbacks(), ("train_noise", TrainingNoise())]

    def initialize_module(self):
        """Initialise the module, :class:`DenoiserCNN` or :class:`DenoiserMLP` by default."""
        shape = getattr(self, "input_shape_", None)
        module = self.module
        if module is None:
            module = DenoiserCNN if shape is not None and len(shape) == 3 else DenoiserMLP
        kwargs = self.get_params_for("module")
        if not isinstance(module, nn.Module) and shape is not None:
            from ._noise_training import _accepted_kwargs

            accepted = _accepted_kwargs(module)
            inferred = {"n_features": int(np.prod(shape)), "in_channels": shape[0]}
            kwargs = {
                **{k: v for k, v in inferred.items() if k in accepted and k not in kwargs},
                **kwargs,
            }
        self.module_ = self.initialized_instance(module, kwargs)
        return self

    def _check_params(self, classifier) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}."
            )
        sigma = self.sigma
        if (
            isinstance(sigma, bool)
            or not isinstance(sigma, (int, float))
            or not sigma > 0
            or not np.isfinite(sigma)
        ):
            raise ValueError(f"sigma must be a finite float > 0, got {sigma!r}.")
        if self.objective == "stability" and classifier is None:
            raise ValueError(
                "objective='stability' trains through the base classifier: pass it as "
                "fit(X, classifier=...) (SmoothedMultiLabelClassifier does), or use "
                "objective='mse'."
            )
        if not float(self.stability_weight) >= 0:
            raise ValueError(f"stability_weight must be >= 0, got {self.stability_weight!r}.")

    def fit(self, X, y=None, classifier=None, **fit_params) -> GaussianDenoiser:
        """Train the denoiser on the inputs ``X`` (``y`` is ignored).

        Parameters
        ----------
        X : array-like or tensor of shape (n_inputs, ...)
            Clean training inputs, shaped as the classifier's module takes them.
        y : None
            Ignored (the inputs are their own targets).
        classifier : torch.nn.Module, fitted skorch net or None, default=None
            The base classifier, for ``objective="stability"``: a frozen copy of its
            module scores the clean and the denoised inputs during training.
        **fit_params : dict
            Passed on to :meth:`skorch.NeuralNet.fit`.

        Returns
        -------
        self : GaussianDenoiser
        """
        self._check_params(classifier)
        X = (
            torch.as_tensor(X).to(torch.float32)
            if torch.is_tensor(X)
            else np.asarray(X, dtype=np.float32)
        )
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        # set through __dict__: skorch registers torch modules set as attributes, and
        # the frozen classifier is a training aid, not a part of the denoiser
        self.__dict__["_classifier"] = None
        if self.objective == "stability":
            module = classifier if isinstance(classifier, nn.Module) else classifier.module_
            frozen = copy.deepcopy(module).to(self.device).eval()
            for param in frozen.parameters():
                param.requires_grad_(False)
            self.__dict__["_classifier"] = frozen
        try:
            return super().fit(X, X, **fit_params)
        finally:
            self.__dict__["_classifier"] = None  # the base model is not kept

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """Reconstruction loss, plus the stability term for ``objective="stability"``."""
        y_true = y_true.to(y_pred.device)
        loss = self.criterion_(y_pred, y_true)
        classifier = getattr(self, "_classifier", None)
        if self.objective == "stability" and classifier is not None:
            with torch.no_grad():
                target = F.log_softmax(_scores(classifier, y_true), dim=-1)
            log_p = F.log_softmax(_scores(classifier, y_pred), dim=-1)
            kl = (target.exp() * (target - log_p)).sum(-1).mean()
            loss = loss + self.stability_weight * kl
        return loss

    def transform(self, X) -> np.ndarray:
        """The denoised inputs, shaped like ``X``, as float32."""
        X = (
            torch.as_tensor(X).to(torch.float32)
            if torch.is_tensor(X)
            else np.asarray(X, dtype=np.float32)
        )
        chunks = [to_numpy(out) for out in self.forward_iter(X, training=False)]
        return np.concatenate(chunks, axis=0)

    def predict(self, X) -> np.ndarray:
        """Same as :meth:`transform`."""
        return self.transform(X)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_classifier", None)
        return state


def _scores(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.reshape(len(x), -1)
