"""What the sampling engine needs to know about a base model: whether it is torch, its
module, device and dtype, how a batch enters it and how its scores come out."""

from __future__ import annotations

import math

import torch

from .._utils._devices import module_device

__all__ = ["SAMPLING_DTYPES", "is_torch_model", "module_input", "torch_module_and_device"]

#: The values of ``sampling_dtype`` other than None, and the torch dtype each one names.
SAMPLING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_torch_model(model) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` or a skorch net wrapping one."""
    return isinstance(model, torch.nn.Module) or isinstance(
        getattr(model, "module_", None), torch.nn.Module
    )


def torch_module_and_device(model) -> tuple[torch.nn.Module, torch.device]:
    """The module to run and the device to run it on.

    A skorch net gives its ``module_`` and its ``device`` (the module's own device when
    the net's ``device`` is None); a bare module runs where its first parameter or
    buffer lives, on the CPU when it has neither.
    """
    if isinstance(model, torch.nn.Module):
        module, device = model, None
    else:
        module, device = model.module_, getattr(model, "device", None)
    if device is None:
        device = module_device(module) or "cpu"
    return module, torch.device(device)


def _check_width(width: int, n_classes: int) -> None:
    if width != n_classes:
        raise ValueError(
            f"the base model scores {width} labels per input but {n_classes} were expected."
        )


def module_input(model, X, device, dtype) -> torch.Tensor:
    """A chunk of inputs as a tensor on the model's device, shaped as its module expects.

    A net that records the input shape its module sees (``input_shape_``, as
    :class:`~sklearn_certify.nets.MultiLabelNet` does, e.g. adding a channel axis to
    ``(n, H, W)`` images) gets its inputs reshaped to it; reshaping leaves the l2
    geometry of the noise unchanged.
    """
    x = torch.as_tensor(X).to(device=device, dtype=dtype)
    shape = getattr(model, "input_shape_", None)
    if (
        not isinstance(model, torch.nn.Module)
        and shape is not None
        and tuple(x.shape[1:]) != tuple(shape)
        and math.prod(x.shape[1:]) == math.prod(shape)
    ):
        x = x.reshape(len(x), *shape)
    return x


def _module_scores(module, x, n_classes):
    scores = module(x)
    if isinstance(scores, (tuple, list)):
        scores = scores[0]
    scores = scores.reshape(len(x), -1)
    _check_width(scores.shape[1], n_classes)
    return scores


class _eval_mode:
    """Context manager: every submodule in eval mode, each one's mode restored after."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        for m, training in self.modes:
            m.training = training
        return False
