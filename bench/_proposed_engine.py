"""The sampling engine with the change proposed in ``bench/PROPOSED_engine.md``.

Used by ``bench/run_all.py`` to time the proposal side by side with the current engine
(and skipped there once ``sklearn_certify.smoothing._sampling`` has the change). It is the
current ``_torch_counts`` with the noisy batch built in place: no ``x[owner]`` gather.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from sklearn_certify.smoothing import _sampling as S


def _add_inputs_(noisy: torch.Tensor, x: torch.Tensor, start: int, n_draws: int) -> None:
    """``noisy[j] += x[(start + j) // n_draws]`` in place (see PROPOSED_engine.md)."""
    stop = start + len(noisy)
    first, last = start // n_draws, (stop - 1) // n_draws
    if last - first < 8:
        for i in range(first, last + 1):
            a = max(start, i * n_draws) - start
            b = min(stop, (i + 1) * n_draws) - start
            noisy[a:b].add_(x[i])
    else:
        owner = torch.arange(start, stop, device=noisy.device) // n_draws
        noisy.add_(x[owner])


def _torch_counts(model, X, n_classes, sigma, k_prime, n_draws, batch_size, seed, bar):
    module, device = S.torch_module_and_device(model)
    dtype = S._module_dtype(module)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    chunk = max(1, (batch_size * S._BATCHES_PER_CHUNK) // n_draws)
    counts = np.empty((len(X), n_classes), dtype=np.int64)
    ones = torch.ones(batch_size * k_prime, dtype=torch.int64, device=device)
    to_input = getattr(S, "module_input", None)
    with S._eval_mode(module), torch.inference_mode():
        for first in range(0, len(X), chunk):
            if to_input is not None:
                x = to_input(model, X[first:first + chunk], device, dtype)
            else:
                x = torch.as_tensor(X[first:first + chunk]).to(device=device, dtype=dtype)
            dev_counts = torch.zeros((len(x), n_classes), dtype=torch.int64, device=device)
            flat_counts = dev_counts.view(-1)
            for start, stop in S._batches(len(x) * n_draws, batch_size):
                owner = torch.arange(start, stop, device=device) // n_draws
                noisy = torch.randn((stop - start, *x.shape[1:]), generator=generator,
                                    device=device, dtype=dtype).mul_(sigma)
                _add_inputs_(noisy, x, start, n_draws)
                labels = S._torch_top_k(S._module_scores(module, noisy, n_classes), k_prime)
                cells = (owner[:, None] * n_classes + labels).reshape(-1)
                flat_counts.index_add_(0, cells, ones[:len(cells)])
                bar.update(stop - start)
            counts[first:first + len(x)] = dev_counts.cpu().numpy()
    return counts


def already_applied() -> bool:
    return hasattr(S, "_add_inputs_")


@contextmanager
def proposed_engine():
    """Within the block, the sampling engine runs the proposed ``_torch_counts``."""
    current = S._torch_counts
    S._torch_counts = _torch_counts
    try:
        yield
    finally:
        S._torch_counts = current
