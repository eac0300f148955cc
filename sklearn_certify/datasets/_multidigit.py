"""The embedded multi-label benchmark: grids of scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import numbers
from functools import lru_cache

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

__all__ = ["make_multidigit"]

_N_CLASSES = 10
_CELL = 8  # side of a source digit image
_MAX_PIXEL = 16.0  # the digits' pixels go 0..16


@lru_cache(maxsize=1)
def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digit images scaled to [0, 1] (read-only) and their classes."""
    digits = load_digits()
    images = (digits.images / _MAX_PIXEL).astype(np.float32)
    target = digits.target.astype(np.int64)
    images.flags.writeable = False
    target.flags.writeable = False
    return images, target


def _check_grid(grid) -> tuple[int, int]:
    if isinstance(grid, numbers.Integral) and not isinstance(grid, bool):
        grid = (grid, grid)
    try:
        rows, cols = (int(g) for g in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be an int or a pair of ints, got {grid!r}.") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must hold positive ints, got {grid!r}.")
    return rows, cols


def _check_count(value, name: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _draw_sources(pool: np.ndarray, n: int, n_cells: int, empty_prob: float, rng) -> np.ndarray:
    """Source index of every cell of n images, -1 for an empty cell.

    Cells are empty independently with probability ``empty_prob``; an image drawn
    with every cell empty gets one random cell filled, so each image has a label.
    """
    sources = pool[rng.randint(pool.size, size=(n, n_cells))]
    empty = rng.random_sample((n, n_cells)) < empty_prob
    all_empty = np.flatnonzero(empty.all(axis=1))
    empty[all_empty, rng.randint(n_cells, size=all_empty.size)] = False
    sources[empty] = -1
    return sources


def _render(sources: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, rows*8, cols*8) and 0/1 labels (n, 10) for the given cell sources."""
    images, target = _source_digits()
    n = sources.shape[0]
    filled = sources >= 0
    cells = np.zeros((n, rows * cols, _CELL, _CELL), dtype=np.float32)
    cells[filled] = images[sources[filled]]
    pictures = (
        cells.reshape(n, rows, cols, _CELL, _CELL)
        .transpose(0, 1, 3, 2, 4)
        .reshape(n, rows * _CELL, cols * _CELL)
    )
    labels = np.zeros((n, _N_CLASSES), dtype=np.int64)
    image_idx, _ = np.nonzero(filled)
    labels[image_idx, target[sources[filled]]] = 1
    return pictures, labels


def make_multidigit(
    n_train: int = 2000,
    n_test: int = 500,
    *,
    grid: int | tuple[int, int] = (2, 2),
    empty_prob: float = 0.3,
    source_test_size: float = 0.3,
    image_shape: bool = False,
    return_sources: bool = False,
    random_state=None,
):
    """Multi-label images built from scikit-learn's bundled 8x8 handwritten digits.

    Each image is a ``grid`` of 8x8 cells; each cell is empty (all zeros) with
    probability ``empty_prob`` and otherwise holds one digit image drawn uniformly at
    random. The labels of an image are the digit classes present (10 classes); a class
    shown in two cells counts once. An image whose cells all came out empty gets one
    random cell filled, so every image has at least one label. With the defaults
    (2x2 grid, ``empty_prob=0.3``) an image has about 2.5 labels on average, like
    PASCAL VOC 2007.

    The 1797 source digits (:func:`sklearn.datasets.load_digits`, bundled, no download)
    are first split, stratified by class, into a training pool and a test pool; training
    images use only the former and test images only the latter, so no source digit is
    shared between the two sets.

    Parameters
    ----------
    n_train : int, default=2000
        Number of training images.
    n_test : int, default=500
        Number of test images.
    grid : int or (int, int), default=(2, 2)
        Cells per column and per row; an image is ``(8 * grid[0], 8 * grid[1])`` pixels.
        More cells give more labels per image.
    empty_prob : float, default=0.3
        Probability that a cell is empty, in ``[0, 1)``.
    source_test_size : float, default=0.3
        Fraction of the source digits reserved for the test images, in ``(0, 1)``.
    image_shape : bool, default=False
        Return ``X`` as images ``(n, 1, H, W)`` instead of flat ``(n, H * W)``.
    return_sources : bool, default=False
        Also return, for each image and cell (row-major), the index of the source digit
        in ``load_digits()`` shown there, -1 for an empty cell.
    random_state : int, RandomState instance or None, default=None
        Seed of the source split and of the image draws.

    Returns
    -------
    X_train : ndarray of shape (n_train, H * W) or (n_train, 1, H, W), float32
        Training images, pixels in [0, 1].
    X_test : ndarray of shape (n_test, H * W) or (n_test, 1, H, W), float32
        Test images, pixels in [0, 1].
    Y_train : ndarray of shape (n_train, 10), int
        0/1 label indicator matrix of the training images.
    Y_test : ndarray of shape (n_test, 10), int
        0/1 label indicator matrix of the test images.
    sources_train : ndarray of shape (n_train, n_cells), int
        Only when ``return_sources=True``: source digit index per cell, -1 if empty.
    sources_test : ndarray of shape (n_test, n_cells), int
        Only when ``return_sources=True``.

    Examples
    --------
    >>> from sklearn_certify.datasets import make_multidigit
    >>> X_train, X_test, Y_train, Y_test = make_multidigit(random_state=0)
    >>> X_train.shape, Y_train.shape
    ((2000, 256), (2000, 10))
    >>> X_img, _, _, _ = make_multidigit(100, 10, image_shape=True, random_state=0)
    >>> X_img.shape
    (100, 1, 16, 16)
    """
    n_train = _check_count(n_train, "n_train")
    n_test = _check_count(n_test, "n_test")
    rows, cols = _check_grid(grid)
    for name, value in (("empty_prob", empty_prob), ("source_test_size", source_test_size)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{name} must be a float, got {value!r}.")
    if not 0.0 <= empty_prob < 1.0:
        raise ValueError(f"empty_prob must be in [0, 1), got {empty_prob!r}.")
    if not 0.0 < source_test_size < 1.0:
        raise ValueError(f"source_test_size must be in (0, 1), got {source_test_size!r}.")
    rng = check_random_state(random_state)

    _, target = _source_digits()
    pool_train, pool_test = train_test_split(
        np.arange(target.size), test_size=source_test_size, stratify=target, random_state=rng
    )
    sources = [
        _draw_sources(pool, n, rows * cols, empty_prob, rng)
        for pool, n in ((pool_train, n_train), (pool_test, n_test))
    ]
    (X_train, Y_train), (X_test, Y_test) = (_render(s, rows, cols) for s in sources)
    if image_shape:
        X_train, X_test = X_train[:, None], X_test[:, None]
    else:
        X_train, X_test = X_train.reshape(n_train, -1), X_test.reshape(n_test, -1)
    out = (X_train, X_test, Y_train, Y_test)
    if return_sources:
        out += tuple(sources)
    return out
