"""Training the poisoning-certified ensembles on a Dask cluster
============================================================

The base models of :class:`~sklearn_certify.BaggingCertifiedClassifier` and
:class:`~sklearn_certify.DPACertifiedClassifier` are trained (and their votes
counted) through joblib, so ``joblib.parallel_backend("dask")`` sends the work to a
``dask.distributed`` cluster without any other change. This script starts a local
cluster of two worker processes (point ``Client`` at a real scheduler address to use
a cluster of machines), trains both ensembles of ``examples/poisoning.py`` there and
on the local loky backend, and checks that the results are identical: the subsamples
come from seeds drawn before any task starts, and the DPA partitions from a content
hash, so neither depends on where or in which order the base models are trained.

Run::

    python examples/poisoning_dask.py             # about a minute on 2 cores
    python examples/poisoning_dask.py --verbose   # with joblib progress
"""

from __future__ import annotations

import argparse
import time

import joblib
import numpy as np
from dask.distributed import Client, LocalCluster

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.datasets import make_multidigit


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def fit_and_certify(model, X_train, Y_train, X_test, Y_test, T):
    start = time.perf_counter()
    model.fit(X_train, Y_train)
    seconds = time.perf_counter() - start
    return model, model.certify(X_test, Y_test, T, attack="modification"), seconds


def main(argv=None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-estimators", type=int, default=1000)
    parser.add_argument("--max-samples", type=int, default=100)
    parser.add_argument("--n-partitions", type=int, default=300)
    parser.add_argument(
        "--scheduler",
        default=None,
        help="address of an existing Dask scheduler (default: start a "
        "LocalCluster of 2 worker processes)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    verbose = 10 if args.verbose else 0

    X_train, X_test, Y_train, Y_test = make_multidigit(args.n_train, args.n_test, random_state=0)
    T = np.arange(0, 41, 5)
    makers = {
        "bagging": lambda: BaggingCertifiedClassifier(
            n_estimators=args.n_estimators,
            max_samples=args.max_samples,
            random_state=0,
            verbose=verbose,
        ),
        "DPA": lambda: DPACertifiedClassifier(n_partitions=args.n_partitions, verbose=verbose),
    }

    local = {}
    for name, make in makers.items():
        log(f"{name}: training on the local loky backend (n_jobs=2) ...")
        local[name] = fit_and_certify(
            make().set_params(n_jobs=2), X_train, Y_train, X_test, Y_test, T
        )
        log(f"{name}: {local[name][2]:.1f} s")

    if args.scheduler:
        cluster = None
        client = Client(args.scheduler)
    else:
        log("starting a dask.distributed LocalCluster: 2 worker processes, 1 thread each")
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    identical = True
    try:
        log(f"Dask workers: {sorted(client.scheduler_info()['workers'])}")
        for name, make in makers.items():
            log(f"{name}: training on the Dask cluster ...")
            with joblib.parallel_backend("dask"):
                model, result, seconds = fit_and_certify(
                    make(), X_train, Y_train, X_test, Y_test, T
                )
                proba = model.predict_proba(X_test)
            local_model, local_result, _ = local[name]
            same = np.array_equal(proba, local_model.predict_proba(X_test)) and np.array_equal(
                result.sizes, local_result.sizes
            )
            identical &= same
            log(
                f"{name}: {seconds:.1f} s on Dask; vote counts and certified sizes "
                f"identical to the local backend: {same}"
            )
            print(
                result.to_frame()[["T", "precision", "recall", "f1"]]
                .round(3)
                .to_string(index=False)
            )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    log(f"all results identical across backends: {identical}")
    return identical


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
