"""A certificate is one module: its function and its CertificateSpec, in the registry.

A toy certificate registered in ``CERTIFICATES`` (and nowhere else) goes through
results, radii, tables, plots and files; the shared label ranking agrees with brute
force; every registered spec's counts layout is one its function reads.
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sklearn_certify import CertificationResult
from sklearn_certify.certificates import CERTIFICATES, CertificateSpec
from sklearn_certify.certificates._common import RankedLabels, finalize_sizes
from sklearn_certify.certificates._radius import RadiusSearch


# ------------------------------------------------------------- a toy certificate
def _margin_sizes_at(counts, Y, T, margin):
    """True labels whose count, less ``margin * T``, still beats every other label."""
    other_max = np.where(Y, -np.inf, counts).max(axis=1)
    beats = counts[:, :, None] - margin * T[:, None, :] > other_max[:, None, None]
    return (beats & Y[:, :, None].astype(bool)).sum(axis=1)


def margin_certified_size(counts, Y, *, k, radius, method="plain", margin=1):
    counts, Y = np.asarray(counts), np.asarray(Y)
    T = np.atleast_1d(np.asarray(radius))
    sizes = _margin_sizes_at(counts, Y, T[None, :], margin)
    return finalize_sizes(sizes, Y.sum(axis=1), k, Y.shape[1], np.ndim(radius) == 0)


def _margin_radius_search(Y, *, k, method, params, lower, upper, counts):
    counts = np.asarray(counts)

    def sizes_at(rows, T):
        return _margin_sizes_at(counts[rows], Y[rows], T[:, None], params["margin"])

    return RadiusSearch(sizes_at)


MARGIN = CertificateSpec(
    name="margin",
    function=margin_certified_size,
    methods=("plain",),
    sampled=False,
    radius_name="T",
    radius_label="T (toy)",
    poisoning=True,
    integer_radius=True,
    radius_search=_margin_radius_search,
    params=("margin",),
)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(CERTIFICATES, "margin", MARGIN)


def test_a_registered_certificate_works_through_results(registered, tmp_path):
    # 8 labels, k = 1: the trivial floor k - (8 - |L|) is 0 for |L| <= 7
    counts = np.array(
        [
            [10, 7, 3, 0, 0, 0, 0, 0],  # true 0 and 1; best other: 3
            [9, 2, 1, 1, 0, 0, 0, 4],  # true 0; best other: 4
            [1, 2, 5, 0, 0, 0, 0, 0],
        ]
    )  # true 0; other 2 wins
    Y = np.zeros((3, 8), dtype=int)
    Y[0, [0, 1]] = 1
    Y[1, 0] = 1
    Y[2, 0] = 1
    result = CertificationResult.from_counts(
        counts, Y, [0, 1, 2, 3], certificate="margin", k=1, method="plain", margin=2
    )
    # input 0: 10 - 2T > 3 until T = 3; input 1: 9 - 2T > 4 until T = 2; input 2: never
    assert result.sizes.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]]
    # largest T with 10 - 2T > 3 is 3, with 9 - 2T > 4 is 2
    assert result.certified_radius(1).tolist() == [3.0, 2.0, 0.0]
    assert result.recertify([0, 3], k=2).sizes.tolist() == [[2, 1], [1, 0], [0, 0]]
    assert result.recertify(k=2).certified_radius(2).tolist() == [1.0, 0.0, 0.0]
    assert list(result.to_frame())[0] == "T"
    path = tmp_path / "margin.npz"
    result.save(path)
    loaded = CertificationResult.load(path)
    np.testing.assert_array_equal(loaded.sizes, result.sizes)
    assert loaded.params == {"margin": 2}
    axes = result.plot()
    assert axes[0].get_xlabel() == "T (toy)"
    assert axes[0].lines[0].get_drawstyle() == "steps-post"  # an integer radius
    plt.close("all")
    # the spec's integer_radius is what load checks the radii against
    CertificationResult.from_counts(
        counts, Y, [0.5], certificate="margin", k=1, method="plain", margin=2
    ).save(tmp_path / "half.npz")
    with pytest.raises(ValueError, match="radius"):
        CertificationResult.load(tmp_path / "half.npz")


# ------------------------------------------------------------- the shared ranking
def test_ranked_labels_windows_equal_brute_force():
    rng = np.random.default_rng(3)
    values_true, values_other = rng.random((6, 5)), rng.random((6, 5))
    Y = rng.random((6, 5)) < 0.5
    Y[0] = False
    Y[1] = True
    ranked = RankedLabels(values_true, values_other, Y)
    for i in range(6):
        a = sorted(values_true[i, Y[i]], reverse=True)
        b = sorted(values_other[i, ~Y[i]], reverse=True) + [0.0] * 10  # absent: 0
        assert ranked.n_true[i] == len(a)
        for first, width in itertools.product(range(1, 6), range(1, 6)):
            expected = sum(a[first - 1 : first - 1 + width])
            assert ranked.true_window(first, width)[i] == pytest.approx(expected, abs=1e-12)
        for position in range(1, 6):
            assert ranked.true_at(position)[i] == (a[position - 1] if position <= len(a) else 0.0)
        for last, width in itertools.product(range(1, 8), range(1, 8)):
            if width > last:
                continue
            expected = sum(b[last - width : last])
            assert ranked.other_window(last, width)[i] == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------- counts layouts
@pytest.mark.parametrize("name", sorted(CERTIFICATES))
def test_every_method_reads_empty_counts_of_its_own_layout(name):
    spec = CERTIFICATES[name]
    params = {
        "k_prime": 2,
        "sigma": 0.5,
        "k_base": 2,
        "n_train": 100,
        "max_samples": 10,
        "attack": "deletion",
    }
    params = {key: params[key] for key in spec.params}
    labels = np.zeros((0, 6), dtype=np.int64)
    for method in spec.methods:
        layout = spec.counts_layout(method)
        counts = spec.empty_counts(method, params, 6)
        assert counts.ndim == {"label-counts": 2, "model-votes": 3}[layout]
        if spec.sampled:
            assert layout == "label-counts"
            continue
        sizes = spec.function(counts, labels, k=2, radius=[0, 1], method=method, **params)
        assert sizes.shape == (0, 2)


def test_finite_aggregation_keeps_model_votes():
    dpa = CERTIFICATES["dpa"]
    assert [dpa.counts_layout(m) for m in dpa.methods] == [
        "label-counts",
        "label-counts",
        "model-votes",
    ]
    assert dpa.empty_counts("finite-aggregation", {"k_base": 2, "spread": 3}, 6).shape == (0, 3, 2)
    assert [CERTIFICATES[n].poisoning for n in ("gaussian", "bagging", "dpa")] == [
        False,
        True,
        True,
    ]
    assert [CERTIFICATES[n].integer_radius for n in ("gaussian", "bagging", "dpa")] == [
        False,
        True,
        True,
    ]
