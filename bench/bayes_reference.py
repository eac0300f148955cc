"""A near-Bayes reference base classifier for ``make_multidigit``: how much any base model
trained on these images could certify.

Each noisy image is split into its 8x8 cells. A cell's posterior over {empty, digit 0-9}
is computed exactly under the data's own generative model with the training images'
source digits as the prior (empty with ``empty_prob``, otherwise a uniform draw of a
training source digit) and Gaussian noise at ``sigma``. The reference's top-1 label is the
label most likely present, ``argmax_c 1 - prod_cells (1 - P(cell shows c))``, the
Bayes-optimal choice for putting the top-1 vote on a true label. Its counts go through
the same MultiGuard certificate as a trained model's.

It is not a proven upper bound: a learned model generalises from the training digits in
its own way, and the top-1 rule maximises the chance of a vote on a true label, not the
certificate. It is the yardstick ``docs/training.md`` measures the training options
against. The posterior is a kernel sum over the ~1,250 training source digits per cell
and noisy copy: about 90 s for 300 images at n = 1000 on one CPU core.

    python bench/bayes_reference.py [--n-train 4000] [--n-test 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.special import logsumexp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sklearn_certify.datasets import make_multidigit
from sklearn_certify.results import CertificationResult

RADII = [0.0, 0.25, 0.5, 0.75, 1.0]
EMPTY_PROB = 0.3  # make_multidigit's default
CELL = 8


class NearBayesTop1:
    """Top-1 label of a noisy multi-digit image under the data's generative model."""

    def __init__(self, source_digits, source_labels, sigma, empty_prob=EMPTY_PROB):
        self.templates = np.vstack([np.zeros((1, CELL * CELL)), source_digits])
        self.template_sq = (self.templates**2).sum(1)
        n = len(source_digits)
        self.log_prior = np.concatenate(
            [[np.log(empty_prob)], np.full(n, np.log((1 - empty_prob) / n))]
        )
        self.template_class = np.concatenate([[-1], source_labels])
        self.sigma = sigma

    def cell_posteriors(self, cells):
        """(m, 64) cells -> (m, 10): P(cell shows digit c | noisy cell)."""
        sq = (cells**2).sum(1)[:, None] + self.template_sq[None] - 2 * cells @ self.templates.T
        log_post = -sq / (2 * self.sigma**2) + self.log_prior
        post = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
        return np.stack([post[:, self.template_class == c].sum(1) for c in range(10)], 1)

    def top1(self, images):
        """(m, 1, H, W) noisy images -> (m,) top-1 labels."""
        m, _, height, width = images.shape
        rows, cols = height // CELL, width // CELL
        cells = images.reshape(m, rows, CELL, cols, CELL).transpose(0, 1, 3, 2, 4)
        post = self.cell_posteriors(cells.reshape(-1, CELL * CELL)).reshape(m, rows * cols, 10)
        return (1 - np.prod(1 - post, axis=1)).argmax(1)


def wrong_vote_share(counts, Y) -> float:
    """Share of all top-1 votes that fall on labels the image does not show."""
    return float((counts * (1 - Y)).sum() / counts.sum())


def certified_f1(counts, Y, sigma, n_draws=1000) -> np.ndarray:
    """Certified f1 (%) of top-1 counts at ``RADII``: MultiGuard, k' = 1, k = 3, alpha 0.001."""
    result = CertificationResult.from_counts(
        counts,
        Y,
        RADII,
        certificate="gaussian",
        k=3,
        method="multiguard",
        n_draws=n_draws,
        alpha=0.001,
        sigma=sigma,
        k_prime=1,
    )
    return 100 * result.f1()


def single_digit_accuracy(sigma, seed, empty_prob=EMPTY_PROB, repeats=5):
    """Accuracy of the same posterior on single noisy 8x8 test digits (digit cells only)."""
    digits = load_digits()
    train, test = train_test_split(
        np.arange(len(digits.target)), test_size=0.3, stratify=digits.target, random_state=seed
    )
    reference = NearBayesTop1(digits.data[train] / 16.0, digits.target[train], sigma, empty_prob)
    rng = np.random.default_rng(seed)
    clean = digits.data[test] / 16.0
    hits = [
        reference.cell_posteriors(clean + sigma * rng.standard_normal(clean.shape)).argmax(1)
        == digits.target[test]
        for _ in range(repeats)
    ]
    return float(np.mean(hits))


def reference_counts(n_train, n_test, seed, sigma, n_draws):
    _, X_test, _, Y_test, sources_train, _ = make_multidigit(
        n_train, n_test, image_shape=True, return_sources=True, random_state=seed
    )
    digits = load_digits()
    pool = np.unique(sources_train[sources_train >= 0])
    reference = NearBayesTop1(digits.data[pool] / 16.0, digits.target[pool], sigma)
    rng = np.random.default_rng(seed)
    counts = np.zeros(Y_test.shape, dtype=int)
    for i, image in enumerate(X_test.astype(np.float64)):
        noisy = image[None] + sigma * rng.standard_normal((n_draws, *image.shape))
        counts[i] = np.bincount(reference.top1(noisy), minlength=Y_test.shape[1])
    return counts, Y_test


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--n-draws", type=int, default=1000)
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    tic = time.perf_counter()
    counts, Y_test = reference_counts(
        args.n_train, args.n_test, args.seed, args.sigma, args.n_draws
    )
    seconds = time.perf_counter() - tic
    wrong = wrong_vote_share(counts, Y_test)
    f1 = certified_f1(counts, Y_test, args.sigma, args.n_draws)
    setting = f"make_multidigit({args.n_train}, {args.n_test}, random_state={args.seed})"
    print(f"{setting}, sigma={args.sigma}")
    print(f"top-1 votes on a label the image does not show: {100 * wrong:.1f} %")
    print(
        "certified f1 (%) at R = "
        + ", ".join(map(str, RADII))
        + ": "
        + " ".join(f"{v:.1f}" for v in f1)
    )
    print(f"mean {f1.mean():.1f}  ({seconds:.0f} s)")
    accuracy = single_digit_accuracy(args.sigma, args.seed)
    print(f"accuracy on single noisy 8x8 test digits: {100 * accuracy:.1f} %")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(
                dict(
                    f1=f1.round(1).tolist(),
                    mean=round(float(f1.mean()), 1),
                    wrong_votes=round(100 * wrong, 1),
                    single_digit_accuracy=round(100 * accuracy, 1),
                ),
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
