"""Seeded torch training that leaves the caller's random state untouched."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager

# Serialises seeded training between threads (joblib's threading backend): the seeded
# generators are torch's global ones. Re-entrant: a seeded fit may nest another (an
# ensemble as the base model of another one).
_TORCH_LOCK = threading.RLock()


def cuda_indices(devices) -> list[int]:
    """Indices of the CUDA devices among ``devices`` (torch devices or strings).

    ``"cuda"`` without an index is the current CUDA device; None entries (skorch's
    ``device=None``: leave the module where it is) and other device types are skipped.
    Only a CUDA entry initialises CUDA.
    """
    import torch

    indices = set()
    for device in devices:
        if device is None:
            continue
        device = torch.device(device)
        if device.type == "cuda":
            indices.add(torch.cuda.current_device() if device.index is None else device.index)
    return sorted(indices)


def estimator_devices(estimator) -> list:
    """The devices a torch/skorch estimator trains on: its ``device`` parameters.

    Every parameter named ``device`` or ending in ``__device`` (skorch nets, also inside
    a pipeline). An estimator without one may use any device: then every CUDA device if
    this process has already initialised CUDA (which this does not), else the CPU only.
    """
    params = estimator.get_params(deep=True) if hasattr(estimator, "get_params") else {}
    devices = [
        value for key, value in params.items() if key == "device" or key.endswith("__device")
    ]
    if devices:
        return devices
    import torch

    if torch.cuda.is_initialized():
        return ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    return ["cpu"]


@contextmanager
def seeded_torch(seed: int, devices=("cpu",)):
    """Run the block with torch's generators for ``devices`` seeded by ``seed``.

    The CPU generator and those of the CUDA devices among ``devices`` are seeded with
    ``seed``; they are saved before and restored after (``torch.random.fork_rng``), so
    the caller's random state is unchanged, and seeded blocks in different threads do
    not interleave. Only the CUDA devices listed are forked: a CPU block does not
    initialise CUDA, which would break fork-based joblib workers started afterwards
    ("Cannot re-initialize CUDA in forked subprocess"). Other accelerators listed
    (MPS, XPU) are seeded by ``torch.manual_seed``, without a fork.
    """
    import torch

    with _TORCH_LOCK:
        cuda = cuda_indices(devices)
        others = any(
            device is not None and torch.device(device).type not in ("cpu", "cuda")
            for device in devices
        )
        with torch.random.fork_rng(devices=cuda):
            if others:  # another accelerator (MPS, XPU, ...): seeded, as torch does it
                torch.manual_seed(int(seed))
            torch.default_generator.manual_seed(int(seed))  # what torch.manual_seed does
            for index in cuda:  # ... on the devices in use only
                torch.cuda.default_generators[index].manual_seed(int(seed))
            yield


def determinism_settings() -> dict:
    """This process's torch determinism settings, to apply in joblib workers.

    ``torch.use_deterministic_algorithms`` (and its ``warn_only``), cuDNN's
    ``deterministic`` and ``benchmark`` flags belong to each process; loky and Dask
    workers are fresh interpreters that start with torch's defaults.
    ``CUBLAS_WORKSPACE_CONFIG`` is carried too: torch releases that check it (up to at
    least 2.8) raise in deterministic mode on CUDA unless it is ``:4096:8`` or
    ``:16:8`` when cuBLAS starts.
    """
    import torch

    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def _apply_determinism(settings: dict) -> None:
    import torch

    torch.use_deterministic_algorithms(settings["deterministic"], warn_only=settings["warn_only"])
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    if settings["cublas_workspace_config"] is not None:  # read when cuBLAS starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", settings["cublas_workspace_config"])


def run_with_determinism(settings: dict | None, func, *args, **kwargs):
    """``func(*args, **kwargs)`` under ``settings`` (from :func:`determinism_settings`).

    The process's own settings are restored afterwards (a worker may run other tasks).
    ``settings=None`` (torch not used) runs ``func`` as is, without importing torch.
    """
    if settings is None:
        return func(*args, **kwargs)
    previous = determinism_settings()
    _apply_determinism(settings)
    try:
        return func(*args, **kwargs)
    finally:
        _apply_determinism(previous)
