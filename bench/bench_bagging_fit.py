"""Time to fit the base models of a BaggingCertifiedClassifier, in models per second.

Data: ``make_multilabel_classification`` with 5,000 examples, 64 features and 10
labels; every base model is trained on ``max_samples=0.1`` of it (500 examples drawn
with replacement). Bases: the default ``RidgeClassifier()`` (closed-form least
squares per label) and one-vs-rest logistic regression (lbfgs), each with
``n_jobs=1`` and ``n_jobs=2`` (joblib's loky backend).

Run::

    python bench/bench_bagging_fit.py                 # 1000 models per configuration
    python bench/bench_bagging_fit.py --blas-threads 1  # one BLAS thread in this process

The logistic-regression base is much slower; it is timed on ``--logistic-estimators``
models (default 50) and reported per second like the others. joblib's workers use one
BLAS thread each; with ``n_jobs=1`` the models are fitted in this process with its BLAS
thread pool, which ``--blas-threads`` limits (small per-model problems are often faster
with one thread, in particular on a busy machine). The load average is printed, since
other processes on the machine change the numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from contextlib import nullcontext

import numpy as np
from sklearn.datasets import make_multilabel_classification
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from sklearn_certify import BaggingCertifiedClassifier


def time_fit(estimator, X, Y, n_estimators: int, n_jobs: int) -> float:
    clf = BaggingCertifiedClassifier(
        estimator, n_estimators=n_estimators, max_samples=0.1, n_jobs=n_jobs, random_state=0
    )
    start = time.perf_counter()
    clf.fit(X, Y)
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-estimators", type=int, default=1000)
    parser.add_argument("--logistic-estimators", type=int, default=50)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--blas-threads", type=int, default=None)
    args = parser.parse_args(argv)

    def limits():  # threadpool_limits applies on construction: make a fresh one per run
        return threadpool_limits(args.blas_threads) if args.blas_threads else nullcontext()

    X, Y = make_multilabel_classification(5000, 64, n_classes=10, random_state=0)
    X = X.astype(np.float64)
    print(
        f"data: X {X.shape}, Y {Y.shape}; max_samples=0.1 (m=500); "
        f"cpus={os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; "
        f"BLAS/OpenMP threads in this process: {args.blas_threads or 'library default'}"
    )
    print(f"{'base':<34}{'n_jobs':>7}{'models':>8}{'seconds':>10}{'models/s':>10}")
    configs = [
        ("RidgeClassifier() [default]", None, args.n_estimators),
        (
            "OneVsRest(LogisticRegression())",
            OneVsRestClassifier(LogisticRegression(max_iter=200)),
            args.logistic_estimators,
        ),
    ]
    # Warm the loky worker pool so that process start-up is not billed to the first run.
    time_fit(None, X, Y, 4, max(args.n_jobs))
    for name, estimator, n_models in configs:
        for n_jobs in args.n_jobs:
            with warnings.catch_warnings(), limits():
                warnings.simplefilter("ignore")
                seconds = time_fit(estimator, X, Y, n_models, n_jobs)
            print(
                f"{name:<34}{n_jobs:>7}{n_models:>8}{seconds:>10.2f}{n_models / seconds:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
