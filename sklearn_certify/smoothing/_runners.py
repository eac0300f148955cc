"""The base module as sampling runs it: in ``sampling_dtype``, compiled or not, on each
device, prepared once per fitted estimator (:class:`SamplingModels`).

Only the module runs in reduced precision; the noise is drawn and added by the engine
(:mod:`._sampling`) in float32 or wider, whatever ``sampling_dtype`` says.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
import warnings
from contextlib import nullcontext

import torch

from .._utils._devices import module_dtype
from ._models import (
    SAMPLING_DTYPES,
    _module_scores,
    is_torch_model,
    module_input,
    torch_module_and_device,
)

__all__ = ["SamplingModels", "check_sampling_options", "sampling_options"]


#: torch.compile, looked up at call time (the tests swap in a cheaper backend)
def _torch_compile(module):
    return torch.compile(module)


def check_sampling_options(model, sampling_dtype, compile) -> None:
    """A clear error for ``sampling_dtype`` or ``compile`` on a model that is not torch."""
    if sampling_dtype is not None and sampling_dtype not in SAMPLING_DTYPES:
        raise ValueError(
            f"sampling_dtype must be None or one of {sorted(SAMPLING_DTYPES)}; "
            f"got {sampling_dtype!r}."
        )
    if not is_torch_model(model) and (sampling_dtype is not None or compile):
        raise ValueError(
            "sampling_dtype and compile=True need a torch base model (a torch.nn.Module "
            f"or a skorch net); got {type(model).__name__}. Leave them at None and False."
        )


def sampling_options(clf) -> dict:
    """How the fitted smoothed classifier ``clf``'s base model runs while sampling:
    ``sampling_dtype``, ``compile`` and the prepared modules (:class:`SamplingModels`,
    kept on ``clf`` between calls, never pickled)."""
    check_sampling_options(clf.estimator_, clf.sampling_dtype, clf.compile)
    models = clf.__dict__.get("_sampling_models")
    if models is None:  # fitted by an older release
        models = clf._sampling_models = SamplingModels()
    return {"sampling_dtype": clf.sampling_dtype, "compile": bool(clf.compile), "models": models}


def _is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module`` is already a ``torch.compile`` wrapper (skorch's
    ``compile=True`` makes its ``module_`` one)."""
    return isinstance(getattr(module, "_orig_mod", None), torch.nn.Module)


def _fingerprint(module: torch.nn.Module) -> tuple:
    """Identity and version counter of every parameter and buffer: changes when a
    tensor is replaced or modified in place (an optimizer step, ``load_state_dict``)."""
    return tuple((id(t), t._version) for t in (*module.parameters(), *module.buffers()))


class SamplingModels:
    """The base module as sampling runs it, prepared once per device and kept.

    One per fitted estimator (not a process-wide cache). For a torch model and a
    device, :meth:`runner` gives what every forward pass of the sampling calls:

    * ``sampling_dtype=None``: the module as it is (a copy on ``device`` when the call
      asks for another device than the module's own, as ``devices`` does).
    * ``"bfloat16"`` / ``"float16"`` on a float32 module, on a device where torch has
      autocast for that dtype: the module itself under ``torch.autocast``; matrix
      products and convolutions run in the reduced dtype, precision-sensitive operations
      (softmax, norms, reductions) stay in float32. The user's module is not modified.
    * Any other change of dtype (``"float32"`` on a float64 or bfloat16 module, a
      float64 module run in bfloat16, a device without autocast): a copy of the module
      cast to that dtype, its inputs cast at entry.
    * ``compile=True``: the result through ``torch.compile``, unless the module is
      already compiled (a skorch net with ``compile=True``), which is then used as is.
      A model that fails to compile runs eagerly, with one warning.

    Copies and compiled modules are kept for the next calls and rebuilt when the
    source module's parameters or buffers change (replaced or modified in place).
    Pickling keeps none of them: a loaded estimator prepares (and compiles) anew on its
    first call, as does each joblib worker process.
    """

    def __init__(self):
        self._runners: dict = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def runner(self, model, device=None, sampling_dtype=None, compile=False) -> _Runner:
        """The prepared module of the torch ``model`` on ``device`` (None: its own)."""
        check_sampling_options(model, sampling_dtype, compile)
        module, own_device = torch_module_and_device(model)
        # an explicit device (``devices``) runs a copy, as each device thread needs its own
        move = device is not None
        device = own_device if device is None else torch.device(device)
        key = (id(module), str(device), move, sampling_dtype, bool(compile))
        with self._lock:
            runner = self._runners.get(key)
            if (
                runner is None
                or runner.source is not module
                or (runner.copied and runner.fingerprint != _fingerprint(module))
            ):
                runner = _Runner(model, module, device, move, sampling_dtype, compile)
                self._runners[key] = runner
            return runner


class _Runner:
    """One prepared module: ``scores(noisy, n_classes)`` runs a batch through it."""

    def __init__(self, model, module, device, move, sampling_dtype, compile):
        self.model, self.source, self.device = model, module, device
        self.source_dtype = module_dtype(module)
        self.fingerprint = _fingerprint(module)
        target = SAMPLING_DTYPES.get(sampling_dtype, self.source_dtype)
        base = module._orig_mod if _is_compiled(module) else module
        self.autocast = None
        if target == self.source_dtype:
            cast = False
        else:
            cast = not (
                self.source_dtype == torch.float32
                and target != torch.float32
                and _autocast_available(device.type, target)
            )
            if not cast:
                self.autocast = target
        self.copied = move or cast
        if self.copied:  # a private copy: the user's module is never moved or cast
            run = copy.deepcopy(base).to(device)
            if cast:
                run = run.to(target)
            run.eval()
            compiled_already = False
        else:
            run = module
            compiled_already = _is_compiled(module)
        self.module = run  # what _eval_mode switches to eval while sampling
        self.input_dtype = target if cast else self.source_dtype
        self.eager = run
        self.compiled = None
        if compile and not compiled_already:
            self.compiled = _torch_compile(run)
        self._compile_lock = threading.Lock()

    def model_input(self, X, dtype) -> torch.Tensor:
        return module_input(self.model, X, self.device, dtype)

    def scores(self, noisy: torch.Tensor, n_classes: int) -> torch.Tensor:
        """The scores of a batch of noisy inputs (in the noise's dtype): cast to what
        the module takes, then the module (under autocast, compiled, as prepared)."""
        x = noisy.to(self.input_dtype)
        context = (
            nullcontext()
            if self.autocast is None
            else torch.autocast(self.device.type, dtype=self.autocast)
        )
        with context:
            if self.compiled is not None:
                with self._compile_lock:  # compilation is not thread-safe
                    compiled = self.compiled
                    if compiled is not None:
                        try:
                            return _module_scores(compiled, x, n_classes)
                        except Exception as exc:  # noqa: BLE001 - retried eagerly below
                            scores = _module_scores(self.eager, x, n_classes)
                            self.compiled = None  # eager works: keep it, say so once
                            warnings.warn(
                                f"compile=True: torch.compile failed on the base model "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                                "it runs eagerly instead.",
                                UserWarning,
                                stacklevel=2,
                            )
                            return scores
            return _module_scores(self.eager, x, n_classes)


@functools.cache
def _autocast_available(device_type: str, dtype: torch.dtype) -> bool:
    """Whether torch autocasts to ``dtype`` on this kind of device (a fact about the
    torch build, so remembered)."""
    if not torch.amp.is_autocast_available(device_type):
        return False
    with warnings.catch_warnings(record=True) as caught:  # an unsupported dtype warns
        warnings.simplefilter("always")
        try:
            with torch.autocast(device_type, dtype=dtype):
                pass
        except (RuntimeError, ValueError):
            return False
    return not caught


def _spare_cores() -> bool:
    """Whether torch's threads leave at least as many cores free as they use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 2 * torch.get_num_threads() <= cores
