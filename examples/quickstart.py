"""Quickstart: certified multi-label classification against l2 evasion (MultiGuard)
================================================================================

Trains a small CNN on Gaussian-noised multi-label digit images (``make_multidigit``),
smooths it with Gaussian noise, and certifies 500 test images at l2 radii
R in {0, 0.25, 0.5, 0.75, 1.0}: the certified top-k precision, recall and f1 of
MultiGuard (Theorem 1, Eq. 8), of its first-term ablation, and of Jia et al. (2020),
all from ONE sampling pass (``CertificationResult.recertify`` re-uses the counts).

Run::

    python examples/quickstart.py            # the README's main command
    python examples/quickstart.py --help     # smaller or larger runs

Writes ``examples/output/quickstart.png`` (certified precision / recall / f1 curves).
The documentation does not run this script (about 40 s to 2 minutes on a CPU); the
figure of a full run on a 2-core CPU:

.. image:: /images/quickstart.png
   :alt: Certified top-3 precision, recall and f1 against the l2 radius for MultiGuard,
         its first-term ablation and Jia et al. 2020
"""

# sphinx_gallery_thumbnail_path = "images/quickstart.png"
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import MultiLabelNet
from sklearn_certify.results import plot_certified_curves

RADII = [0.0, 0.25, 0.5, 0.75, 1.0]
METHODS = ["multiguard", "first-term", "jia"]
OUTPUT = Path(__file__).resolve().parent / "output" / "quickstart.png"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10000, help="training images")
    parser.add_argument("--n-test", type=int, default=500, help="images to certify")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--sigma", type=float, default=0.5, help="noise level")
    parser.add_argument("--k-prime", type=int, default=1, help="labels per base prediction")
    parser.add_argument("--k", type=int, default=3, help="labels the smoothed model predicts")
    parser.add_argument("--n-draws", type=int, default=1000, help="noisy copies per image")
    parser.add_argument("--alpha", type=float, default=0.001, help="failure probability")
    parser.add_argument(
        "--train-noise",
        default="gaussian",
        choices=["gaussian", "consistency"],
        help="how the CNN is trained for noise (docs/training.md): Gaussian "
        "augmentation, or consistency regularisation (two noisy copies "
        "per image, about twice the training time)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 is faster on "
        "a machine whose cores are busy with other work",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT, help="curves PNG")
    return parser.parse_args()


def results_table(results: dict) -> pd.DataFrame:
    """Certified precision / recall / f1 in %, one row per metric and method."""
    rows = {}
    for metric in ("precision", "recall", "f1"):
        for method, result in results.items():
            rows[(metric, method)] = 100 * getattr(result, metric)()
    columns = [f"R={r:g}" for r in RADII]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["metric", "method"])
    return table


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    timings = {}
    start = time.perf_counter()

    tic = time.perf_counter()
    X_train, X_test, Y_train, Y_test = make_multidigit(
        args.n_train, args.n_test, image_shape=True, random_state=args.seed
    )
    timings["data"] = time.perf_counter() - tic
    print(
        f"make_multidigit: {len(X_train)} training and {len(X_test)} test images of "
        f"shape {X_test.shape[1:]}, {Y_train.shape[1]} labels, "
        f"{Y_test.sum(axis=1).mean():.2f} labels per image"
    )

    # The base classifier: a small CNN (MultiLabelNet picks it for image-shaped X)
    # trained with the asymmetric loss; train_noise="gaussian" (the default) sets its
    # noise_sigma to sigma, so every training batch gets fresh Gaussian noise;
    # "consistency" also trains on two noisy copies per image with a consistency term.
    net = MultiLabelNet(
        max_epochs=args.epochs, batch_size=128, lr=2e-3, device=args.device, verbose=1
    )
    clf = SmoothedMultiLabelClassifier(
        net,
        sigma=args.sigma,
        k_prime=args.k_prime,
        k=args.k,
        n_draws=args.n_draws,
        alpha=args.alpha,
        method="multiguard",
        train_noise=args.train_noise,
        random_state=args.seed,
        verbose=1,
    )

    tic = time.perf_counter()
    clf.fit(X_train, Y_train)
    timings["fit"] = time.perf_counter() - tic

    # One sampling pass: n_draws noisy copies of every test image through the CNN.
    tic = time.perf_counter()
    multiguard = clf.certify(X_test, Y_test, RADII)
    timings["certify (sampling)"] = time.perf_counter() - tic

    # The other certificates from the same counts: no more sampling.
    tic = time.perf_counter()
    results = {"multiguard": multiguard}
    for method in METHODS[1:]:
        if method == "jia" and args.k_prime != 1:
            continue
        results[method] = multiguard.recertify(method=method)
    timings["recertify"] = time.perf_counter() - tic

    pd.set_option("display.width", 120)
    print(
        f"\nCertified top-{args.k} precision / recall / f1 (%) under l2 attacks of radius R "
        f"(sigma={args.sigma}, k'={args.k_prime}, n={args.n_draws}, alpha={args.alpha}, "
        f"{len(X_test)} test images)"
    )
    print(results_table(results).round(1).to_string())

    args.output.parent.mkdir(parents=True, exist_ok=True)
    axes = plot_certified_curves(list(results.values()))
    axes[0].figure.suptitle(
        f"make_multidigit, sigma={args.sigma}, k'={args.k_prime}, k={args.k}, n={args.n_draws}"
    )
    axes[0].figure.savefig(args.output, dpi=120)
    print(f"\ncurves saved to {args.output}")

    timings["total"] = time.perf_counter() - start
    draws = len(X_test) * args.n_draws
    print(
        "timings: "
        + ", ".join(f"{name} {sec:.1f}s" for name, sec in timings.items())
        + f"  ({draws / timings['certify (sampling)']:,.0f} noisy copies/s on "
        f"{args.device}, {torch.get_num_threads()} threads)"
    )
    mg, jia = results["multiguard"], results.get("jia")
    if jia is not None:
        at = RADII.index(0.5)
        print(
            "at R=0.5, MultiGuard vs Jia et al.: "
            + ", ".join(
                f"{m} {100 * getattr(mg, m)()[at]:.1f} vs {100 * getattr(jia, m)()[at]:.1f}"
                for m in ("precision", "recall", "f1")
            )
        )
    np.set_printoptions()


if __name__ == "__main__":
    main()
