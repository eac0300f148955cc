"""Image loading shared by the image-dataset loaders and the feature extractor.

PIL, RGB, resized to a fixed size, scaled to [0, 1], channels first. What the loaders
share beyond images (argument and layout checks, the returned ``Bunch``) is in
``_loader.py``.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import numpy as np


def check_image_size(image_size, name: str = "image_size") -> tuple[int, int]:
    """An int ``s`` (square ``s x s``) or a pair ``(height, width)`` of positive ints."""
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, Sequence)
        and not isinstance(image_size, str)
        and len(image_size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise TypeError(
            f"{name} must be an int or a pair (height, width) of ints, got {image_size!r}."
        )
    if min(size) < 1:
        raise ValueError(f"{name} must be positive, got {image_size!r}.")
    return size


def load_image(path: str | os.PathLike, size: tuple[int, int]) -> np.ndarray:
    """One image as a float32 array ``(3, height, width)`` in [0, 1].

    The image is converted to RGB and resized to ``size`` = (height, width) with
    bilinear interpolation, without keeping the aspect ratio (as the papers' training
    pipelines do).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {os.fspath(path)!r}.") from None
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


def load_images(
    paths: Sequence[str | os.PathLike], image_size: int | tuple[int, int] = 224
) -> np.ndarray:
    """Images as one float32 array ``(n, 3, height, width)`` in [0, 1].

    Parameters
    ----------
    paths : sequence of str or path-like
        Image files in any format PIL reads.
    image_size : int or (int, int), default=224
        Output size; an int gives square images.

    Returns
    -------
    images : ndarray of shape (n, 3, height, width), dtype float32
    """
    size = check_image_size(image_size)
    out = np.empty((len(paths), 3, *size), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = load_image(path, size)
    return out
