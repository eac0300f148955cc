"""Test-wide settings: one torch thread per pytest worker (CI runs ``-n 2`` on 2 cores),
and no in-process counts cache outside the tests of that cache."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a runtime dependency
    pass


@pytest.fixture(autouse=True)
def _recent_counts_off():
    """Sample for real: without this, a test comparing two ways of sampling the same
    model and inputs (n_jobs, devices, backends) would read the second from the
    in-process counts cache and compare nothing. tests/test_memory.py, which tests
    that cache, overrides this fixture."""
    from sklearn_certify._memory import recent_counts

    budget = recent_counts.max_bytes
    recent_counts.clear()
    recent_counts.max_bytes = 0
    yield
    recent_counts.max_bytes = budget
    recent_counts.clear()
