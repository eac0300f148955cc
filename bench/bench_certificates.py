"""Time the certificate math on the MultiGuard reference evaluation grid.

500 inputs x 301 radii (0 to 3), 80 classes, k = 10, k' = 3, n = 1000 draws, with
realistic counts (2-3 true labels per input holding most of the mass). Also times
the poisoning certificates on grids of the same size. Run:

    python bench/bench_certificates.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from sklearn_certify.bounds import clopper_pearson_bounds
from sklearn_certify.certificates import (
    bagging_certified_size,
    dpa_certified_size,
    gaussian_certified_size,
)


def reference_counts(n_inputs=500, n_classes=80, n_draws=1000, k_prime=3, seed=0):
    """Counts of a plausible smoothed model: true labels get most of the k' slots."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n_inputs, n_classes), dtype=int)
    for i in range(n_inputs):
        Y[i, rng.choice(n_classes, size=rng.integers(1, 5), replace=False)] = 1
    logits = rng.normal(size=(n_inputs, n_classes)) + 3.0 * Y
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    counts = np.zeros((n_inputs, n_classes), dtype=int)
    for i in range(n_inputs):  # k' distinct labels per draw, without replacement
        draws = np.argsort(-(np.log(probs[i]) + rng.gumbel(size=(n_draws, n_classes))), axis=1)[
            :, :k_prime
        ]
        counts[i] = np.bincount(draws.ravel(), minlength=n_classes)
    return counts, Y


def literal_seconds(lower, upper, Y, radii, n_inputs=4):
    """Time of the literal per-input, per-radius transcription of Eq. (8) used by the
    tests (tests/_reference.py), extrapolated from a few inputs to all of them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests._reference import multiguard

    start = time.perf_counter()
    for i in range(n_inputs):
        for R in radii:
            multiguard(lower[i], upper[i], Y[i], 10, 3, 0.5, R)
    return (time.perf_counter() - start) / n_inputs * len(Y)


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> dict:
    counts, Y = reference_counts()
    radii = np.linspace(0, 3, 301)
    t_bounds, (lower, upper) = best_of(lambda: clopper_pearson_bounds(counts, 1000, 0.001))
    results = {"clopper_pearson_bounds_s": t_bounds}
    for method in ("multiguard", "first-term"):
        t, sizes = best_of(
            lambda m=method: gaussian_certified_size(
                lower, upper, Y, k=10, k_prime=3, sigma=0.5, radius=radii, method=m
            )
        )
        results[f"gaussian_{method}_s"] = t
        print(
            f"gaussian {method:10s}: {t:6.3f} s  (500 x 301 radii, c=80, k=10, k'=3); "
            f"mean size at R=0.5: {sizes[:, 50].mean():.3f}"
        )
    literal = literal_seconds(lower, upper, Y, radii)
    results["gaussian_multiguard_literal_s"] = literal
    print(
        f"gaussian multiguard, literal per-input transcription (extrapolated from 4 "
        f"inputs): {literal:6.1f} s, {literal / results['gaussian_multiguard_s']:.0f}x slower"
    )
    counts1, Y1 = reference_counts(k_prime=1, seed=1)
    lower1, upper1 = clopper_pearson_bounds(counts1, 1000, 0.001)
    t, _ = best_of(
        lambda: gaussian_certified_size(
            lower1, upper1, Y1, k=10, k_prime=1, sigma=0.5, radius=radii, method="jia"
        )
    )
    results["gaussian_jia_s"] = t
    print(f"gaussian {'jia':10s}: {t:6.3f} s  (same grid, k'=1)")
    T = np.arange(301)
    t, _ = best_of(
        lambda: bagging_certified_size(
            lower, upper, Y, k=10, k_base=3, n_train=50_000, max_samples=1000, radius=T
        )
    )
    results["bagging_poisoningguard_s"] = t
    print(f"bagging poisoningguard: {t:6.3f} s  (500 x 301 T)")
    t, _ = best_of(lambda: dpa_certified_size(counts // 4, Y, k=10, k_base=3, radius=T))
    results["dpa_poisoningguard_s"] = t
    print(f"dpa poisoningguard:     {t:6.3f} s  (500 x 301 T)")
    return results


if __name__ == "__main__":
    main()
