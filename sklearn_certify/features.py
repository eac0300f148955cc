"""Frozen image encoders as scikit-learn transformers.

The PoisoningGuard protocol trains many small heads on top of one frozen encoder;
:class:`ImageFeatureExtractor` turns image files (or arrays) into that encoder's
features once, so the certified ensembles fit on plain numeric arrays.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._utils._devices import module_dtype
from .datasets._images import check_image_size, load_image

__all__ = ["ImageFeatureExtractor"]


class ImageFeatureExtractor(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Features of a frozen torch backbone, computed batch by batch.

    Images are loaded with PIL (RGB), resized to ``image_size``, scaled to [0, 1],
    normalised with ``mean`` and ``std`` per channel (in float32), cast to the dtype of
    the backbone's parameters (so float16 and bfloat16 backbones work) and passed
    through ``backbone`` in evaluation mode under :func:`torch.inference_mode`; each
    output is flattened into one float32 feature row. Nothing is downloaded: pass a
    module, or a callable that builds one, and optionally a file of weights.

    Parameters
    ----------
    backbone : torch.nn.Module or callable
        The encoder, e.g. a torchvision ResNet with its ``fc`` replaced by
        ``nn.Identity()``, or a callable with no arguments returning such a module
        (e.g. ``torchvision.models.resnet18``). A module passed here is copied at
        ``fit``, never modified.
    image_size : int or (int, int), default=224
        Size (height, width), or side of a square, images are resized to; arrays of
        another size are resized with antialiased bilinear interpolation.
    mean, std : sequence of 3 floats, default=ImageNet statistics
        Per-channel normalisation ``(x - mean) / std`` applied to images in [0, 1].
    batch_size : int, default=64
        Images loaded and encoded at a time.
    device : str or torch.device, default="cpu"
        Where the backbone runs, e.g. ``"cuda"`` or ``"cuda:1"``.
    weights : str or path-like, default=None
        A file holding a ``state_dict`` for the backbone, read with
        ``torch.load(weights, map_location="cpu", weights_only=True)`` and loaded
        strictly into the backbone before it is moved to ``device``.
    verbose : int, default=0
        Show a progress bar (tqdm) over batches when > 0.

    Attributes
    ----------
    backbone_ : torch.nn.Module
        The frozen backbone (in eval mode, on ``device_``, without gradients).
    device_ : torch.device
        The device the backbone runs on.
    image_size_ : tuple of int
        ``(height, width)`` of the images fed to the backbone.
    n_features_out_ : int
        Number of features per image (found by encoding one blank image at ``fit``).

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from sklearn_certify.features import ImageFeatureExtractor
    >>> encoder = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1))
    >>> extractor = ImageFeatureExtractor(encoder, image_size=32).fit()
    >>> images = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    >>> extractor.transform(images).shape
    (5, 8)
    """

    def __init__(
        self,
        backbone: torch.nn.Module | Callable[[], torch.nn.Module],
        *,
        image_size: int | tuple[int, int] = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        weights: str | os.PathLike | None = None,
        verbose: int = 0,
    ):
        self.backbone = backbone
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        self.device = device
        self.weights = weights
        self.verbose = verbose

    def fit(self, X=None, y=None):
        """Check the parameters, build and freeze the backbone; ``X`` and ``y`` are ignored.

        Parameters
        ----------
        X : ignored
            Accepted for pipeline compatibility.
        y : ignored
            Accepted for pipeline compatibility.

        Returns
        -------
        self : ImageFeatureExtractor
            The fitted transformer.
        """
        self.image_size_ = check_image_size(self.image_size)
        self._mean = _check_channels(self.mean, "mean", positive=False)
        self._std = _check_channels(self.std, "std", positive=True)
        if (
            not isinstance(self.batch_size, numbers.Integral)
            or isinstance(self.batch_size, bool)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        self.device_ = _check_device(self.device)

        if isinstance(self.backbone, torch.nn.Module):
            module = copy.deepcopy(self.backbone)
        elif callable(self.backbone):
            module = self.backbone()
            if not isinstance(module, torch.nn.Module):
                raise TypeError(
                    "backbone is a callable, so it must return a torch.nn.Module; it "
                    f"returned {type(module).__name__}."
                )
        else:
            raise TypeError(
                "backbone must be a torch.nn.Module or a callable returning one, got "
                f"{type(self.backbone).__name__}."
            )
        if self.weights is not None:
            if not os.path.isfile(self.weights):
                raise FileNotFoundError(f"weights file {os.fspath(self.weights)!r} not found.")
            # Loaded into the module while it is still on the CPU, then moved once.
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            module.load_state_dict(state)
        self.backbone_ = module.to(self.device_).eval().requires_grad_(False)
        self._input_dtype = module_dtype(self.backbone_, buffers=True)
        self._scale = (
            torch.tensor(self._mean, device=self.device_).view(1, 3, 1, 1),
            torch.tensor(self._std, device=self.device_).view(1, 3, 1, 1),
        )

        blank = np.zeros((1, 3, *self.image_size_), dtype=np.float32)
        self.n_features_out_ = self._encode(blank).shape[1]
        return self

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    def transform(self, X) -> np.ndarray:
        """Encode images.

        Parameters
        ----------
        X : sequence of str or path-like, or array-like of shape (n, 3, height, width)
            Image files (any format PIL reads), or images already loaded: floats in
            [0, 1] (``uint8`` arrays are divided by 255). One-channel images
            ``(n, 1, height, width)`` or ``(n, height, width)`` are repeated to RGB.

        Returns
        -------
        features : ndarray of shape (n, n_features_out), dtype float32
            The flattened backbone output of each image.
        """
        check_is_fitted(self, "backbone_")
        paths, images = _split_input(X)
        n = len(paths) if paths is not None else len(images)
        starts = range(0, n, self.batch_size)
        if self.verbose > 0:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="features", unit="batch")
        chunks = []
        for start in starts:
            stop = min(start + self.batch_size, n)
            if paths is not None:
                batch = np.stack([load_image(p, self.image_size_) for p in paths[start:stop]])
            else:
                batch = images[start:stop]
            chunks.append(self._encode(batch))
        if not chunks:
            return np.empty((0, self.n_features_out_), dtype=np.float32)
        return np.concatenate(chunks)

    def _encode(self, batch: np.ndarray) -> np.ndarray:
        """One batch of [0, 1] images (b, c, h, w) -> features (b, d) as float32."""
        with torch.inference_mode():
            x = torch.as_tensor(batch, dtype=torch.float32).to(self.device_)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            if tuple(x.shape[2:]) != self.image_size_:
                x = F.interpolate(
                    x, size=self.image_size_, mode="bilinear", align_corners=False, antialias=True
                )
            mean, std = self._scale
            # Normalised in float32, then cast to the backbone's own dtype (float16 and
            # bfloat16 backbones); the features are returned as float32.
            out = self.backbone_(((x - mean) / std).to(self._input_dtype))
            if not isinstance(out, torch.Tensor):
                raise TypeError(
                    f"the backbone must return a tensor, got {type(out).__name__}; wrap it "
                    "so that its forward returns the features."
                )
            return out.reshape(out.shape[0], -1).float().cpu().numpy()


def _check_channels(values, name: str, *, positive: bool) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or (positive and np.any(arr <= 0)):
        kind = "positive " if positive else ""
        raise ValueError(f"{name} must be 3 finite {kind}floats (one per channel), got {values!r}.")
    return tuple(float(v) for v in arr)


def _check_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a valid torch device.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available.")
    return dev


def _split_input(X) -> tuple[list | None, np.ndarray | None]:
    """Either a list of image paths or a float32 image array (n, c, h, w)."""
    if isinstance(X, str | os.PathLike):
        raise TypeError("X must be a sequence of image paths or an image array, not one path.")
    if not isinstance(X, np.ndarray) and _is_path_sequence(X):
        return list(X), None
    arr = np.asarray(X)
    if arr.dtype.kind in "OUS":
        if arr.ndim == 1 and _is_path_sequence(arr):
            return arr.tolist(), None
        raise TypeError("X must be a 1-D sequence of image paths or a numeric image array.")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(
            "X as an array must have shape (n, 3, height, width) (or one channel: "
            f"(n, 1, height, width) or (n, height, width)), got {arr.shape}."
        )
    if arr.dtype == np.uint8:
        return None, arr.astype(np.float32) / np.float32(255.0)
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise TypeError(f"X as an array must be numeric, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(
            "X as a float array must hold images scaled to [0, 1] (the extractor normalises "
            "them with mean and std itself)."
        )
    return None, arr


def _is_path_sequence(X) -> bool:
    try:
        items = list(X) if not isinstance(X, np.ndarray) else X.tolist()
    except TypeError:
        return False
    return len(items) > 0 and all(isinstance(x, str | os.PathLike) for x in items)
