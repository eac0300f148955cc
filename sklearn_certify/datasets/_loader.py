"""What the image-dataset loaders (VOC 2007, MS-COCO, NUS-WIDE) share.

A :class:`Layout` names a data set and draws the folder tree its loader expects: it
checks the arguments and the files, and its errors show that tree. The label lists are
encoded as an indicator matrix, and the loaders return the same ``Bunch``. The text of
their common parameters is written once, in :data:`SHARED_DOCS`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._images import check_image_size, load_images

#: Docstring text of the loaders' common parameters and return values: a docstring
#: line holding only ``%(name)s`` is replaced by ``SHARED_DOCS[name]`` (:func:`fill_doc`).
SHARED_DOCS = {
    "return_images": """\
    return_images : bool, default=False
        Whether to also load every image into memory (``images`` below). For feature
        extraction, pass ``paths`` to
        :class:`~sklearn_certify.features.ImageFeatureExtractor` instead.""",
    "image_size": """\
    image_size : int or (int, int), default=224
        Size (height, width), or side of a square, the images are resized to when
        ``return_images=True``.""",
    "images": """\
        images : ndarray of shape (n_images, 3, height, width), dtype float32
            RGB images in [0, 1], resized to ``image_size``; only with
            ``return_images=True``.""",
}


def fill_doc(func):
    """Replace each docstring line ``%(name)s`` of ``func`` by ``SHARED_DOCS[name]``."""
    if func.__doc__:  # None under python -OO
        lines = func.__doc__.split("\n")
        func.__doc__ = "\n".join(
            SHARED_DOCS[line.strip()[2:-2]]
            if line.strip().startswith("%(") and line.strip().endswith(")s")
            else line
            for line in lines
        )
    return func


@dataclass(frozen=True)
class Layout:
    """A data set's name, its splits and the folder tree its loader expects."""

    dataset: str
    splits: tuple[str, ...]
    tree: str

    def error(self, problem: str) -> FileNotFoundError:
        """A FileNotFoundError that says what is missing and draws the expected tree."""
        return FileNotFoundError(f"{self.dataset}: {problem}\nExpected layout:\n{self.tree}")

    def check_arguments(self, split, image_size, note: str = "") -> None:
        """``split`` must be one of the splits (the error names them), ``image_size``
        a size (:func:`._images.check_image_size`)."""
        if not isinstance(split, str) or split not in self.splits:
            raise ValueError(
                f"split must be one of {list(self.splits)} for {self.dataset}{note}, got {split!r}."
            )
        check_image_size(image_size)

    def root(self, root: str | os.PathLike) -> Path:
        """``root``, with ``~`` expanded; it must be a folder."""
        return self.require_dir(Path(root).expanduser(), what="root")

    def require_dir(self, path: Path, what: str = "folder") -> Path:
        if not path.is_dir():
            raise self.error(f"{what} {os.fspath(path)!r} does not exist.")
        return path

    def require_file(self, path: Path, what: str = "file") -> Path:
        if not path.is_file():
            raise self.error(f"{what} {os.fspath(path)!r} does not exist.")
        return path


def indicator_matrix(label_columns: Iterable[Sequence[int]], n_classes: int) -> np.ndarray:
    """``Y[i, j] == 1`` when the ``i``-th list of ``label_columns`` holds ``j``."""
    rows = list(label_columns)
    Y = np.zeros((len(rows), n_classes), dtype=int)
    for i, columns in enumerate(rows):
        Y[i, list(columns)] = 1
    return Y


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
