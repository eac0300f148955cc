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

import warnings
from contextlib import nullcontext

import numpy as np
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state, get_tags
from skorch import NeuralNet

from .._utils._devices import default_device
from .._utils._keys import fit_key
from .._utils._memory import cached_call, data_key
from .._utils._random import SEED_HIGH
from .._utils._torch_seed import estimator_devices, seeded_torch
from ..nets import MultiLabelNet, TrainingNoise

__all__ = [
    "DEFAULT_CONSISTENCY",
    "DEFAULT_COPIES",
    "DEFAULT_DIVERGENCE",
    "TRAIN_NOISE_MODES",
    "check_train_noise",
    "configure_net",
    "default_estimator",
    "fit_base_estimator",
    "train_base_estimator",
    "train_noise_mode",
]

#: Tag mixed into the seed of the training noise, so that the training noise and the
#: certification noise (seeded from the same ``random_state``) are independent streams.
_TRAINING_STREAM = 1

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
            "pretrained model without retraining it."
        )
    if estimator is not None and not isinstance(estimator, NeuralNet):
        raise ValueError(
            "train_noise='consistency' needs a skorch net as the base estimator (it "
            "trains on several noisy copies per batch with a consistency term); got "
            f"{type(estimator).__name__}. Use train_noise='gaussian' for it."
        )


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
            f"train_noise={mode!r} adds a skorch callback, but the net has callbacks='disable'."
        )
    callback = (
        TrainingNoise(sigma)
        if mode == "gaussian"
        else TrainingNoise(
            sigma,
            copies=DEFAULT_COPIES,
            consistency=DEFAULT_CONSISTENCY,
            divergence=DEFAULT_DIVERGENCE,
        )
    )
    net.set_params(callbacks=[*(callbacks or []), ("smoothing_train_noise", callback)])


# ------------------------------------------------------------ training the base model
def fit_base_estimator(clf, X, Y, Y_matrix, memory):
    """The fitted base model of the smoothed classifier ``clf`` (see its ``estimator``
    and ``train_noise``), from ``memory`` when the same training ran before.

    The cache key holds everything training depends on (see
    :data:`sklearn_certify._params.PARAMETER_ROLES`): the base estimator's class and
    parameters, ``train_noise``, ``sigma`` when noise is added, the training seed and
    the content of ``X`` and ``Y``. Without a seed (``random_state=None``) training
    is not reproducible and nothing is cached.
    """
    pretrained = isinstance(clf.estimator, torch.nn.Module | FrozenEstimator)
    if pretrained and clf.train_noise:
        warnings.warn(
            f"train_noise={clf.train_noise!r} has no effect: the "
            f"{type(clf.estimator).__name__} "
            "base model is used as already trained. Train it on Gaussian noise at "
            "this sigma yourself, and pass train_noise=False to silence this warning.",
            UserWarning,
            stacklevel=5,
        )
    if isinstance(clf.estimator, torch.nn.Module):
        return clf.estimator
    estimator = default_estimator() if clf.estimator is None else clone(clf.estimator)
    seed = None
    if clf.random_state is not None:
        entropy = int(check_random_state(clf.random_state).randint(SEED_HIGH))
        seed = int(np.random.SeedSequence([entropy, _TRAINING_STREAM]).generate_state(1)[0])
    # a frozen estimator has nothing to train or cache
    if seed is None or pretrained or getattr(memory, "location", None) is None:
        return train_base_estimator(clf, estimator, X, Y, Y_matrix, seed)
    key = fit_key(
        "smoothing-fit",
        estimator,
        train_noise_mode(clf.train_noise),
        float(clf.sigma) if clf.train_noise else None,
        seed,
        data_key(X),
        data_key(np.asarray(Y)),
    )
    if key is None:
        return train_base_estimator(clf, estimator, X, Y, Y_matrix, seed)
    return cached_call(
        memory,
        "fit",
        key,
        lambda: train_base_estimator(clf, estimator, X, Y, Y_matrix, seed),
        check=lambda fitted: type(fitted) is type(estimator),
    )


def train_base_estimator(clf, estimator, X, Y, Y_matrix, seed: int | None):
    """Train ``estimator`` (a fresh clone) under ``seed``."""
    if isinstance(estimator, NeuralNet):
        return _fit_net(clf, estimator, X, Y, Y_matrix, seed)
    if clf.train_noise and not isinstance(estimator, FrozenEstimator):
        X = _noisy_copy(np.asarray(X), clf.sigma, np.random.default_rng(seed))
    # 1-D targets go to a single-output (native multi-class) base as they are: its
    # score columns follow np.unique(y), i.e. classes_. Multi-output bases get the
    # one-hot matrix.
    native = clf.multiclass_ and get_tags(estimator).target_tags.single_output
    return estimator.fit(X, np.asarray(Y).ravel() if native else Y_matrix)


def _fit_net(clf, net: NeuralNet, X, Y, Y_matrix, seed: int | None) -> NeuralNet:
    """Train a skorch net, with fresh noise per training batch when ``train_noise``."""
    configure_net(net, train_noise_mode(clf.train_noise), clf.sigma)
    if "noise_sigma" in net.get_params(deep=False):
        targets = Y_matrix.astype(np.float32)
    else:
        targets = (
            np.searchsorted(clf.classes_, np.asarray(Y))
            if clf.multiclass_
            else Y_matrix.astype(np.float32)
        )
    if not torch.is_tensor(X):
        X = np.asarray(X, dtype=np.float32)
    context = nullcontext() if seed is None else seeded_torch(seed, estimator_devices(net))
    with context:
        return net.fit(X, targets)


def default_estimator():
    """The base model for ``estimator=None``: a MultiLabelNet, on CUDA when available."""
    return MultiLabelNet(max_epochs=20, lr=1e-3, batch_size=64, device=default_device())


def _noisy_copy(X: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``X + N(0, sigma^2 I)``, in X's float dtype (float64 for other dtypes)."""
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    return X.astype(dtype) + sigma * rng.standard_normal(X.shape, dtype=dtype)
