"""Pieces shared by the image-dataset loaders and the feature extractor.

Image loading (PIL, RGB, resized to a fixed size, scaled to [0, 1], channels first),
the ``Bunch`` the loaders return, and the errors raised for a missing file or a bad
split, which name the layout the loader expected.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch


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


def check_split(split, valid: Sequence[str], dataset: str, note: str = "") -> str:
    """``split`` must be one of ``valid``; the error names them."""
    if not isinstance(split, str) or split not in valid:
        raise ValueError(f"split must be one of {list(valid)} for {dataset}{note}, got {split!r}.")
    return split


def layout_error(dataset: str, problem: str, tree: str) -> FileNotFoundError:
    """A FileNotFoundError that says what is missing and draws the expected tree."""
    return FileNotFoundError(f"{dataset}: {problem}\nExpected layout:\n{tree}")


def require_dir(path: Path, dataset: str, tree: str, what: str = "folder") -> Path:
    if not path.is_dir():
        raise layout_error(dataset, f"{what} {os.fspath(path)!r} does not exist.", tree)
    return path


def require_file(path: Path, dataset: str, tree: str) -> Path:
    if not path.is_file():
        raise layout_error(dataset, f"file {os.fspath(path)!r} does not exist.", tree)
    return path


def make_bunch(
    paths: list[str],
    Y: np.ndarray,
    class_names: list[str],
    image_ids: list,
    *,
    return_images: bool,
    image_size,
) -> Bunch:
    """The loaders' common return value; ``images`` only when asked for."""
    bunch = Bunch(paths=paths, Y=Y, class_names=class_names, image_ids=image_ids)
    if return_images:
        bunch.images = load_images(paths, image_size)
    return bunch
