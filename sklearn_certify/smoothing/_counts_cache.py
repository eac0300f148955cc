"""The counts caches of :class:`~sklearn_certify.SmoothedMultiLabelClassifier`: the key of
a fitted model's counts, and the ``memory=`` store of sampled counts per input.

Nothing here is used unless the user chose a cache (``memory=``, or
``sklearn_certify.set_config(counts_cache=True)``); see ``docs/guarantees.md``, "What is
cached, and when".
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from .._config import get_config
from .._params import counts_key_parameters
from .._utils._keys import counts_key
from .._utils._memory import CountsStore, cache_key, check_cache_memory, data_key, recent_counts
from .._utils._random import is_int
from ._models import is_torch_model, torch_module_and_device
from ._streams import input_keys

__all__ = ["cached_counts", "counts_params_key", "sample_with_store"]


def cached_counts(clf, X, seed: int, devices) -> np.ndarray:
    """Counts of the checked ``X`` for the smoothed classifier ``clf`` under ``seed``:
    from the in-process cache (``set_config(counts_cache=True)``) or the ``memory=``
    store where they hold them, else sampled (and kept there). Nothing is hashed when
    neither cache is on."""
    in_process = get_config()["counts_cache"]
    location = getattr(check_cache_memory(clf.memory), "location", None)
    params_key = None
    if in_process or location is not None:  # no hashing when nothing can hit
        params_key = counts_params_key(clf, seed, devices)
    key = None
    if in_process and params_key is not None:
        key = cache_key("counts", params_key, data_key(X))
    counts = None if key is None else recent_counts.get(key)
    if counts is None:
        if params_key is None or location is None or len(X) == 0:
            counts = clf._sample(X, seed, devices)
        else:
            counts = sample_with_store(clf, X, seed, devices, params_key, location)
        if key is not None:
            recent_counts.put(key, counts)
    return counts


def sample_with_store(clf, X, seed: int, devices, params_key: str, location) -> np.ndarray:
    """Counts of ``X`` for the smoothed classifier ``clf``: inputs already
    sampled (same model, parameters and content) are read from the cache and the
    others are sampled, each worker storing its counts a chunk at a time as they
    come, so an interrupted call loses at most the chunk in flight per worker."""
    store = CountsStore(location, params_key, clf.n_classes_, clf.n_draws * clf.k_prime)
    keys = input_keys(X)
    known = store.load()
    counts = np.empty((len(X), clf.n_classes_), dtype=np.int64)
    todo: dict[bytes, list[int]] = {}  # digest -> positions of an unsampled input
    for i, digest in enumerate(keys):
        row = known.get(digest)
        if row is None:
            todo.setdefault(digest, []).append(i)
        else:
            counts[i] = row
    if todo:
        first = [positions[0] for positions in todo.values()]
        sampled = clf._sample(
            X[first], seed, devices, on_chunk=store.writer([keys[i] for i in first])
        )
        for digest, row in zip(todo, sampled):
            counts[todo[digest]] = row
    return counts


def counts_params_key(clf, seed: int, devices) -> str | None:
    """Key of the fitted model's content and every parameter that changes counts
    (see :data:`sklearn_certify._params.PARAMETER_ROLES`): with an input's content
    it determines the input's counts. None when each call draws fresh noise
    (``random_state`` None or a RandomState instance) or when the model cannot be
    keyed (:func:`~sklearn_certify._utils._keys.model_key`, with a warning): nothing is
    then cached."""
    if not is_int(clf.random_state):
        return None
    model = clf._sampling_model()
    if devices:
        kinds = tuple(sorted({d.type for d in devices}))
    elif is_torch_model(model):
        kinds = (torch_module_and_device(model)[1].type,)
    else:
        kinds = ("numpy",)
    params = {
        name: _plain(getattr(clf, name))
        for name in counts_key_parameters("SmoothedMultiLabelClassifier")
    }
    return counts_key(model, "smoothing", clf.n_classes_, params, seed, kinds)


def _plain(value):
    """A parameter as the key sees it: numpy and Python numbers alike."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    return value
