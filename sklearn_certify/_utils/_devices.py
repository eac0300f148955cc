"""Torch devices: the default one, resolving and checking a requested one, where and in
which dtype a module computes, and pickling tensors.

A tensor pickled on a CUDA device cannot be unpickled on a machine without one
("Attempting to deserialize object on a CUDA device"). The vectorised heads therefore
store their tensors on the CPU in a pickle, with the device they came from, and move
them back on loading: to that device if this machine has it, else to the CPU with a
``skorch.exceptions.DeviceWarning``, as skorch does for its nets.
"""

from __future__ import annotations

import warnings

import torch

__all__ = [
    "check_devices",
    "default_device",
    "device_exists",
    "loadable_device",
    "module_device",
    "module_dtype",
    "resolve_device",
    "tensors_to",
]


def default_device() -> str:
    """``"cuda"`` when CUDA is available, else ``"cpu"``: where default models run."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device) -> torch.device:
    """A torch device; None and ``"auto"`` mean CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device(default_device())
    return torch.device(device)


def module_device(module: torch.nn.Module) -> torch.device | None:
    """The device of the module's first parameter, else of its first buffer; None when
    it has neither."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return None if tensor is None else tensor.device


def module_dtype(module: torch.nn.Module, *, buffers: bool = False) -> torch.dtype:
    """The dtype of the module's first floating parameter (with ``buffers``: parameter
    or buffer); float32 when it has none."""
    tensors = (*module.parameters(), *module.buffers()) if buffers else module.parameters()
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


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
        "have; loading it on the CPU instead.",
        DeviceWarning,
        stacklevel=3,
    )
    return torch.device("cpu")


def tensors_to(tensors, device):
    """``tensors`` (a tensor, a list of them or None) detached and moved to ``device``."""
    if tensors is None:
        return None
    if torch.is_tensor(tensors):
        return tensors.detach().to(device)
    return [tensors_to(t, device) for t in tensors]


def check_devices(devices, torch_model: bool, model_name: str) -> list[torch.device] | None:
    """``devices`` (a parameter of the smoothed classifier) as torch devices.

    Raises a ``ValueError`` naming ``devices`` for an empty list, a non-torch base model
    (``torch_model`` False; ``model_name`` names it), an invalid entry, the meta device
    or a device this machine does not have. ``None`` stays ``None``.
    """
    if devices is None:
        return None
    if len(devices) == 0:
        raise ValueError("devices must list at least one device, or be None.")
    if not torch_model:
        raise ValueError(
            "devices needs a torch base model (a torch.nn.Module or a skorch net); "
            f"got {model_name}. Use n_jobs to parallelise it."
        )
    try:
        checked = [torch.device(d) for d in devices]
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"devices={devices!r} holds an invalid device: {exc}") from None
    for device in checked:
        if device.type == "meta":
            raise ValueError(
                f"devices={devices!r} holds the meta device, which has no data: "
                "noisy draws cannot be sampled on it. Use cpu or an accelerator."
            )
        if not device_exists(device):
            raise ValueError(
                f"devices={devices!r} holds {str(device)!r}, which this machine "
                f"does not have{_device_hint(device)}."
            )
    return checked


def _device_hint(device: torch.device) -> str:
    """Why ``device`` is missing, for the error of :func:`check_devices`."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return f" (torch sees {count} CUDA device(s)" + (
            f": indices 0 to {count - 1})" if count else ")"
        )
    return f" (torch cannot allocate on {device.type!r})"
