"""Pickling torch tensors as CPU tensors, restored to their device where it exists.

A tensor pickled on a CUDA device cannot be unpickled on a machine without one
("Attempting to deserialize object on a CUDA device"). The vectorised heads therefore
store their tensors on the CPU in a pickle, with the device they came from, and move
them back on loading: to that device if this machine has it, else to the CPU with a
``skorch.exceptions.DeviceWarning``, as skorch does for its nets.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["device_exists", "loadable_device", "tensors_to"]


def device_exists(device: torch.device) -> bool:
    """Whether this machine has ``device`` (a CUDA index below the device count; any
    other type: torch can allocate on it)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    try:  # another accelerator: ask torch
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ImportError):  # e.g. "not compiled with ..."
        return False
    return True


def loadable_device(device) -> torch.device:
    """``device`` if this machine has it, else the CPU (with a ``DeviceWarning``)."""
    from skorch.exceptions import DeviceWarning

    device = torch.device(device)
    if device_exists(device):
        return device
    warnings.warn(
        f"The model was saved on device {str(device)!r}, which this machine does not "
        "have; loading it on the CPU instead.", DeviceWarning, stacklevel=3)
    return torch.device("cpu")


def tensors_to(tensors, device):
    """``tensors`` (a tensor, a list of them or None) detached and moved to ``device``."""
    if tensors is None:
        return None
    if torch.is_tensor(tensors):
        return tensors.detach().to(device)
    return [tensors_to(t, device) for t in tensors]
