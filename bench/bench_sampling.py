"""Overhead of the smoothing engine against a bare torch loop.

Times ``SmoothedMultiLabelClassifier.certify`` (sampling + Clopper-Pearson bounds +
certificate) for 200 inputs at n_draws=1000 against the plainest torch code doing the
sampling alone: per input, one batch of n_draws noisy copies, a forward pass, top-k' and
``bincount``. Both use the same module, device and number of copies per pass.

    python bench/bench_sampling.py                 # MLP and SmallCNN, on CPU
    python bench/bench_sampling.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.nets import MLPModule, SmallCNN

N_CLASSES = 10


def bare_loop(module, X, *, sigma, k_prime, n_draws, device):
    """The reference: noise + forward + top-k' + counts, one input at a time."""
    counts = torch.zeros(len(X), N_CLASSES, dtype=torch.int64)
    with torch.inference_mode():
        for i, x in enumerate(torch.as_tensor(X, device=device)):
            noisy = x + sigma * torch.randn((n_draws, *x.shape), device=device)
            top = module(noisy).topk(k_prime, dim=1).indices
            counts[i] = torch.bincount(top.reshape(-1), minlength=N_CLASSES).cpu()
    return counts.numpy()


def timed(fn, *args, **kwargs) -> float:
    """Wall time of one call of ``fn(*args, **kwargs)``."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    tic = time.perf_counter()
    fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-inputs", type=int, default=200)
    parser.add_argument("--n-draws", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.RandomState(0)
    models = {
        "MLP 256-256-10": (MLPModule(256, N_CLASSES), (256,)),
        "SmallCNN 1x16x16": (SmallCNN(1, N_CLASSES, (16, 16)), (1, 16, 16)),
    }
    print(
        f"{args.n_inputs} inputs x {args.n_draws} draws on {args.device} "
        f"({torch.get_num_threads()} threads), best of {args.repeats}"
    )
    print(f"{'model':<18} {'certify':>9} {'bare loop':>10} {'ratio':>7} {'copies/s':>11}")
    for name, (module, shape) in models.items():
        module = module.to(args.device).eval()
        X = rng.rand(args.n_inputs, *shape).astype(np.float32)
        Y = (rng.rand(args.n_inputs, N_CLASSES) < 0.25).astype(int)
        clf = SmoothedMultiLabelClassifier(
            module,
            sigma=0.5,
            k=3,
            n_draws=args.n_draws,
            batch_size=args.n_draws,
            train_noise=False,
            random_state=0,
        )
        clf.fit(X, Y)  # a torch module is used as is: fit only checks it
        engine, bare = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            engine.append(timed(clf.certify, X, Y, [0.0, 0.5, 1.0]))
            bare.append(
                timed(
                    bare_loop,
                    module,
                    X,
                    sigma=0.5,
                    k_prime=1,
                    n_draws=args.n_draws,
                    device=args.device,
                )
            )
        engine, bare = min(engine), min(bare)
        rate = args.n_inputs * args.n_draws / engine
        print(f"{name:<18} {engine:>8.2f}s {bare:>9.2f}s {engine / bare:>7.2f} {rate:>11,.0f}")


if __name__ == "__main__":
    main()
