"""Certifying at scale: a Dask cluster, a resumed run, results saved and loaded
==============================================================================

Certification on a Dask cluster, an interrupted run resumed from the cache, and results
saved, loaded and certified again without the model.

1. Trains the quickstart's small CNN (on fewer images and epochs, for speed) and
   certifies the quickstart's 500 test images on a ``dask.distributed.LocalCluster``
   with 2 worker processes (``joblib.parallel_backend("dask")``, ``n_jobs=2``), with
   ``memory=`` a cache directory.
2. The first run is interrupted part-way (a Ctrl-C, simulated once the cache holds a
   few chunks of counts). The second run samples only the images not yet in the cache
   and returns counts identical to an uninterrupted run.
3. The result is saved (a pickle-free ``.npz``), loaded, and certified again for other
   radii, ``k`` and method: no model and no sampling needed.

Run: ``python examples/certify_at_scale.py`` (under 2 minutes on 2 CPU cores).
See ``docs/scale.md`` and ``docs/model_selection.md``.
"""

from __future__ import annotations

import _thread
import glob
import os
import tempfile
import threading
import time

import joblib
import numpy as np
import torch
from dask.distributed import Client, LocalCluster

from sklearn_certify import CertificationResult, SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import MultiLabelNet

RADII = [0.0, 0.25, 0.5]
N_DRAWS = 500


def stored_inputs(cache: str) -> int:
    """Number of images whose counts the cache holds."""
    total = 0
    for path in glob.glob(os.path.join(cache, "sklearn_certify", "counts", "*", "*.npz")):
        with np.load(path) as f:
            total += len(f["keys"])
    return total


def interrupt_when_stored(cache: str, n_inputs: int) -> threading.Thread:
    """A Ctrl-C in the main thread once the cache holds ``n_inputs`` images."""

    def watch():
        while stored_inputs(cache) < n_inputs:
            time.sleep(0.05)
        _thread.interrupt_main()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def main() -> None:
    torch.set_num_threads(1)
    X_train, X_test, Y_train, Y_test = make_multidigit(10000, 500, image_shape=True, random_state=0)
    net = MultiLabelNet(max_epochs=10, batch_size=128, lr=2e-3)
    with tempfile.TemporaryDirectory() as cache:
        clf = SmoothedMultiLabelClassifier(
            net,
            sigma=0.5,
            k=3,
            n_draws=N_DRAWS,
            alpha=0.001,
            n_jobs=2,
            memory=cache,
            random_state=0,
        )
        tic = time.perf_counter()
        clf.fit(X_train[:2000], Y_train[:2000])
        print(f"fit on 2000 images: {time.perf_counter() - tic:.1f} s")

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
            joblib.parallel_backend("dask"),
        ):
            print(
                f"certifying {len(X_test)} images x {N_DRAWS} draws on a LocalCluster "
                "with 2 workers"
            )
            tic = time.perf_counter()
            try:
                interrupt_when_stored(cache, len(X_test) // 3)
                clf.certify(X_test, Y_test, RADII)
                print("first run: finished before the interruption")
            except KeyboardInterrupt:
                print(
                    f"first run: interrupted after {time.perf_counter() - tic:.1f} s, "
                    f"{stored_inputs(cache)} of {len(X_test)} images in the cache"
                )
            tic = time.perf_counter()
            before = stored_inputs(cache)
            result = clf.certify(X_test, Y_test, RADII)
            print(
                f"second run: sampled the other {len(X_test) - before} images in "
                f"{time.perf_counter() - tic:.1f} s"
            )

        # a third run with another k samples nothing
        tic = time.perf_counter()
        clf.set_params(n_jobs=None).certify(X_test, Y_test, RADII, k=1)
        print(f"certify again with k=1: {time.perf_counter() - tic:.2f} s, all from the cache")
        # the counts are those of a run without cache or interruption (checked on 20)
        fresh = clf.set_params(memory=None).predict_proba(X_test[:20]) * N_DRAWS
        print(f"counts equal to an uncached run: {np.array_equal(fresh, result.counts[:20])}")

        path = os.path.join(cache, "result.npz")
        result.save(path)
        loaded = CertificationResult.load(path)
    print(f"\nsaved and loaded: {np.array_equal(loaded.counts, result.counts)}")
    print(
        loaded.to_frame()[["radius", "precision", "recall", "f1"]].to_string(
            index=False, float_format="%.3f"
        )
    )
    other = loaded.recertify(radius=np.linspace(0.0, 1.0, 5), k=1, method="first-term")
    print("\nrecertified for k=1, method='first-term', five radii (no model, no sampling):")
    print(
        other.to_frame()[["radius", "precision", "recall", "f1"]].to_string(
            index=False, float_format="%.3f"
        )
    )


if __name__ == "__main__":
    main()
