"""Denoised smoothing: the base classifier under noise is ``classifier(denoiser(x + noise))``.

The denoiser and the base classifier's module are composed into one torch module,
:class:`Denoised`, and that module is what the sampling engine runs: ``predict``,
``predict_proba``, ``certify`` (``sequential=True`` included), ``n_jobs`` workers,
``devices`` copies, the counts caches (keyed on the composed module's content, so on
the denoiser's weights too) and pickling all see the denoiser without knowing about it.
The composition is built afresh from ``estimator_`` and ``denoiser_`` at every call
(it copies nothing), so a denoiser changed in place is sampled, and keyed, as it is now.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from .._utils._devices import module_device
from .._utils._keys import UncacheableModel, fit_key, model_key
from .._utils._memory import cached_call, data_key
from .._utils._torch_seed import seeded_torch
from ._models import is_torch_model, module_input, torch_module_and_device
from ._sampling import draw_seed

__all__ = ["Denoised", "fit_denoiser", "sampling_model"]

#: Tag mixed into the seed of the denoiser's training (the base model's is 1).
_DENOISER_STREAM = 2


class Denoised(nn.Module):
    """``classifier(denoiser(x))`` as one module.

    Parameters
    ----------
    denoiser : torch.nn.Module
        Maps a batch to a batch of the same shape.
    classifier : torch.nn.Module
        The base classifier's module, one score per label.
    input_shape : tuple of int or None, default=None
        Shape of one input as both modules take it: a batch of another shape with as
        many features is reshaped to it first (as a skorch net's ``input_shape_``).
    """

    def __init__(
        self, denoiser: nn.Module, classifier: nn.Module, input_shape: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.input_shape
        if (
            shape is not None
            and tuple(x.shape[1:]) != shape
            and math.prod(x.shape[1:]) == math.prod(shape)
        ):
            x = x.reshape(len(x), *shape)
        out = self.classifier(self.denoiser(x))
        return out[0] if isinstance(out, (tuple, list)) else out


def denoiser_module(denoiser) -> nn.Module:
    """The torch module of a denoiser: a module itself, or a fitted skorch net's."""
    return denoiser if isinstance(denoiser, nn.Module) else denoiser.module_


def sampling_model(estimator, denoiser):
    """The model the sampling engine runs: ``estimator`` itself without a denoiser, else
    :class:`Denoised` of the denoiser and the estimator's module."""
    if denoiser is None:
        return estimator
    classifier, _ = torch_module_and_device(estimator)
    shape = None if isinstance(estimator, nn.Module) else getattr(estimator, "input_shape_", None)
    return Denoised(denoiser_module(denoiser), classifier, shape)


def fitted_sampling_model(clf):
    """The base classifier the noisy copies of the fitted ``clf`` go through:
    ``estimator_``, behind ``denoiser_`` when there is one.

    The composition is kept on ``clf`` while ``estimator_`` and ``denoiser_`` are the
    same objects (it holds them, so in-place changes are seen), so that the prepared
    (cast, compiled) modules of ``sampling_dtype`` and ``compile`` are reused.
    """
    denoiser = getattr(clf, "denoiser_", None)
    if denoiser is None:
        return clf.estimator_
    kept = clf.__dict__.get("_denoised")
    if kept is None or kept[0] is not clf.estimator_ or kept[1] is not denoiser:
        kept = clf._denoised = (clf.estimator_, denoiser, sampling_model(clf.estimator_, denoiser))
    return kept[2]


def _check_torch_base(estimator) -> None:
    if not is_torch_model(estimator):
        raise ValueError(
            "denoiser needs a torch base model (a skorch net, frozen or not, or a "
            f"torch.nn.Module) to run behind it; got {type(estimator).__name__}."
        )


def fit_denoiser(clf, X, memory):
    """The fitted denoiser of ``clf`` (a SmoothedMultiLabelClassifier whose ``estimator_``
    is fitted), or None.

    A ``torch.nn.Module`` is used as is (it must live on the base model's device). A
    skorch denoiser (:class:`~sklearn_certify.nets.GaussianDenoiser`) is cloned, set to
    ``sigma=clf.sigma`` and the base model's device, and trained on ``X`` (shaped as the
    base module takes it) under a seed drawn from ``random_state`` and tagged apart from
    the base model's and the sampling's; with ``memory`` and a seed the trained denoiser
    is cached, keyed on its parameters, ``sigma``, the seed, the data and (for
    ``objective="stability"``) the base model's content.
    """
    denoiser = clf.denoiser
    if denoiser is None:
        return None
    estimator = clf.estimator_
    _check_torch_base(estimator)
    classifier, device = torch_module_and_device(estimator)
    if isinstance(denoiser, nn.Module):
        own = module_device(denoiser)
        if own is not None and own != device:
            raise ValueError(
                f"the denoiser's parameters are on {own} but the base model runs on "
                f"{device}: move the denoiser there (denoiser.to(...))."
            )
        return denoiser
    if not hasattr(denoiser, "set_params") or "sigma" not in denoiser.get_params(deep=False):
        raise ValueError(
            "denoiser must be None, a GaussianDenoiser or a trained torch.nn.Module; got "
            f"{type(denoiser).__name__}."
        )
    denoiser = clone(denoiser).set_params(sigma=float(clf.sigma), device=str(device))
    X = module_input(estimator, X, torch.device("cpu"), torch.float32)
    seed = None
    if clf.random_state is not None:
        entropy = draw_seed(clf.random_state)
        seed = int(np.random.SeedSequence([entropy, _DENOISER_STREAM]).generate_state(1)[0])

    def train():
        if seed is None:
            return denoiser.fit(X, classifier=estimator)
        with seeded_torch(seed, ["cpu", str(device)]):
            return denoiser.fit(X, classifier=estimator)

    if seed is None or getattr(memory, "location", None) is None:
        return train()
    stability = denoiser.get_params(deep=False).get("objective") == "stability"
    try:
        base = model_key(estimator) if stability else None
    except UncacheableModel:
        return train()  # the base model trains the denoiser: no key, no cache
    key = fit_key("smoothing-denoiser", denoiser, seed, data_key(X), base)
    if key is None:
        return train()
    return cached_call(
        memory, "denoiser", key, train, check=lambda fitted: type(fitted) is type(denoiser)
    )
