"""Sharding the sampling across joblib workers, Dask workers or several devices.

Every input's noise is its own stream (:mod:`~sklearn_certify.smoothing._streams`), so
the inputs can be split into shards sampled anywhere: the counts are those of one
call on all of X. The caller draws the seed once; every shard gets it.

* ``devices``: one shard per device, each on a thread of this process with its own
  copy of the module on its device (torch releases the GIL while it computes). No
  Dask needed; several GPUs of one machine work together.
* ``n_jobs``: one shard per joblib worker, through whatever joblib backend is active
  (loky processes by default, ``joblib.parallel_backend("dask")`` for a Dask cluster).
  Each worker gets one task holding its whole shard, so the model travels to it once
  per call, and a worker in another process limits torch to its share of the cores.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from joblib import Parallel, cpu_count, delayed, effective_n_jobs

from ._sampling import chunk_inputs, sample_label_counts

__all__ = ["sharded_label_counts"]


def sharded_label_counts(
    model, X, *, seed: int, n_jobs=None, devices=None, on_chunk=None, **engine
) -> np.ndarray:
    """Label counts of ``X``, its inputs split into shards sampled in parallel.

    Parameters
    ----------
    model, X
        As in :func:`~sklearn_certify.smoothing._sampling.sample_label_counts`.
    seed : int
        The call's seed, shared by every shard.
    n_jobs : int or None
        joblib workers (``None``: 1 unless a ``joblib.parallel_config`` says otherwise,
        ``-1``: all); ignored when ``devices`` is given.
    devices : list of str or torch.device, or None
        One shard per device, on threads of this process.
    on_chunk : callable or None
        ``on_chunk(start, stop, counts)``, called where the sampling runs (in the
        worker) as soon as the counts of inputs ``X[start:stop]`` are known, a chunk
        of at most :func:`~sklearn_certify.smoothing._sampling.chunk_inputs` inputs at
        a time: a cache stores them there, so that an interrupted call loses at most
        the chunk in flight per worker. With a process-based backend it must pickle.
    **engine
        The other arguments of ``sample_label_counts``: ``n_classes``, ``sigma``,
        ``k_prime``, ``n_draws``, ``batch_size``, ``verbose`` (shown only when the
        sampling runs in this thread) and ``first_draw`` (every input's draws
        ``[first_draw, first_draw + n_draws)``, as a staged run needs),
        ``sampling_dtype``, ``compile`` and ``models`` (the caller's
        :class:`~sklearn_certify.smoothing._runners.SamplingModels`: device threads
        share it; a worker process gets an empty one and prepares its own).

    Returns
    -------
    counts : ndarray of int64, shape (n_inputs, n_classes)
    """
    n_inputs = len(X)
    quiet = {**engine, "seed": seed, "verbose": 0}
    if devices:
        shards = _shards(n_inputs, len(devices))
        parts = Parallel(n_jobs=len(shards), backend="threading")(
            delayed(_shard_counts)(model, X[lo:hi], lo, on_chunk, device=device, **quiet)
            for (lo, hi), device in zip(shards, devices)
        )
        return _concatenate(parts, engine["n_classes"])
    n_tasks = min(effective_n_jobs(n_jobs), n_inputs)
    if n_tasks <= 1:
        return _shard_counts(model, X, 0, on_chunk, seed=seed, **engine)
    shards = _shards(n_inputs, n_tasks)
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_worker_counts)(model, X[lo:hi], lo, on_chunk, os.getpid(), n_tasks, **quiet)
        for lo, hi in shards
    )
    return _concatenate(parts, engine["n_classes"])


def _shards(n_inputs: int, n_shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``n_shards`` consecutive, near-equal, non-empty shards."""
    bounds = np.linspace(0, n_inputs, min(n_shards, n_inputs) + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _concatenate(parts, n_classes: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, n_classes), dtype=np.int64)


def _worker_counts(
    model, X, offset: int, on_chunk, parent_pid: int, n_tasks: int, **kwargs
) -> np.ndarray:
    """One worker's shard. In a process other than the caller's, torch gets the worker's
    share of the machine's cores (at least one thread), so that workers together do not
    oversubscribe it."""
    if os.getpid() != parent_pid:
        torch.set_num_threads(max(1, cpu_count() // n_tasks))
        # the workers share the cores out already: no noise thread beside each one
        kwargs.setdefault("overlap", False)
    return _shard_counts(model, X, offset, on_chunk, **kwargs)


def _shard_counts(model, X, offset: int, on_chunk, **kwargs) -> np.ndarray:
    """Counts of the shard ``X`` (inputs ``offset ...`` of the call), reported chunk by
    chunk to ``on_chunk`` when given."""
    if on_chunk is None:
        return sample_label_counts(model, X, input_offset=offset, **kwargs)
    step = chunk_inputs(kwargs["batch_size"], kwargs["n_draws"])
    parts = []
    for start in range(0, len(X), step):
        counts = sample_label_counts(
            model, X[start : start + step], input_offset=offset + start, **kwargs
        )
        on_chunk(offset + start, offset + start + len(counts), counts)
        parts.append(counts)
    return _concatenate(parts, kwargs["n_classes"])
