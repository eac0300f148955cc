"""CertificationResult: shapes, metrics, tables, plots, overlays and re-certification."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from sklearn_certify.bounds import clopper_pearson_bounds
from sklearn_certify.certificates import (
    bagging_certified_size,
    dpa_certified_size,
    gaussian_certified_size,
)
from sklearn_certify.results import CertificationResult, plot_certified_curves

plt.switch_backend("Agg")  # no display needed

N_DRAWS = 200


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _counts_and_labels(seed=0, n=12, c=5, kp=1, n_draws=N_DRAWS):
    """Counts of a random top-k' base model and labels; the last input has no label."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, c), dtype=int)
    counts = np.zeros((n, c), dtype=int)
    for i in range(n):
        if i < n - 1:
            Y[i, rng.choice(c, size=rng.integers(1, c), replace=False)] = 1
        w = rng.dirichlet(np.full(c, 0.3)) + 1e-9
        w[Y[i].astype(bool)] *= 5  # base model mostly right, so some sizes are > 0
        draws = np.argsort(-(np.log(w) + rng.gumbel(size=(n_draws, c))), axis=1)[:, :kp]
        counts[i] = np.bincount(draws.ravel(), minlength=c)
    return counts, Y


def _gaussian(radius=(0.0, 0.1, 0.25, 0.5), **overrides):
    counts, Y = _counts_and_labels(kp=overrides.get("k_prime", 1))
    kwargs = dict(
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=N_DRAWS,
        alpha=0.01,
        k_prime=1,
        sigma=0.5,
    )
    kwargs.update(overrides)
    return CertificationResult.from_counts(counts, Y, radius, **kwargs), counts, Y


def _bagging(radius=(0, 1, 2, 5), **overrides):
    counts, Y = _counts_and_labels(seed=1)
    kwargs = dict(
        certificate="bagging",
        k=2,
        method="poisoningguard",
        n_draws=N_DRAWS,
        alpha=0.01,
        k_base=1,
        n_train=500,
        max_samples=20,
        attack="modification",
    )
    kwargs.update(overrides)
    return CertificationResult.from_counts(counts, Y, radius, **kwargs), counts, Y


def _dpa(radius=(0, 1, 3, 10), **overrides):
    counts, Y = _counts_and_labels(seed=2, n_draws=50)
    kwargs = dict(certificate="dpa", k=2, method="poisoningguard", k_base=1, attack="modification")
    kwargs.update(overrides)
    return CertificationResult.from_counts(counts, Y, radius, **kwargs), counts, Y


# ---------------------------------------------------------------- shapes and metrics


@pytest.mark.parametrize("make", [_gaussian, _bagging, _dpa])
def test_sizes_and_radius_shapes(make):
    res, counts, Y = make()
    assert res.sizes.shape == (12, 4) and res.sizes.dtype == np.int64
    assert res.radius.shape == (4,)
    assert res.n_inputs == 12
    np.testing.assert_array_equal(res.n_true, Y.sum(axis=1))
    assert np.all(res.sizes >= 0) and np.all(res.sizes <= np.minimum(res.k, res.n_true)[:, None])
    assert np.all(np.diff(res.sizes, axis=1) <= 0)  # monotone in the radius
    assert res.sizes[:, 0].sum() > 0  # not trivially empty


@pytest.mark.parametrize("make", [_gaussian, _bagging, _dpa])
def test_scalar_radius_gives_one_column(make):
    res, _, _ = make(radius=0)
    assert res.sizes.shape == (12, 1) and res.radius.shape == (1,)
    assert res.precision().shape == (1,)


def test_sizes_equal_the_pure_functions():
    res, counts, Y = _gaussian()
    lower, upper = clopper_pearson_bounds(counts, N_DRAWS, 0.01)
    np.testing.assert_array_equal(res.lower, lower)
    np.testing.assert_array_equal(res.upper, upper)
    np.testing.assert_array_equal(res.counts, counts)
    np.testing.assert_array_equal(
        res.sizes,
        gaussian_certified_size(lower, upper, Y, k=2, k_prime=1, sigma=0.5, radius=res.radius),
    )
    res, counts, Y = _bagging()
    lower, upper = clopper_pearson_bounds(counts, N_DRAWS, 0.01)
    np.testing.assert_array_equal(
        res.sizes,
        bagging_certified_size(
            lower, upper, Y, k=2, k_base=1, n_train=500, max_samples=20, radius=res.radius
        ),
    )
    res, counts, Y = _dpa()
    assert res.lower is None and res.upper is None
    np.testing.assert_array_equal(
        res.sizes, dpa_certified_size(counts, Y, k=2, k_base=1, radius=res.radius)
    )


def test_metrics_equal_hand_computed_means():
    # 4 inputs; the last has no true label and is excluded from every mean.
    sizes = np.array([[2, 1], [1, 0], [1, 1], [0, 0]])
    n_true = np.array([3, 1, 2, 0])
    res = CertificationResult(sizes, [0.0, 0.5], k=2, n_true=n_true)
    np.testing.assert_allclose(
        res.precision(), [(2 / 2 + 1 / 2 + 1 / 2) / 3, (1 / 2 + 0 + 1 / 2) / 3]
    )
    np.testing.assert_allclose(res.recall(), [(2 / 3 + 1 / 1 + 1 / 2) / 3, (1 / 3 + 0 + 1 / 2) / 3])
    np.testing.assert_allclose(res.f1(), [(4 / 5 + 2 / 3 + 2 / 4) / 3, (2 / 5 + 0 + 2 / 4) / 3])


def test_metrics_from_counts_exclude_unlabelled_inputs():
    res, _, Y = _gaussian()
    keep = Y.sum(axis=1) > 0
    assert not keep.all()
    e, n_true = res.sizes[keep], res.n_true[keep][:, None]
    np.testing.assert_allclose(res.precision(), (e / 2).mean(axis=0))
    np.testing.assert_allclose(res.recall(), (e / n_true).mean(axis=0))
    np.testing.assert_allclose(res.f1(), (2 * e / (n_true + 2)).mean(axis=0))


def test_metrics_nan_without_any_label():
    res = CertificationResult([[0], [0]], [0.0], k=1, n_true=[0, 0])
    assert np.isnan(res.f1()).all() and np.isnan(res.precision()).all()


def test_radius_size_mismatch_raises():
    with pytest.raises(ValueError, match="radii"):
        CertificationResult(np.zeros((2, 3)), [0.0, 1.0], k=1, n_true=[1, 1])


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize("make, radius_name", [(_gaussian, "radius"), (_bagging, "T"), (_dpa, "T")])
def test_to_frame_one_row_per_radius(make, radius_name):
    res, _, _ = make()
    frame = res.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == res.radius.size
    assert {radius_name, "precision", "recall", "f1", "method", "k", "label"} <= set(frame)
    np.testing.assert_array_equal(frame[radius_name], res.radius)
    for metric in ("precision", "recall", "f1"):
        np.testing.assert_allclose(frame[metric], getattr(res, metric)())
    assert (frame["method"] == res.method).all() and (frame["k"] == 2).all()
    assert (frame["label"] == res.method).all()


def test_to_frame_label_and_concat():
    a, _, _ = _gaussian(label="sigma=0.5")
    b, _, _ = _gaussian(sigma=0.25, label="sigma=0.25")
    table = pd.concat([a.to_frame(), b.to_frame()], ignore_index=True)
    assert len(table) == 8
    assert table.groupby("label").size().to_dict() == {"sigma=0.5": 4, "sigma=0.25": 4}


# ---------------------------------------------------------------- plots


@pytest.mark.parametrize("make", [_gaussian, _dpa])
def test_plot_returns_three_axes_with_the_data(make):
    res, _, _ = make()
    axes = res.plot()
    assert len(axes) == 3
    for ax, metric in zip(axes, ("precision", "recall", "f1")):
        assert len(ax.lines) == 1
        x, y = ax.lines[0].get_data()
        np.testing.assert_allclose(x, res.radius)
        np.testing.assert_allclose(y, getattr(res, metric)())
        assert metric in ax.get_ylabel()
        assert ax.get_legend() is not None


def test_plot_into_given_axes_and_wrong_number():
    res, _, _ = _gaussian()
    fig, given = plt.subplots(3, 1)
    axes = res.plot(ax=given, label="mine", color="red")
    assert all(a is b for a, b in zip(axes, given))
    assert axes[0].lines[0].get_label() == "mine"
    assert axes[0].lines[0].get_color() == "red"
    _, two = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="3 Axes"):
        res.plot(ax=two)


def test_overlay_several_results_with_legend():
    results = [_gaussian(method=m)[0] for m in ("multiguard", "first-term", "jia")]
    axes = plot_certified_curves(results)
    for ax, metric in zip(axes, ("precision", "recall", "f1")):
        assert len(ax.lines) == 3
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["multiguard", "first-term", "jia"]
        for line, res in zip(ax.lines, results):
            np.testing.assert_allclose(line.get_ydata(), getattr(res, metric)())
    # explicit labels, and overlaying onto existing axes
    more = plot_certified_curves(results[:2], labels=["a", "b"], ax=axes)
    assert len(more[2].lines) == 5
    assert [t.get_text() for t in more[2].get_legend().get_texts()][-2:] == ["a", "b"]
    with pytest.raises(ValueError, match="labels"):
        plot_certified_curves(results, labels=["only one"])


# ---------------------------------------------------------------- re-certification


def _assert_same(a, b):
    np.testing.assert_array_equal(a.sizes, b.sizes)
    np.testing.assert_array_equal(a.radius, b.radius)
    assert a.k == b.k and a.method == b.method
    np.testing.assert_allclose(a.f1(), b.f1())


def test_recertify_defaults_reproduce():
    for make in (_gaussian, _bagging, _dpa):
        res, _, _ = make()
        _assert_same(res.recertify(), res)


@pytest.mark.parametrize(
    "options",
    [
        dict(radius=[0.0, 0.3, 1.0]),
        dict(radius=0.2, k=3),
        dict(alpha=0.2),
        dict(method="first-term"),
        dict(method="jia", k=1),
        dict(radius=[0.05, 0.1], k=1, alpha=0.05, method="first-term"),
    ],
)
def test_recertify_gaussian_equals_from_counts(options):
    res, counts, Y = _gaussian()
    options = dict(options)
    radius = options.pop("radius", res.radius)
    settings = dict(
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=N_DRAWS,
        alpha=0.01,
        k_prime=1,
        sigma=0.5,
    )
    settings.update(options)
    _assert_same(
        res.recertify(radius, **options),
        CertificationResult.from_counts(counts, Y, radius, **settings),
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(radius=[0, 3, 7]),
        dict(k=1),
        dict(alpha=0.1),
        dict(method="bagging"),
        dict(attack="deletion"),
        dict(attack="addition", k=3, radius=[0, 2]),
    ],
)
def test_recertify_bagging_equals_from_counts(options):
    res, counts, Y = _bagging()
    options = dict(options)
    radius = options.pop("radius", res.radius)
    settings = dict(
        certificate="bagging",
        k=2,
        method="poisoningguard",
        n_draws=N_DRAWS,
        alpha=0.01,
        k_base=1,
        n_train=500,
        max_samples=20,
        attack="modification",
    )
    settings.update(options)
    _assert_same(
        res.recertify(radius, **options),
        CertificationResult.from_counts(counts, Y, radius, **settings),
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(radius=[0, 2, 4, 6]),
        dict(k=3),
        dict(method="dpa"),
        dict(attack="deletion"),
        dict(attack="addition", k=1, method="dpa"),
    ],
)
def test_recertify_dpa_equals_from_counts(options):
    res, counts, Y = _dpa()
    options = dict(options)
    radius = options.pop("radius", res.radius)
    settings = dict(
        certificate="dpa", k=2, method="poisoningguard", k_base=1, attack="modification"
    )
    settings.update(options)
    _assert_same(
        res.recertify(radius, **options),
        CertificationResult.from_counts(counts, Y, radius, **settings),
    )


def test_recertify_changes_something():
    res, _, _ = _dpa()
    deletion = res.recertify(attack="deletion")
    # T~ = 2T for modification, T for deletion: deletion certifies at least as much.
    assert np.all(deletion.sizes >= res.sizes) and (deletion.sizes > res.sizes).any()
    wide = _gaussian()[0].recertify(alpha=0.3)
    assert np.all(wide.sizes >= _gaussian()[0].sizes)


def test_recertify_label_and_keeps_original():
    res, _, _ = _gaussian()
    before = res.sizes.copy()
    new = res.recertify([0.0, 2.0], label="wide")
    assert new.name == "wide" and new.to_frame()["label"].eq("wide").all()
    np.testing.assert_array_equal(res.sizes, before)
    assert res.radius.size == 4


def test_recertify_errors():
    res, _, _ = _dpa()
    with pytest.raises(TypeError, match="alpha"):
        res.recertify(alpha=0.01)
    bare = CertificationResult([[1]], [0.0], k=1, n_true=[1])
    with pytest.raises(ValueError, match="re-certified"):
        bare.recertify([0.5])
    gauss, _, _ = _gaussian()
    with pytest.raises(TypeError, match="unexpected"):
        gauss.recertify(attack="deletion")
    with pytest.raises(ValueError):
        gauss.recertify(method="no-such-method")


def test_from_counts_errors():
    counts, Y = _counts_and_labels()
    with pytest.raises(ValueError, match="certificate"):
        CertificationResult.from_counts(counts, Y, 0.0, certificate="laplace", k=1, method="x")
    with pytest.raises(TypeError, match="missing"):
        CertificationResult.from_counts(
            counts,
            Y,
            0.0,
            certificate="gaussian",
            k=1,
            method="multiguard",
            n_draws=N_DRAWS,
            alpha=0.01,
            sigma=0.5,
        )
    with pytest.raises(TypeError, match="n_draws"):
        CertificationResult.from_counts(
            counts, Y, 0.0, certificate="gaussian", k=1, method="multiguard", k_prime=1, sigma=0.5
        )


def test_repr():
    res, _, _ = _bagging()
    assert "poisoningguard" in repr(res) and "n_radii=4" in repr(res)


def test_recertify_refuses_to_change_how_the_counts_were_sampled():
    """sigma, k', k_b, n and m define the sampled classifier: changing them would
    certify a different classifier (e.g. a larger sigma certifies larger radii)."""
    import numpy as np

    from sklearn_certify.results import CertificationResult

    gauss = CertificationResult.from_counts(
        np.array([[900, 80, 20]]),
        np.array([[1, 0, 0]]),
        [1.0],
        certificate="gaussian",
        k=1,
        method="multiguard",
        n_draws=1000,
        alpha=0.001,
        k_prime=1,
        sigma=0.25,
    )
    for change in ({"sigma": 5.0}, {"k_prime": 2}):
        with pytest.raises(ValueError, match="sampled"):
            gauss.recertify(**change)
    assert gauss.recertify(sigma=0.25).sizes.tolist() == gauss.sizes.tolist()
    bag = CertificationResult.from_counts(
        np.array([[900, 80, 20]]),
        np.array([[1, 0, 0]]),
        [5],
        certificate="bagging",
        k=1,
        method="poisoningguard",
        n_draws=1000,
        alpha=0.001,
        k_base=1,
        n_train=1000,
        max_samples=100,
        attack="modification",
    )
    for change in ({"max_samples": 1}, {"n_train": 10**6}, {"k_base": 2}):
        with pytest.raises(ValueError, match="sampled"):
            bag.recertify(**change)
    assert bag.recertify(attack="deletion").params["attack"] == "deletion"


def test_from_counts_bounds_come_from_the_draws_used_per_input():
    """Counts of 100 draws with n_draws=1000 and n_draws_used=100 (no
    alpha_share) get the bounds of 100 draws (upper 0.578), not of 1000 (0.066)."""
    counts, Y = np.array([[40, 30, 20, 10]]), np.array([[1, 1, 0, 0]])
    kw = dict(certificate="gaussian", k=2, method="multiguard", alpha=0.001, k_prime=1, sigma=0.5)
    used = CertificationResult.from_counts(
        counts, Y, [0.0, 0.1], n_draws=1000, n_draws_used=[100], **kw
    )
    fixed = CertificationResult.from_counts(counts, Y, [0.0, 0.1], n_draws=100, **kw)
    assert used.upper[0, 0] == pytest.approx(0.5782, abs=1e-4)
    np.testing.assert_array_equal(used.lower, fixed.lower)
    np.testing.assert_array_equal(used.upper, fixed.upper)
    np.testing.assert_array_equal(used.sizes, fixed.sizes)
    assert used.n_draws_used.tolist() == [100] and used.alpha_share is None
    # per input, each row from its own draws; recertify keeps them
    two = CertificationResult.from_counts(
        np.array([[40, 30, 20, 10], [400, 300, 200, 100]]),
        np.array([[1, 1, 0, 0], [1, 1, 0, 0]]),
        0.0,
        n_draws=1000,
        n_draws_used=[100, 1000],
        **kw,
    )
    lower, upper = clopper_pearson_bounds(
        np.array([[40, 30, 20, 10], [400, 300, 200, 100]]), np.array([100, 1000]), 0.001
    )
    np.testing.assert_array_equal(two.upper, upper)
    np.testing.assert_array_equal(two.lower, lower)
    recertified = two.recertify(alpha=0.01)
    np.testing.assert_array_equal(
        recertified.upper, clopper_pearson_bounds(two.counts, np.array([100, 1000]), 0.01)[1]
    )
