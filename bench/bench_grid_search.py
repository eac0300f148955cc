"""A certified grid search with and without ``memory=``: time, fits, sampling passes.

The search: ``GridSearchCV`` over sigma in {0.25, 0.5} x k in {1, 2, 3} x n_draws in
{100, 400}, 3 folds, refit on f1, scored by a dict of three certified scorers (f1,
precision and recall at R = 0.25), of a ``SmoothedMultiLabelClassifier`` with a small
``MultiLabelNet`` (one hidden layer of 128, 10 epochs) on ``make_multidigit(1000, 300)``.
It runs in this process (``n_jobs=1``) so that base-model trainings and sampling passes
can be counted (by wrapping the estimator's training step and the sampling engine).

Three runs on the same data and seeds:

* ``memory``: ``memory=joblib.Memory(<fresh temporary directory>)``, the in-process
  counts cache off (the default): fits and counts come from the directory;
* ``process cache``: ``memory=None`` and ``config_context(counts_cache=True)``: one
  sampling pass among the scorers of a fold and among candidates with equal models;
* ``nothing cached``: the defaults (``memory=None``, the in-process counts cache off),
  i.e. one training per candidate-fold and one sampling pass per scorer call.

The scores of all runs must be bit-identical; the script fails otherwise.

Run::

    python bench/bench_grid_search.py            # the search above
    python bench/bench_grid_search.py --quick    # a tiny version, to check it works
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager

import joblib
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, KFold

import sklearn_certify
from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import certified_scorer
from sklearn_certify.nets import MultiLabelNet
from sklearn_certify.smoothing import _classifier

RADIUS = 0.25
METRICS = ("f1", "precision", "recall")


@contextmanager
def counting(counts: dict, *, counts_cache: bool = True):
    """Count base-model trainings and sampling passes, with the in-process counts cache
    switched on or off (``sklearn_certify.config_context``)."""
    train, sample = (
        _classifier.SmoothedMultiLabelClassifier._train,
        _classifier.sharded_label_counts,
    )

    def counted_train(*args, **kwargs):
        counts["fits"] += 1
        return train(*args, **kwargs)

    def counted_sample(*args, **kwargs):
        counts["sampling passes"] += 1
        return sample(*args, **kwargs)

    _classifier.SmoothedMultiLabelClassifier._train = counted_train
    _classifier.sharded_label_counts = counted_sample
    try:
        with sklearn_certify.config_context(counts_cache=counts_cache):
            yield
    finally:
        _classifier.SmoothedMultiLabelClassifier._train = train
        _classifier.sharded_label_counts = sample


def run_search(X, Y, grid, net_params, memory, counts_cache: bool) -> tuple[dict, dict, float]:
    clf = SmoothedMultiLabelClassifier(
        MultiLabelNet(**net_params), k_prime=1, alpha=0.01, memory=memory, random_state=0
    )
    scoring = {m: certified_scorer(m, radius=RADIUS) for m in METRICS}
    search = GridSearchCV(
        clf, grid, scoring=scoring, refit="f1", cv=KFold(3, shuffle=True, random_state=0), n_jobs=1
    )
    counts = {"fits": 0, "sampling passes": 0}
    with counting(counts, counts_cache=counts_cache):
        start = time.perf_counter()
        search.fit(X, Y)
        seconds = time.perf_counter() - start
    return search.cv_results_, counts, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny data, 2 epochs and 20/40 draws: checks the script only",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    if args.quick:
        sizes, epochs, draws = (150, 60), 2, [20, 40]
    else:
        sizes, epochs, draws = (1000, 300), 10, [100, 400]
    X, _, Y, _ = make_multidigit(*sizes, random_state=0)
    grid = {"sigma": [0.25, 0.5], "k": [1, 2, 3], "n_draws": draws}
    net_params = dict(max_epochs=epochs, lr=3e-3, batch_size=64, module__hidden=(128,))
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    print(
        f"GridSearchCV: {n_candidates} candidates x 3 folds + refit, "
        f"{len(METRICS)} certified scorers at R = {RADIUS}; train {X.shape}\n"
    )

    # warm-up (imports, first torch calls), not timed
    run_search(X[:60], Y[:60], {"k": [1]}, {**net_params, "max_epochs": 1}, None, True)
    runs = {}
    runs["nothing cached"] = run_search(X, Y, grid, net_params, None, False)
    runs["process cache"] = run_search(X, Y, grid, net_params, None, True)
    with tempfile.TemporaryDirectory() as location:
        runs["memory"] = run_search(
            X, Y, grid, net_params, joblib.Memory(location, verbose=0), False
        )

    reference = runs["memory"][0]
    columns = [c for c in reference if c.startswith("split") and "_test_" in c]
    identical = all(
        np.array_equal(reference[c], results[c], equal_nan=True)
        for results, _, _ in runs.values()
        for c in columns
    )

    print(f"{'run':<16}{'time (s)':>10}{'fits':>7}{'sampling passes':>18}")
    for name, (_, counts, seconds) in runs.items():
        print(f"{name:<16}{seconds:>10.2f}{counts['fits']:>7}{counts['sampling passes']:>18}")
    fast = runs["memory"][2]
    print(
        f"\nspeed-up of memory=: {runs['process cache'][2] / fast:.1f}x against the "
        "process cache, "
        f"{runs['nothing cached'][2] / fast:.1f}x against nothing cached"
    )
    print(f"cv_results_ scores bit-identical across the runs: {identical}")
    if not identical:
        raise SystemExit("scores differ between the runs")


if __name__ == "__main__":
    main()
