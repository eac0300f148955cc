"""Finite Aggregation against DPA: certified top-k f1 at equal examples per base model.

For each data set, the same base estimator (``RidgeClassifier()``, the default) and
the same number of training examples per base model (``n_train / N``):

* DPA: ``DPACertifiedClassifier(n_partitions=N)``, certified with Eq. 9
  ("poisoningguard");
* FA: ``DPACertifiedClassifier(n_partitions=N, spread=d)`` for d in ``--spreads``,
  certified with "finite-aggregation" and, for comparison, with Eq. 9 on the same
  votes (T~ replaced by d T~: what the per-model votes add).

Reported per configuration: clean top-k f1 (of ``predict``), certified f1 at T = 0
and at several T (modification attack, k = 3, k_b = 1), the training time, and the
goal: at the T where DPA's certified f1 first drops to half its clean f1,
FA's certified f1 minus DPA's (goal: >= 3 points, at clean f1 within one point), and
FA's training time over DPA's (goal: <= d).

Run::

    python bench/bench_finite_aggregation.py              # writes results_finite_aggregation.md
    python bench/bench_finite_aggregation.py --quick      # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_multilabel_classification

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from sklearn_certify import DPACertifiedClassifier  # noqa: E402
from sklearn_certify.datasets import make_multidigit  # noqa: E402

K, K_BASE = 3, 1


def clean_f1(pred: np.ndarray, Y: np.ndarray) -> float:
    hits = (pred.astype(bool) & Y.astype(bool)).sum(axis=1)
    n_true = Y.sum(axis=1)
    keep = n_true > 0
    return float(np.mean(2 * hits[keep] / (n_true[keep] + K)))


def run(name, X, Y, X_test, Y_test, n_partitions, spreads, radii):
    rows = []
    for spread in (1, *spreads):
        clf = DPACertifiedClassifier(
            n_partitions=n_partitions, spread=spread, k_base=K_BASE, k=K, n_jobs=1
        )
        start = time.perf_counter()
        clf.fit(X, Y)
        seconds = time.perf_counter() - start
        result = clf.certify(X_test, Y_test, radii)  # Eq. 9 at d = 1, FA at d > 1
        row = dict(
            data=name,
            spread=spread,
            n_models=len(clf.estimators_),
            per_model=float(np.mean([m.n_samples_fit_ for m in clf.estimators_])),
            seconds=seconds,
            clean=clean_f1(clf.predict(X_test), Y_test),
            method=result.method,
            f1=result.f1(),
        )
        if spread > 1:
            row["eq9"] = result.recertify(method="poisoningguard").f1()
        else:
            row["fa_at_1"] = clf.certify(X_test, Y_test, radii, method="finite-aggregation").f1()
        rows.append(row)
        print(
            f"  {name} d={spread}: {row['n_models']} models, {row['per_model']:.0f} "
            f"examples each, {seconds:.1f} s, clean f1 {row['clean']:.3f}, "
            f"certified f1 {np.round(row['f1'], 3).tolist()}",
            flush=True,
        )
    return rows


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(all_rows, radii, args) -> str:
    lines = [
        "# Finite Aggregation vs DPA",
        "",
        "Produced by `python bench/bench_finite_aggregation.py"
        + (" --quick" if args.quick else "")
        + "` "
        f"({platform.machine()}, {os.cpu_count()} CPUs, torch threads 1, "
        f"load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        f"Base model: `RidgeClassifier()` (the default); k = {K}, k_b = {K_BASE}; "
        "modification attack (T~ = 2T). Every ensemble trains each base model on about "
        "n_train / N examples; FA has N * d models. Certified f1 = mean of "
        "2e / (|L| + k).",
        "",
    ]
    for name in dict.fromkeys(r["data"] for r in all_rows):
        rows = [r for r in all_rows if r["data"] == name]
        dpa = rows[0]
        lines += [
            f"## {name}",
            "",
            "| ensemble | models | examples / model | fit time (s) | time / DPA | "
            "clean f1 | " + " | ".join(f"T={t}" for t in radii) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(radii),
        ]
        for r in rows:
            label = "DPA (Eq. 9)" if r["spread"] == 1 else f"FA d={r['spread']}"
            lines.append(
                f"| {label} | {r['n_models']} | {r['per_model']:.0f} | {r['seconds']:.2f} | "
                f"{r['seconds'] / dpa['seconds']:.1f} | {r['clean']:.3f} | "
                + " | ".join(f"{v:.3f}" for v in r["f1"])
                + " |"
            )
            extra = r.get("eq9")
            if extra is not None:
                lines.append(
                    f"| FA d={r['spread']}, Eq. 9 on its votes (T~ -> d T~) | | | | | "
                    "| " + " | ".join(f"{v:.3f}" for v in extra) + " |"
                )
            if "fa_at_1" in r:
                lines.append(
                    "| DPA, finite-aggregation certificate | | | | | | "
                    + " | ".join(f"{v:.3f}" for v in r["fa_at_1"])
                    + " |"
                )
        half = np.flatnonzero(dpa["f1"] <= dpa["clean"] / 2)
        lines.append("")
        if not half.size:
            lines.append(f"DPA keeps more than half its clean f1 up to T = {radii[-1]}.")
        else:
            i = int(half[0])
            lines.append(
                f"DPA's certified f1 first drops to half its clean f1 "
                f"({dpa['clean']:.3f} / 2) at T = {radii[i]} "
                f"(f1 {dpa['f1'][i]:.3f}). There:"
            )
            lines.append("")
            for r in rows[1:]:
                gain = 100 * (r["f1"][i] - dpa["f1"][i])
                own = 100 * (r["f1"][i] - r["eq9"][i])
                clean_gap = 100 * (r["clean"] - dpa["clean"])
                ratio = r["seconds"] / dpa["seconds"]
                lines.append(
                    f"- FA d={r['spread']}: certified f1 {r['f1'][i]:.3f}, {gain:+.1f} points "
                    f"over DPA, of which {own:+.1f} from the certificate itself (FA minus "
                    f"Eq. 9 on the same votes); clean f1 {clean_gap:+.1f} points; fit time "
                    f"x{ratio:.1f}. Goals: gain >= 3 points {_met(gain >= 3)}; clean f1 "
                    f"within one point {_met(abs(clean_gap) <= 1)}; time <= x{r['spread']} "
                    f"{_met(ratio <= r['spread'])}."
                )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--spreads", type=int, nargs="+", default=[4, 16])
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results_finite_aggregation.md")
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scale = 4 if args.quick else 1
    radii = [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]

    rows = []
    X, X_test, Y, Y_test = make_multidigit(8000 // scale, 1000 // scale, random_state=0)
    rows += run(
        "make_multidigit (2x2 digits, 10 labels, 8000 train)",
        X,
        Y,
        X_test,
        Y_test,
        n_partitions=50 // scale,
        spreads=args.spreads,
        radii=radii,
    )
    X, Y = make_multilabel_classification(
        (8000 + 1000) // scale, 50, n_classes=10, n_labels=3, random_state=0
    )
    split = 8000 // scale
    rows += run(
        "make_multilabel_classification (50 features, 10 labels, 8000 train)",
        X[:split],
        Y[:split],
        X[split:],
        Y[split:],
        n_partitions=50 // scale,
        spreads=args.spreads,
        radii=radii,
    )
    text = report(rows, radii, args)
    with open(args.out, "w") as file:
        file.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
