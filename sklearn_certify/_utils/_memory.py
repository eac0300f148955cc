"""Content-keyed caches of fitted base models and sampled counts.

Two caches share the keys built here:

* the ``memory`` cache of the estimators (``None``, a path or a ``joblib.Memory``, as
  in sklearn's Pipeline): entries live in a ``joblib.Memory`` store and survive the
  process, so a cache directory on shared storage serves a whole Dask cluster;
* per-input sampled counts on disk (:class:`CountsStore`, under the same ``memory``
  directory), written a chunk of inputs at a time so an interrupted run resumes;
* an in-process cache of the most recent label counts (:data:`recent_counts`), off
  unless switched on with ``sklearn_certify.set_config(counts_cache=True)`` or
  ``config_context``, so that several scorers of one fitted estimator on one fold
  sample once.

Keys are hashes of *content*, never of object identity: the data's bytes, dtype and
shape; a fitted torch model's class source code, parameters, buffers and plain
attributes (:func:`model_key`); the parameters that change the cached value. A model
the key cannot cover completely (hooks, attributes holding other objects) is never
cached (:class:`~sklearn_certify._utils._keys.UncacheableModel`; the model keys live
in :mod:`sklearn_certify._utils._keys`). Every key also holds :data:`CACHE_FORMAT` and the
library version, so entries written by another version are never looked up. A stored
entry that cannot be loaded (joblib recomputes it) or that fails the caller's check
(wrong type, shape or dtype) is recomputed and overwritten, never returned.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import joblib
import numpy as np
from sklearn.utils.validation import check_memory

__all__ = [
    "CACHE_FORMAT",
    "check_cache_memory",
    "cache_key",
    "data_key",
    "cached_call",
    "recent_counts",
    "CountsStore",
]

#: Version of the layout of cached values; part of every key.
CACHE_FORMAT = 2

#: In-process cache budget (bytes of cached counts).
_RECENT_BYTES = 256 * 2**20


def check_cache_memory(memory) -> joblib.Memory:
    """``memory`` as a joblib.Memory whose location (if any) can be written.

    Parameters
    ----------
    memory : None, str, os.PathLike or joblib.Memory
        ``None`` caches nothing.

    Returns
    -------
    joblib.Memory

    Raises
    ------
    ValueError
        When ``memory`` is of another type or its directory cannot be written.
    """
    if isinstance(memory, os.PathLike):
        memory = os.fspath(memory)
    if isinstance(memory, str):
        _check_writable(memory)
    try:
        memory = check_memory(memory)
    except ValueError:
        raise ValueError(
            "memory must be None, a path or a joblib.Memory, got "
            f"{type(memory).__name__} {memory!r}."
        ) from None
    location = getattr(memory, "location", None)
    if location is not None:
        _check_writable(os.fspath(location))
    return memory


def _check_writable(location: str) -> None:
    try:
        os.makedirs(location, exist_ok=True)
        with tempfile.TemporaryFile(dir=location):
            pass
    except OSError as exc:
        raise ValueError(
            f"memory={location!r} cannot be used as a cache: the directory cannot be "
            f"written ({exc.strerror or exc}). Pass a writable directory, a "
            "joblib.Memory on one, or memory=None."
        ) from exc


def _library_version() -> str:
    from .._version import __version__

    return __version__


def cache_key(kind: str, *parts) -> str:
    """Hash of ``parts`` (joblib.hash), tagged with the kind, the cache format and the
    library version."""
    return joblib.hash((CACHE_FORMAT, _library_version(), kind, parts))


def data_key(data) -> str:
    """Content hash of an array, tensor or array-like (bytes, dtype and shape)."""
    import torch

    if torch.is_tensor(data):
        data = data.detach().cpu().numpy()
    elif not isinstance(data, np.ndarray):
        data = np.asarray(data)
    return joblib.hash(np.ascontiguousarray(data))


def _compute(kind: str, key: str, compute: Callable[[], Any]):
    # ``compute`` is ignored by the joblib hash: the entry is found by (kind, key) only.
    return compute()


def cached_call(
    memory: joblib.Memory,
    kind: str,
    key: str,
    compute: Callable[[], Any],
    check: Callable[[Any], bool] | None = None,
):
    """``compute()``, stored under ``key`` in ``memory`` (computed once per key).

    Parameters
    ----------
    memory : joblib.Memory
        From :func:`check_cache_memory`; without a location nothing is stored.
    kind : str
        What is cached (part of the entry's address).
    key : str
        From :func:`cache_key`.
    compute : callable
        Produces the value; called on a miss, a damaged entry or a failed ``check``.
    check : callable, optional
        Validates a stored value; one it rejects is recomputed and overwritten.
    """
    if getattr(memory, "location", None) is None:
        return compute()
    cached = memory.cache(_compute, ignore=["compute"])
    value = cached(kind, key, compute)
    if check is not None and not _passes(check, value):
        value, _ = cached.call(kind, key, compute)
    return value


def _passes(check, value) -> bool:
    try:
        return bool(check(value))
    except Exception:
        return False


class _RecentCounts:
    """A small, thread-safe LRU of count arrays, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value.copy()
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = value.copy()
            self._bytes += value.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


#: The process's recent label counts, keyed like the persistent counts cache.
recent_counts = _RecentCounts(_RECENT_BYTES)


class CountsStore:
    """Per-input label counts on disk, for one fitted model and one set of sampling
    parameters (the ``params_key``), written a chunk of inputs at a time.

    Layout: ``<location>/sklearn_certify/counts/<params_key>/<chunk>.npz``, each file an
    ``.npz`` (no pickle) with ``keys`` (``uint8``, ``(n, 16)``: the inputs' content
    digests) and ``counts`` (``int64``, ``(n, n_classes)``). A chunk is written to a
    temporary file and renamed, so a process killed while writing leaves no partial
    chunk; a reader sees whole chunks only. Rows that fail the check (shape, dtype,
    each row summing to ``row_sum``) and files that cannot be read are ignored, so
    their inputs are sampled again.

    Parameters
    ----------
    location : str
        The ``memory`` directory.
    params_key : str
        From :func:`cache_key`: the fitted model's content and every parameter that
        changes counts.
    n_classes, row_sum : int
        Expected width of a row and its sum (``n_draws * k_prime``).
    """

    def __init__(self, location: str, params_key: str, n_classes: int, row_sum: int):
        self.directory = os.path.join(os.fspath(location), "sklearn_certify", "counts", params_key)
        self.n_classes = n_classes
        self.row_sum = row_sum

    def load(self) -> dict[bytes, np.ndarray]:
        """Every valid stored row, keyed by input digest."""
        rows: dict[bytes, np.ndarray] = {}
        if not os.path.isdir(self.directory):
            return rows
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(".npz"):
                continue
            try:
                with np.load(os.path.join(self.directory, name), allow_pickle=False) as f:
                    keys, counts = f["keys"], f["counts"]
            except Exception:  # damaged or foreign file: its inputs are sampled again
                continue
            if (
                keys.dtype != np.uint8
                or keys.ndim != 2
                or keys.shape[1] != 16
                or counts.dtype != np.int64
                or counts.shape != (len(keys), self.n_classes)
            ):
                continue
            valid = (counts.sum(axis=1) == self.row_sum) & (counts >= 0).all(axis=1)
            for key, row in zip(keys[valid], counts[valid]):
                rows[key.tobytes()] = row
        return rows

    def save(self, keys: list[bytes], counts: np.ndarray) -> None:
        """Store one chunk of rows atomically."""
        os.makedirs(self.directory, exist_ok=True)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16)
        name = joblib.hash(key_array)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=key_array, counts=np.asarray(counts, dtype=np.int64))
            os.replace(tmp, os.path.join(self.directory, name + ".npz"))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    def writer(self, keys: list[bytes]) -> _ChunkWriter:
        """A picklable ``on_chunk(start, stop, counts)`` that stores the counts of the
        inputs ``keys[start:stop]`` (for a sampling run over inputs with these keys)."""
        return _ChunkWriter(self, keys)


class _ChunkWriter:
    def __init__(self, store: CountsStore, keys: list[bytes]):
        self.store = store
        self.keys = keys

    def __call__(self, start: int, stop: int, counts: np.ndarray) -> None:
        self.store.save(self.keys[start:stop], counts)
