"""Content keys of fitted models: what a model computes, as far as a key can see it.

The caches of :mod:`._memory` find entries by these keys. A key holds the code a model
runs (the source of its classes), its parameters and buffers and its plain attributes;
it cannot hold what ``forward`` reads from elsewhere (module globals, closures, files),
so a cached model must be a pure function of what its key holds. A model the key
cannot cover completely (hooks, attributes holding other objects, a class without
source) raises :class:`UncacheableModel`, and is then never cached.
"""

from __future__ import annotations

import functools
import warnings

import joblib
import numpy as np

from ._memory import cache_key

__all__ = ["UncacheableModel", "counts_key", "fit_key", "model_key"]


class UncacheableModel(ValueError):
    """A model whose content a key cannot cover; its counts are never cached."""


def fit_key(kind: str, estimator, *parts) -> str | None:
    """The key of a cached fit: the estimator's class and parameters, the code they run
    (class sources, functions among the parameters) and ``parts`` (data, seeds...).

    ``None``, with one warning, when that code cannot be read: the fit is then not
    cached.
    """
    try:
        code = _estimator_code_key(estimator)
    except UncacheableModel as exc:
        warnings.warn(f"This fit is not cached: {exc}.", UserWarning, stacklevel=4)
        return None
    return cache_key(kind, code, estimator.get_params(deep=False), parts)


def counts_key(model, *params) -> str | None:
    """The key of a model's label counts under sampling parameters ``params``.

    ``None``, with one warning saying why, for a model :func:`model_key` cannot cover:
    its counts are then sampled on every call, never cached.
    """
    try:
        return cache_key("counts", model_key(model), params)
    except UncacheableModel as exc:
        warnings.warn(
            f"The label counts of this model are not cached, and it is sampled on every "
            f"call: {exc}.",
            UserWarning,
            stacklevel=4,
        )
        return None


def model_key(model) -> str:
    """Content hash of a fitted model: what it computes, not which object it is.

    A torch module (or a skorch net's ``module_``) is hashed by, for every submodule:

    * its class: the source code of each class in its method resolution order (torch's
      own classes by name and torch version);
    * its parameters and buffers (non-persistent ones included, on the host);
    * its plain-valued attributes: numbers, strings, bools, None, dtypes, devices,
      tensors and numpy arrays, and tuples, lists or str-keyed dicts of those (a
      temperature or normalisation means a ``forward`` reads).

    A skorch net adds its own class and the input shape it reshapes to. Other
    estimators are hashed by their pickled content (``joblib.hash``) and the source of
    their classes and of the estimators and functions among their parameters.

    What ``forward`` reads from elsewhere (module globals, closures, files) cannot be
    seen: a cached model must be a pure function of what the key holds.

    Raises
    ------
    UncacheableModel
        When the key cannot cover the model, saying why: a submodule with hooks (or a
        global module hook), an attribute holding another kind of object (a submodule
        in a plain list, a fitted scaler, a function, a ``forward`` set on the
        instance), or a class whose source code is not available.
    """
    import torch

    if isinstance(model, torch.nn.Module):
        module, extra, prefix = model, (), "module"
    elif isinstance(getattr(model, "module_", None), torch.nn.Module):
        module, prefix = model.module_, "module_"
        extra = (_class_key(type(model)), getattr(model, "input_shape_", None))
    else:
        return joblib.hash((_estimator_code_key(model), joblib.hash(model)))
    _check_no_global_hooks()
    state = {
        name: (
            str(tensor.dtype),
            tuple(tensor.shape),
            tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy(),
        )
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]
    }
    submodules = [
        (name, _class_key(type(sub)), _module_attributes(sub, f"{prefix}.{name}".rstrip(".")))
        for name, sub in module.named_modules()
    ]
    return joblib.hash((extra, state, submodules))


@functools.cache
def _module_internals() -> frozenset:
    """Attributes every torch module has: parameters, buffers, submodules and hook
    tables are read through their own accessors, and ``training`` is left out because
    sampling always runs in eval mode."""
    import torch

    return frozenset(vars(torch.nn.Module()))


_HOOK_TABLES = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _check_no_global_hooks() -> None:
    from torch.nn.modules import module as torch_module

    for name in (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    ):
        if getattr(torch_module, name, None):
            raise UncacheableModel(
                f"a global module hook is registered (torch.nn.modules.module.{name}): "
                "it can change any model's output without changing its content"
            )


def _module_attributes(sub, path: str) -> list:
    """The plain attributes of one submodule, sorted by name; refuses hooks and
    attributes of other kinds."""
    for table in _HOOK_TABLES:
        if getattr(sub, table, None):
            kind = table.strip("_").replace("_", " ")
            raise UncacheableModel(
                f"{path} has {kind} (a hook can change the output without changing any tensor)"
            )
    internals = _module_internals()
    attributes = []
    for name, value in sorted(vars(sub).items()):
        if name in internals:
            continue
        try:
            attributes.append((name, _plain_content(value)))
        except _NotPlain:
            raise UncacheableModel(
                f"{path}.{name} holds a {type(value).__module__}.{type(value).__qualname__}"
                ", which the key cannot see into (only numbers, strings, None, dtypes, "
                "devices, tensors, arrays and tuples, lists or dicts of those are keyed)"
            ) from None
    return attributes


class _NotPlain(Exception):
    pass


def _plain_content(value):
    """A plain attribute's content (tensors as host arrays, which joblib hashes by their
    bytes, dtype and shape); raises ``_NotPlain`` for anything else."""
    import torch

    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise _NotPlain
        return value
    if isinstance(value, (torch.dtype, torch.device)):
        return ("torch", str(value))
    if isinstance(value, tuple | list):
        return type(value).__name__, [_plain_content(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _NotPlain
        return "dict", [(key, _plain_content(value[key])) for key in sorted(value)]
    if isinstance(value, torch.Tensor):
        value = value.detach()
        try:
            if value.layout != torch.strided:
                value = value.to_dense()
            if value.dtype == torch.bfloat16:
                return "bfloat16", value.cpu().view(torch.int16).numpy()
            return value.cpu().numpy()
        except (RuntimeError, TypeError, NotImplementedError):  # e.g. a meta tensor
            return "tensor", str(value.dtype), tuple(value.shape), str(value.device)
    raise _NotPlain


def _class_key(cls: type) -> list:
    """The code of a class: the source of each class in its MRO, torch's, numpy's and
    scikit-learn's own classes by name and release."""
    return [_one_class_key(c) for c in cls.__mro__ if c is not object]


def _library_release(module_name: str) -> str | None:
    root = module_name.split(".")[0]
    if root in ("torch", "sklearn", "numpy", "scipy", "skorch", "builtins"):
        import importlib

        return f"{root}=={getattr(importlib.import_module(root), '__version__', '?')}"
    return None


@functools.cache
def _one_class_key(cls) -> tuple:
    name = f"{cls.__module__}.{cls.__qualname__}"
    release = _library_release(cls.__module__)
    if release is not None:
        return name, release
    return name, _source(cls, f"class {name}")


def _source(obj, what: str) -> str:
    import inspect

    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        raise UncacheableModel(
            f"the source code of {what} is not available (defined interactively?), so "
            "a change to it could not be seen"
        ) from None


def _estimator_code_key(estimator) -> list:
    """The code an estimator runs: its class and those of the estimators and functions
    among its parameters (recursively)."""
    seen = [_class_key(type(estimator))]
    if hasattr(estimator, "get_params"):
        try:
            params = estimator.get_params(deep=True)
        except Exception:  # noqa: BLE001 - an estimator without a working get_params
            params = {}
        for name, value in sorted(params.items()):
            if hasattr(value, "get_params") and not isinstance(value, type):
                seen.append((name, _class_key(type(value))))
            elif callable(value) and not isinstance(value, type):
                seen.append((name, _callable_key(value, name)))
    return seen


def _callable_key(func, name: str):
    module = getattr(func, "__module__", None) or ""
    release = _library_release(module)
    qualname = getattr(func, "__qualname__", type(func).__qualname__)
    if release is not None or isinstance(func, np.ufunc):
        return f"{module}.{qualname}", release
    return f"{module}.{qualname}", _source(func, f"the function {name}={qualname}")
