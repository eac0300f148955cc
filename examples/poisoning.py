"""Certified multi-label prediction under data poisoning (PoisoningGuard, Figure 1 style)
======================================================================================

Trains two ensembles on ``make_multidigit`` (16x16 images of up to four handwritten
digits, 10 labels) and certifies their top-3 predictions on held-out images against
an attacker who **modifies** T training examples:

* a bagging ensemble (1,000 base models, each on m = 100 examples drawn with
  replacement), certified by PoisoningGuard's Theorem 1 ("PG-Bagging") and by bagging
  (Jia et al. 2021) extended to top-k, i.e. Eq. 4 with t = 1 ("Bagging");
* a DPA ensemble (300 hash partitions), certified by Theorem 2 ("PG-DPA") and by DPA
  (Levine & Feizi 2021) extended to top-k, Eq. 9 with t = 1 ("DPA").

Both use k = 3 and k_base = 1 as in the paper; each ensemble is trained once and its
vote counts are certified with both methods (``CertificationResult.recertify``). The
script prints certified top-3 precision, recall and f1 at a few T and writes the
three curves against T to ``examples/output/poisoning.png``.

Run::

    python examples/poisoning.py              # about a minute on 2 cores
    python examples/poisoning.py --verbose    # with joblib progress
    python examples/poisoning.py --n-estimators 200 --n-train 4000   # faster

The documentation does not run this script; the figure of a full run on a 2-core CPU:

.. image:: /images/poisoning.png
   :alt: Certified top-3 precision, recall and f1 against the number T of modified
         training examples for PG-Bagging, Bagging, PG-DPA and DPA
"""

# sphinx_gallery_thumbnail_path = "images/poisoning.png"
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.datasets import make_multidigit

OUTPUT = Path(__file__).resolve().parent / "output" / "poisoning.png"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10_000, help="training images")
    parser.add_argument("--n-test", type=int, default=500, help="test images")
    parser.add_argument("--n-estimators", type=int, default=1000, help="bagging models")
    parser.add_argument("--max-samples", type=int, default=100, help="bagging subsample m")
    parser.add_argument("--n-partitions", type=int, default=300, help="DPA partitions N")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--k-base", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--t-max", type=int, default=60, help="largest T certified")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--verbose", action="store_true", help="joblib progress messages")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> list:
    args = parse_args(argv)
    verbose = 10 if args.verbose else 0
    X_train, X_test, Y_train, Y_test = make_multidigit(
        args.n_train, args.n_test, random_state=args.random_state
    )
    log(
        f"make_multidigit: {X_train.shape[0]} training / {X_test.shape[0]} test images, "
        f"{X_train.shape[1]} pixels, {Y_train.shape[1]} labels, "
        f"{Y_test.sum(axis=1).mean():.2f} labels per test image"
    )
    T = np.arange(args.t_max + 1)
    common = dict(k=args.k, k_base=args.k_base, n_jobs=args.n_jobs, verbose=verbose)

    log(
        f"bagging: fitting {args.n_estimators} base models on m={args.max_samples} "
        "examples each ..."
    )
    start = time.perf_counter()
    bagging = BaggingCertifiedClassifier(
        n_estimators=args.n_estimators,
        max_samples=args.max_samples,
        alpha=args.alpha,
        random_state=args.random_state,
        **common,
    ).fit(X_train, Y_train)
    log(f"bagging: fitted in {time.perf_counter() - start:.1f} s; certifying ...")
    pg_bagging = bagging.certify(X_test, Y_test, T, attack="modification")
    pg_bagging.label = "PG-Bagging"
    jia = pg_bagging.recertify(method="bagging", label="Bagging")

    log(f"DPA: fitting {args.n_partitions} base models on hash partitions ...")
    start = time.perf_counter()
    dpa = DPACertifiedClassifier(n_partitions=args.n_partitions, **common).fit(X_train, Y_train)
    sizes = dpa.partition_sizes_
    log(
        f"DPA: fitted in {time.perf_counter() - start:.1f} s (partition sizes "
        f"{sizes.min()}..{sizes.max()}, {int((sizes == 0).sum())} empty); certifying ..."
    )
    pg_dpa = dpa.certify(X_test, Y_test, T, attack="modification")
    pg_dpa.label = "PG-DPA"
    levine = pg_dpa.recertify(method="dpa", label="DPA")

    results = [pg_bagging, jia, pg_dpa, levine]
    table = pd.concat([r.to_frame() for r in results], ignore_index=True)
    shown = [t for t in (0, 1, 2, 5, 10, 15, 20, 30, 40, 60) if t <= args.t_max]
    for metric in ("precision", "recall", "f1"):
        pivot = table[table["T"].isin(shown)].pivot(index="T", columns="label", values=metric)
        print(f"\ncertified top-{args.k} {metric} under modification of T training examples")
        print(pivot[[r.name for r in results]].round(3).to_string())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = None
    styles = [
        dict(color="tab:blue"),
        dict(color="tab:blue", linestyle="--"),
        dict(color="tab:red"),
        dict(color="tab:red", linestyle="--"),
    ]
    for result, style in zip(results, styles):
        axes = result.plot(ax=axes, **style)
    axes[0].figure.suptitle(
        f"make_multidigit, modification attack: bagging ({args.n_estimators} models, "
        f"m={args.max_samples}) and DPA (N={args.n_partitions}), k={args.k}, "
        f"k_base={args.k_base}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    axes[0].figure.savefig(args.output, dpi=120)
    plt.close(axes[0].figure)
    log(f"figure written to {args.output}")
    return results


if __name__ == "__main__":
    main()
