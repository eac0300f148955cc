"""The ensembles under joblib's Dask backend on a real distributed LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.datasets import make_multidigit

distributed = pytest.importorskip("dask.distributed")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="module")
def digits():
    return make_multidigit(300, 40, random_state=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BaggingCertifiedClassifier(
            n_estimators=40, max_samples=30, k_base=2, random_state=0
        ),
        lambda: DPACertifiedClassifier(n_partitions=30, k_base=2),
        lambda: DPACertifiedClassifier(n_partitions=8, spread=3, k_base=2),
    ],
    ids=["bagging", "dpa", "finite-aggregation"],
)
def test_dask_backend_matches_local(client, digits, make):
    X_train, X_test, Y_train, Y_test = digits
    local = make().set_params(n_jobs=1).fit(X_train, Y_train)
    with distributed.get_task_stream(client) as stream, joblib.parallel_backend("dask"):
        remote = make().fit(X_train, Y_train)
        remote_proba = remote.predict_proba(X_test)  # vote counting on the cluster too
        remote_sizes = remote.certify(X_test, Y_test, np.arange(6)).sizes
    # the work really ran as tasks on the cluster's worker processes
    workers = {task["worker"] for task in stream.data}
    assert len(stream.data) >= 2 and workers <= set(client.scheduler_info()["workers"])
    np.testing.assert_array_equal(remote_proba, local.predict_proba(X_test))
    np.testing.assert_array_equal(remote_sizes, local.certify(X_test, Y_test, np.arange(6)).sizes)
    if isinstance(local, BaggingCertifiedClassifier):
        for a, b in zip(remote.estimators_samples_, local.estimators_samples_):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(remote.partitions_, local.partitions_)
