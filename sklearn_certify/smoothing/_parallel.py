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

from ._sampling import sample_label_counts

__all__ = ["sharded_label_counts"]


def sharded_label_counts(model, X, *, seed: int, n_jobs=None, devices=None,
                         **engine) -> np.ndarray:
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
    **engine
        The other arguments of ``sample_label_counts``: ``n_classes``, ``sigma``,
        ``k_prime``, ``n_draws``, ``batch_size``, ``verbose``.

    Returns
    -------
    counts : ndarray of int64, shape (n_inputs, n_classes)
    """
    n_inputs = len(X)
    if devices:
        shards = _shards(n_inputs, len(devices))
        parts = Parallel(n_jobs=len(shards), backend="threading")(
            delayed(sample_label_counts)(model, X[lo:hi], seed=seed, device=device,
                                         **{**engine, "verbose": 0})
            for (lo, hi), device in zip(shards, devices)
        )
        return _concatenate(parts, engine["n_classes"])
    n_tasks = min(effective_n_jobs(n_jobs), n_inputs)
    if n_tasks <= 1:
        return sample_label_counts(model, X, seed=seed, **engine)
    shards = _shards(n_inputs, n_tasks)
    parts = Parallel(n_jobs=n_jobs)(
        delayed(_worker_counts)(model, X[lo:hi], os.getpid(), n_tasks, seed=seed,
                                **{**engine, "verbose": 0})
        for lo, hi in shards
    )
    return _concatenate(parts, engine["n_classes"])


def _shards(n_inputs: int, n_shards: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``n_shards`` consecutive, near-equal, non-empty shards."""
    bounds = np.linspace(0, n_inputs, min(n_shards, n_inputs) + 1).round().astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def _concatenate(parts, n_classes: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, n_classes), dtype=np.int64)


def _worker_counts(model, X, parent_pid: int, n_tasks: int, **kwargs) -> np.ndarray:
    """One worker's shard. In a process other than the caller's, torch gets the worker's
    share of the machine's cores (at least one thread), so that workers together do not
    oversubscribe it."""
    if os.getpid() != parent_pid:
        torch.set_num_threads(max(1, cpu_count() // n_tasks))
    return sample_label_counts(model, X, **kwargs)
