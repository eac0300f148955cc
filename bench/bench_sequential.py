"""Sequential certification against a fixed number of draws, on the quickstart settings.

    python bench/bench_sequential.py            # quickstart size (10,000 / 500 images)
    python bench/bench_sequential.py --quick    # tiny, to check that it runs

Trains the quickstart model (small CNN on ``make_multidigit``, sigma = 0.5, k' = 1,
k = 3, alpha = 0.001) and compares, at each radius R (0.5 and 0.25 by default):

* fixed n = ``--n-draws`` (1000): the certified f1;
* ``certify(..., sequential=True)``: mean draws per input as a fraction of n, and the
  certified f1 difference (goals: at most 50 % of the draws, f1 within 0.005);
* the trade-off curve: mean draws against f1 for fixed n (prefixes of the same
  streams) and for the sequential rule at several projection levels;
* the budget as a mean (``max_draws`` = 2n, 3n, 4n; mean draws at most n): undecided
  inputs draw beyond n (goal: at least one point of certified f1 above fixed n).

Every input's draws are its own prefix-stable stream, so all of these are computed from
ONE pass: each input's counts are sampled once at every stage end any schedule uses
and cumulated; a schedule then reads its counts from the cumulative table. The public
``certify(sequential=True)`` is also run once per radius and must give exactly the
certificates computed from the table (same seed, same streams).

Writes ``bench/results_sequential.json`` and ``bench/results_sequential.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package, when run from a checkout

from sklearn_certify import SmoothedMultiLabelClassifier  # noqa: E402
from sklearn_certify.certificates._gaussian_sequential import (  # noqa: E402
    FUTILITY_LEVEL,
    sequential_gaussian_certify,
    stage_schedule,
)
from sklearn_certify.datasets import make_multidigit  # noqa: E402
from sklearn_certify.nets import MultiLabelNet  # noqa: E402
from sklearn_certify.results import CertificationResult  # noqa: E402
from sklearn_certify.smoothing._certify_sequential import stage_sampler  # noqa: E402

FUTILITY_LEVELS = (0.5, 0.3, FUTILITY_LEVEL, 0.1, 0.05, 0.01)
FIXED_FRACTIONS = (0.25, 0.5, 1.0, 2.0)
BUDGET_FACTORS = (2, 3, 4)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--n-draws", type=int, default=1000)
    parser.add_argument("--radii", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=HERE / "results_sequential")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.n_draws = 600, 40, 2, 200
    return args


def train(args):
    X_train, X_test, Y_train, Y_test = make_multidigit(
        args.n_train, args.n_test, image_shape=True, random_state=args.seed
    )
    net = MultiLabelNet(max_epochs=args.epochs, batch_size=128, lr=2e-3, device="cpu")
    clf = SmoothedMultiLabelClassifier(
        net, sigma=0.5, k_prime=1, k=3, n_draws=args.n_draws, alpha=0.001, random_state=args.seed
    )
    return clf.fit(X_train, Y_train), X_test, Y_test


class CumulativeCounts:
    """Each input's counts at every stage end in ``ends``, sampled once, cumulated."""

    def __init__(self, clf, X, ends):
        self.ends = np.unique(np.r_[0, ends]).astype(np.int64)
        sample = stage_sampler(clf, clf._check_input(X, reset=False))
        rows = np.arange(len(X))
        table = [np.zeros((len(X), clf.n_classes_), dtype=np.int64)]
        for start, stop in zip(self.ends[:-1], self.ends[1:]):
            table.append(table[-1] + sample(rows, int(start), int(stop)))
        self.table = np.stack(table)
        self.index = {int(end): i for i, end in enumerate(self.ends)}

    def at(self, n):
        return self.table[self.index[int(n)]]

    def __call__(self, rows, start, stop):
        return self.table[self.index[int(stop)], rows] - self.table[self.index[int(start)], rows]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.n_draws
    tic = time.perf_counter()
    clf, X, Y = train(args)
    train_s = time.perf_counter() - tic
    settings = dict(
        k=clf.k, k_prime=clf.k_prime, sigma=clf.sigma, alpha=clf.alpha, method=clf.method
    )

    fixed_ns = sorted({max(1, int(f * n)) for f in FIXED_FRACTIONS})
    ends = [*fixed_ns, *stage_schedule(n)[0]]
    for factor in BUDGET_FACTORS:
        ends.extend(stage_schedule(n, factor * n)[0])
    tic = time.perf_counter()
    cumulative = CumulativeCounts(clf, X, ends)
    sample_s = time.perf_counter() - tic

    def fixed_f1(m, radius):
        return float(
            CertificationResult.from_counts(
                cumulative.at(m),
                Y,
                radius,
                certificate="gaussian",
                n_draws=m,
                k=settings["k"],
                method=settings["method"],
                alpha=settings["alpha"],
                k_prime=settings["k_prime"],
                sigma=settings["sigma"],
            ).f1()[0]
        )

    def sequential(radius, **kwargs):
        outcome = sequential_gaussian_certify(
            cumulative, Y, np.array([radius]), n_draws=n, **settings, **kwargs
        )
        f1 = CertificationResult(outcome.sizes, [radius], settings["k"], Y.sum(axis=1)).f1()[0]
        return outcome, float(f1)

    report = {
        "settings": {
            **settings,
            "n_draws": n,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "epochs": args.epochs,
            "train_s": train_s,
            "sample_s": sample_s,
            "draws_sampled_per_input": int(cumulative.ends[-1]),
        },
        "radii": {},
    }
    for radius in args.radii:
        base = fixed_f1(n, radius)
        outcome, f1 = sequential(radius)
        # the public API: the same streams, hence exactly the same certificates
        public = clf.certify(X, Y, radius, sequential=True)
        same = bool(
            np.array_equal(public.sizes, outcome.sizes)
            and np.array_equal(public.n_draws_used, outcome.n_draws_used)
        )
        curve_fixed = [{"mean_draws": m / n, "f1": fixed_f1(m, radius)} for m in fixed_ns]
        curve_seq = []
        for level in FUTILITY_LEVELS:
            out, value = sequential(radius, futility=level)
            curve_seq.append(
                {"futility": level, "mean_draws": float(out.n_draws_used.mean() / n), "f1": value}
            )
        budget = []
        for factor in BUDGET_FACTORS:
            out, value = sequential(radius, max_draws=factor * n, mean_budget=n)
            budget.append(
                {
                    "max_draws": factor * n,
                    "mean_draws": float(out.n_draws_used.mean() / n),
                    "f1": value,
                    "f1_gain": value - base,
                }
            )
        best_budget = max(budget, key=lambda row: row["f1"])
        report["radii"][str(radius)] = {
            "fixed_f1": base,
            "sequential": {
                "mean_draws": float(outcome.n_draws_used.mean() / n),
                "f1": f1,
                "f1_difference": f1 - base,
                "stops": {
                    int(k): int(v)
                    for k, v in zip(*np.unique(outcome.n_draws_used, return_counts=True))
                },
                "public_api_identical": same,
            },
            "curve_fixed": curve_fixed,
            "curve_sequential": curve_seq,
            "budget_as_mean": budget,
            "goals": {
                "draws_at_most_half": bool(outcome.n_draws_used.mean() / n <= 0.5),
                "f1_within_0.005": bool(abs(f1 - base) <= 0.005),
                "budget_gain_at_least_0.01": bool(best_budget["f1_gain"] >= 0.01),
            },
        }
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.output.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(report) -> str:
    s = report["settings"]
    lines = [
        f"Sequential certification, quickstart settings (sigma={s['sigma']}, k'="
        f"{s['k_prime']}, k={s['k']}, alpha={s['alpha']}, {s['n_test']} test images, "
        f"fixed n={s['n_draws']}).",
        "",
        "| R | fixed-n f1 | sequential: mean draws / n | f1 difference | "
        "budget as a mean: best max_draws | mean draws / n | f1 gain |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for radius, row in report["radii"].items():
        seq = row["sequential"]
        best = max(row["budget_as_mean"], key=lambda b: b["f1"])
        lines.append(
            f"| {radius} | {row['fixed_f1']:.4f} | {seq['mean_draws']:.3f} | "
            f"{seq['f1_difference']:+.4f} | {best['max_draws']} | {best['mean_draws']:.3f} | "
            f"{best['f1_gain']:+.4f} |"
        )
    lines += ["", "Trade-off (mean draws / n -> certified f1):", ""]
    for radius, row in report["radii"].items():
        fixed = ", ".join(f"{p['mean_draws']:.2f} -> {p['f1']:.4f}" for p in row["curve_fixed"])
        seq = ", ".join(
            f"{p['mean_draws']:.3f} -> {p['f1']:.4f} (level {p['futility']})"
            for p in row["curve_sequential"]
        )
        budget = ", ".join(
            f"{p['mean_draws']:.3f} -> {p['f1']:.4f} (max {p['max_draws']})"
            for p in row["budget_as_mean"]
        )
        lines += [
            f"* R = {radius}: fixed n: {fixed}",
            f"  * sequential: {seq}",
            f"  * budget as a mean: {budget}",
            f"  * goals: {row['goals']}; public certify identical: "
            f"{row['sequential']['public_api_identical']}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
