"""``train_noise`` of :class:`~sklearn_certify.SmoothedMultiLabelClassifier`: how the base
model is trained for smoothing (``docs/training.md``).

* ``"gaussian"`` (``True`` is an alias): Gaussian data augmentation, fresh noise at
  ``sigma`` on every training batch (one noisy copy per example);
* ``"consistency"``: consistency regularisation, ``m`` noisy copies per example and a
  consistency term (:mod:`sklearn_certify._consistency`), with the defaults below
  unless the net sets its own (``MultiLabelNet(noise_copies=, consistency=)``);
* ``False``: the base estimator is trained as configured.
"""

from __future__ import annotations

import torch
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNet

from ..nets import TrainingNoise

__all__ = ["DEFAULT_CONSISTENCY", "DEFAULT_COPIES", "DEFAULT_DIVERGENCE", "TRAIN_NOISE_MODES",
           "check_train_noise", "configure_net", "train_noise_mode"]

#: The string values of ``train_noise``.
TRAIN_NOISE_MODES = ("gaussian", "consistency")
#: Noisy copies per example under ``train_noise="consistency"`` (measured:
#: ``bench/results_training.md``).
DEFAULT_COPIES = 2
#: Weight of the consistency term under ``train_noise="consistency"``.
DEFAULT_CONSISTENCY = 2.0
#: Divergence of the consistency term (``TrainingNoise(divergence=)``).
DEFAULT_DIVERGENCE = "bernoulli-kl"


def train_noise_mode(train_noise) -> str | None:
    """``"gaussian"``, ``"consistency"`` or None (no training noise) for a ``train_noise``
    value (``True`` is ``"gaussian"``)."""
    if train_noise is True or train_noise == "gaussian":
        return "gaussian"
    if train_noise == "consistency":
        return "consistency"
    return None


def check_train_noise(estimator, mode: str | None) -> None:
    """A clear error when the base estimator cannot be trained with ``mode``.

    Consistency training needs a skorch net that ``fit`` trains: a frozen model, a bare
    ``torch.nn.Module`` (used as already trained) and a non-torch estimator cannot take
    it. (Gaussian augmentation works for any estimator; for a pretrained one ``fit``
    warns that it has no effect.)
    """
    if mode != "consistency":
        return
    if isinstance(estimator, torch.nn.Module | FrozenEstimator):
        raise ValueError(
            f"train_noise='consistency' trains the base model, but the "
            f"{type(estimator).__name__} base model is used as already trained. Train it "
            "yourself (MultiLabelNet(noise_sigma=, noise_copies=, consistency=), or "
            "TrainingNoise(copies=, consistency=) on a skorch net), or pass "
            "train_noise=False; a denoiser (denoiser=GaussianDenoiser()) improves a "
            "pretrained model without retraining it.")
    if estimator is not None and not isinstance(estimator, NeuralNet):
        raise ValueError(
            "train_noise='consistency' needs a skorch net as the base estimator (it "
            "trains on several noisy copies per batch with a consistency term); got "
            f"{type(estimator).__name__}. Use train_noise='gaussian' for it.")


def configure_net(net: NeuralNet, mode: str | None, sigma: float) -> None:
    """Set up a skorch net (a fresh clone) for training with ``mode`` at ``sigma``.

    A net with a ``noise_sigma`` parameter (:class:`~sklearn_certify.nets.MultiLabelNet`)
    gets ``noise_sigma=sigma`` and, under ``"consistency"``, the default
    ``noise_copies`` and ``consistency`` where it leaves them None (a value it sets,
    e.g. from a grid search over ``estimator__consistency``, is kept). Any other skorch
    net gets a :class:`~sklearn_certify.nets.TrainingNoise` callback.
    """
    if mode is None:
        return
    params = net.get_params(deep=False)
    if "noise_sigma" in params:
        net.set_params(noise_sigma=sigma)
        if mode == "consistency":
            if params.get("noise_copies") is None and "noise_copies" in params:
                net.set_params(noise_copies=DEFAULT_COPIES)
            if params.get("consistency") is None and "consistency" in params:
                net.set_params(consistency=DEFAULT_CONSISTENCY)
        return
    callbacks = params.get("callbacks")
    if callbacks == "disable":
        raise ValueError(
            f"train_noise={mode!r} adds a skorch callback, but the net has "
            "callbacks='disable'.")
    callback = (TrainingNoise(sigma) if mode == "gaussian" else
                TrainingNoise(sigma, copies=DEFAULT_COPIES, consistency=DEFAULT_CONSISTENCY,
                              divergence=DEFAULT_DIVERGENCE))
    net.set_params(callbacks=[*(callbacks or []), ("smoothing_train_noise", callback)])
