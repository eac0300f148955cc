"""Test-wide settings: one torch thread per pytest worker (CI runs ``-n 2`` on 2 cores).

The in-process counts cache is off by default (``sklearn_certify.get_config()``), so
every test samples for real unless it switches the cache on itself."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a runtime dependency
    pass
