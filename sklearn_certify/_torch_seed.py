"""Seeded torch training that leaves the caller's random state untouched."""

from __future__ import annotations

import threading
from contextlib import contextmanager

# Serialises seeded training between threads (joblib's threading backend): the seeded
# generators are torch's global ones. Re-entrant: a seeded fit may nest another (an
# ensemble as the base model of another one).
_TORCH_LOCK = threading.RLock()


@contextmanager
def seeded_torch(seed: int):
    """Run the block with torch's global generators seeded by ``seed``.

    ``torch.manual_seed`` seeds the CPU generator and every CUDA device's; all of them
    are saved before and restored after (``torch.random.fork_rng``), so the caller's
    random state is unchanged, and seeded blocks in different threads do not interleave.
    """
    import torch

    with _TORCH_LOCK:
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(seed))
            yield
