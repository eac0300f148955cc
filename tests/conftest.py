"""Test-wide settings: one torch thread per pytest worker (CI runs ``-n 2`` on 2 cores).

The in-process counts cache is off by default (``sklearn_certify.get_config()``), so
every test samples for real unless it switches the cache on itself.

Shared fixtures count what the library does: ``count_calls`` (any function),
``sampling_calls`` (smoothing's sampling passes) and ``base_model_fits`` (the
ensembles' base models)."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a runtime dependency
    pass


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(owner, name)`` wraps ``owner.name`` (a function, or a method of a
    class) so that it still runs and each call is recorded; it returns the list of the
    calls' ``(args, kwargs)``, which grows as the test runs."""

    def count(owner, name: str) -> list:
        calls = []
        original = getattr(owner, name)

        def counted(*args, **kwargs):
            calls.append((args, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
        return calls

    return count


@pytest.fixture
def sampling_calls(count_calls):
    """The sampling passes of ``SmoothedMultiLabelClassifier`` (its calls of
    ``sharded_label_counts``): one ``(args, kwargs)`` per pass, ``args[1]`` the inputs."""
    from sklearn_certify.smoothing import _classifier

    return count_calls(_classifier, "sharded_label_counts")


@pytest.fixture
def base_model_fits(count_calls):
    """The base models trained one by one by the ensembles: one entry per fit."""
    from sklearn_certify.ensembles import _base_model

    return count_calls(_base_model._ConstantAwareMultiLabel, "fit")
