"""Record the library's numbers on fixed problems, to check that a refactoring is bit-identical.

Fits the three estimators on small fixed problems and records their counts, votes,
bounds, predictions, certified sizes and radii, and the pure functions' outputs, in one
``.npz`` file::

    python bench/record_outputs.py --out before.npz       # on the old commit
    python bench/record_outputs.py --out after.npz        # on the new one
    python bench/record_outputs.py --compare before.npz after.npz

``--compare`` lists every array that differs in any bit and exits 1 if one does. The
numbers are reproducible from the fixed ``random_state`` values on one machine and one
torch build; a different CPU or build may legitimately change the float bits of a
forward pass.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _pure_functions(record: dict) -> None:
    from sklearn_certify.bounds import clopper_pearson_bounds, max_certifiable_radius
    from sklearn_certify.certificates import (
        bagging_certified_size,
        dpa_certified_size,
        gaussian_certified_size,
    )

    rng = np.random.default_rng(0)
    n_classes, n_draws = 8, 500
    Y = (rng.random((40, n_classes)) < 0.3).astype(int)
    counts = rng.integers(0, n_draws, size=(40, n_classes))
    lower, upper = clopper_pearson_bounds(counts, n_draws, 0.001)
    record["cp_lower"], record["cp_upper"] = lower, upper
    radii = np.linspace(0, 1.5, 7)
    for method in ("multiguard", "first-term"):
        record[f"gaussian_{method}"] = gaussian_certified_size(
            lower, upper, Y, k=3, k_prime=2, sigma=0.5, radius=radii, method=method
        )
    for attack in ("modification", "addition", "deletion"):
        record[f"bagging_{attack}"] = bagging_certified_size(
            lower,
            upper,
            Y,
            k=3,
            k_base=2,
            n_train=1000,
            max_samples=50,
            radius=np.arange(6),
            attack=attack,
        )
        record[f"dpa_{attack}"] = dpa_certified_size(
            counts, Y, k=3, k_base=2, radius=np.arange(0, 200, 20), attack=attack
        )
    record["max_radius"] = np.array(
        [
            max_certifiable_radius(n, 0.001, 0.5, 10, k=k, k_prime=kp)
            for n in (100, 1000, 10_000)
            for k, kp in ((1, 1), (3, 1), (3, 2))
        ]
    )


def _smoothing(record: dict) -> None:
    import torch

    from sklearn_certify import SmoothedMultiLabelClassifier
    from sklearn_certify.datasets import make_multidigit
    from sklearn_certify.nets import MultiLabelNet

    torch.set_num_threads(1)
    X_train, X_test, Y_train, Y_test = make_multidigit(400, 40, random_state=0)
    net = MultiLabelNet(max_epochs=3, batch_size=64, verbose=0)
    clf = SmoothedMultiLabelClassifier(net, sigma=0.5, k=3, n_draws=300, random_state=0).fit(
        X_train, Y_train
    )
    radii = np.array([0.0, 0.25, 0.5])
    result = clf.certify(X_test, Y_test, radii)
    record["smooth_counts"] = result.counts
    record["smooth_sizes"] = result.sizes
    record["smooth_lower"] = result.lower
    record["smooth_radius"] = result.certified_radius(size=1)
    record["smooth_predict"] = clf.predict(X_test)
    record["smooth_proba"] = clf.predict_proba(X_test)
    sequential = clf.certify(X_test, Y_test, radii, sequential=True)
    record["smooth_seq_sizes"] = sequential.sizes
    record["smooth_seq_draws"] = sequential.n_draws_used
    record["smooth_recertify"] = result.recertify(radius=radii, k=2, method="first-term").sizes


def _ensembles(record: dict) -> None:
    from sklearn.linear_model import RidgeClassifier

    from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
    from sklearn_certify.datasets import make_multidigit

    X, X_test, Y, Y_test = make_multidigit(500, 100, random_state=1)
    for name, base in (("ridge", RidgeClassifier()), ("default", None)):
        bagging = BaggingCertifiedClassifier(
            base, n_estimators=60, max_samples=0.2, k=3, random_state=0
        ).fit(X, Y)
        result = bagging.certify(X_test, Y_test, np.arange(4))
        record[f"bagging_{name}_counts"] = result.counts
        record[f"bagging_{name}_sizes"] = result.sizes
        record[f"bagging_{name}_predict"] = bagging.predict(X_test)
    for spread in (1, 3):
        dpa = DPACertifiedClassifier(None, n_partitions=30, spread=spread, k=3)
        dpa.fit(X, Y)
        result = dpa.certify(X_test, Y_test, np.arange(0, 12, 2))
        record[f"dpa{spread}_counts"], record[f"dpa{spread}_sizes"] = (result.counts, result.sizes)
        record[f"dpa{spread}_radius"] = result.certified_radius(size=1)
        record[f"dpa{spread}_predict"] = dpa.predict(X_test)


def record_outputs(path: str) -> None:
    record: dict = {}
    _pure_functions(record)
    _smoothing(record)
    _ensembles(record)
    np.savez(path, **record)
    print(f"{len(record)} arrays written to {path}")


def compare(before: str, after: str) -> int:
    old, new = np.load(before), np.load(after)
    differ = sorted(set(old.files) ^ set(new.files))
    for name in sorted(set(old.files) & set(new.files)):
        a, b = old[name], new[name]
        if a.shape != b.shape or a.dtype != b.dtype or a.tobytes() != b.tobytes():
            differ.append(name)
    print(
        f"{len(set(old.files) & set(new.files))} arrays compared; "
        f"{len(differ)} differ{': ' + ', '.join(differ) if differ else ''}"
    )
    return 1 if differ else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    record_outputs(args.out or "outputs.npz")


if __name__ == "__main__":
    main()
