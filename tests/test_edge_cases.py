"""Inputs and edge cases that must give a correct result or the library's own error.

Each test here checks the behaviour itself (results equal, bounds valid, the error names
the inputs); the one-line "raises and names the parameter" rows are in
``tests/test_validation.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify._utils._validation import check_tensor_inputs
from sklearn_certify.bounds import MIN_LEVEL, clopper_pearson_bounds
from sklearn_certify.metrics import certified_scorer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 4))
Y = (RNG.random((24, 3)) < 0.5).astype(np.int64)
Y[:2] = [[1, 0, 1], [0, 1, 0]]


# ----------------------------------------------------------------- tensors: finite, on device
class _NoHostTensor:
    """Duck-typed tensor whose finiteness can be asked but that refuses host copies."""

    ndim = 2

    def __init__(self, finite: bool):
        self.finite = finite

    def __len__(self):
        return 3

    def is_floating_point(self):
        return True

    def is_complex(self):
        return False

    def isfinite(self):
        return self

    def all(self):
        return torch.tensor(self.finite)  # the one-element answer

    def cpu(self):
        raise AssertionError("copied to the host")

    numpy = __array__ = cpu


def test_tensor_finiteness_is_checked_without_copying_to_host():
    assert isinstance(check_tensor_inputs(_NoHostTensor(True)), _NoHostTensor)
    with pytest.raises(ValueError, match=r"\bX\b.*NaN or infinity"):
        check_tensor_inputs(_NoHostTensor(False))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tensors_are_refused_at_fit_and_prediction(bad):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    Xt = torch.tensor(X, dtype=torch.float32)
    Xbad = Xt.clone()
    Xbad[1, 2] = bad
    clf = SmoothedMultiLabelClassifier(net, k=2, n_draws=8, train_noise=False, random_state=0)
    with pytest.raises(ValueError, match=r"\bX\b"):
        clf.fit(Xbad, Y)
    clf.fit(Xt, Y)
    for method, args in [
        ("predict", (Xbad,)),
        ("predict_proba", (Xbad,)),
        ("certify", (Xbad, Y, 0.01)),
        ("score", (Xbad, Y)),
    ]:
        with pytest.raises(ValueError, match=r"\bX\b"):
            getattr(clf, method)(*args)
    # Integer tensors are finite by construction and pass.
    assert clf.predict_proba(Xt.to(torch.int64)).shape == (len(X), 3)


def test_nan_training_tensor_never_reaches_a_skorch_net():
    from sklearn_certify.nets import MultiLabelNet

    Xt = torch.tensor(X, dtype=torch.float32)
    Xt[0, 0] = float("nan")
    net = MultiLabelNet(max_epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"\bX\b"):
        SmoothedMultiLabelClassifier(net, k=2, n_draws=8).fit(Xt, Y)
    assert not hasattr(net, "module_")


def test_ensembles_read_tensors_as_arrays():
    Xt = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    model = DPACertifiedClassifier(n_partitions=3, k=2).fit(Xt, Y)
    reference = DPACertifiedClassifier(n_partitions=3, k=2).fit(X.astype(np.float32), Y)
    np.testing.assert_array_equal(
        model.predict_proba(Xt), reference.predict_proba(X.astype(np.float32))
    )


# ---------------------------------------------------------------------- any numpy view works
def _views(A):
    return {
        "reversed": A[::-1],
        "strided": A[::2],
        "fortran": np.asfortranarray(A),
        "reversed-columns": A[:, ::-1],
        "big-endian": A.astype(A.dtype.newbyteorder(">")),
    }


@pytest.mark.parametrize("base", ["torch", "generic", "dpa"])
def test_views_give_the_same_results_as_contiguous_copies(base):
    if base == "torch":
        torch.manual_seed(0)
        model = SmoothedMultiLabelClassifier(
            torch.nn.Linear(4, 3), k=2, n_draws=32, train_noise=False, random_state=0
        ).fit(X, Y)
    elif base == "generic":
        model = SmoothedMultiLabelClassifier(
            RidgeClassifier(), k=2, n_draws=32, random_state=0
        ).fit(X, Y)
    else:
        model = DPACertifiedClassifier(n_partitions=5, k=2).fit(X[::-1], Y[::-1])
    for name, view in _views(X).items():
        copy = np.ascontiguousarray(view, dtype=np.float64)
        np.testing.assert_array_equal(
            model.predict_proba(view), model.predict_proba(copy), err_msg=name
        )
    fitted_on_view = DPACertifiedClassifier(n_partitions=5, k=2).fit(np.asfortranarray(X), Y)
    fitted_on_copy = DPACertifiedClassifier(n_partitions=5, k=2).fit(X.copy(), Y)
    np.testing.assert_array_equal(fitted_on_view.predict_proba(X), fitted_on_copy.predict_proba(X))


# ------------------------------------------------------------- Clopper-Pearson at tiny alpha
def _log_tails(counts, n, lower, upper):
    """log P(Bin(n, lower) >= x) and log P(Bin(n, upper) <= x), where defined."""
    with np.errstate(divide="ignore"):
        log_lower_tail = np.where(counts > 0, binom.logsf(counts - 1, n, lower), -np.inf)
        log_upper_tail = np.where(counts < n, binom.logcdf(counts, n, upper), -np.inf)
    return log_lower_tail, log_upper_tail


def test_clopper_pearson_at_a_tiny_alpha_and_a_count_near_zero():
    """2 of 1000 at alpha=2e-100 (2 labels): the quantile alone gave a tail 21.7x too big."""
    lower, upper = clopper_pearson_bounds([[2, 998]], 1000, 2e-100)
    level = 1e-100
    # Exact closed form near 0: P(Bin(n, p) >= 2) = C(n, 2) p^2 (1 + O(np)).
    assert lower[0, 0] == pytest.approx(np.sqrt(level / (1000 * 999 / 2)), rel=1e-6)
    lo_tail, up_tail = _log_tails(np.array([2, 998]), 1000, lower[0], upper[0])
    assert np.all(lo_tail <= np.log(level)) and np.all(up_tail <= np.log(level))
    # ... and tight: within a relative 1e-6 of the level where the tail is defined.
    assert lo_tail[0] >= np.log(level) - 1e-6 and up_tail[0] >= np.log(level) - 1e-6


@pytest.mark.parametrize(
    "n, alpha",
    [(1000, 1e-3), (1000, 2e-100), (50, 1e-250), (100_000, 1e-30), (7, 0.5), (3, 1e-280)],
)
def test_clopper_pearson_tails_hold_at_every_accepted_alpha(n, alpha):
    rng = np.random.default_rng(n)
    counts = rng.integers(0, n + 1, size=(40, 5))
    counts[0] = [0, 1, 2, n - 1, n]
    lower, upper = clopper_pearson_bounds(counts, n, alpha)
    level = alpha / 5
    lo_tail, up_tail = _log_tails(counts, n, lower, upper)
    assert np.all(lo_tail <= np.log(level)) and np.all(up_tail <= np.log(level))
    # Not conservative beyond the safety margin: the tails sit at the level, wherever
    # float64 resolves the bound (an upper bound within 1e-6 of 1 moves in steps of
    # 1.1e-16, which shift its tail by whole percents; 999 of 1000 at 1e-100 even needs
    # 1 - 1e-103).
    assert np.all(lo_tail[(lower > 0) & (counts > 0)] >= np.log(level) - 1e-3)
    assert np.all(up_tail[(upper < 1 - 1e-6) & (counts < n)] >= np.log(level) - 1e-3)
    assert np.all((lower <= counts / n) & (counts / n <= upper))


def test_clopper_pearson_refuses_alpha_below_its_floor():
    counts = np.array([[1, 2, 3]])
    clopper_pearson_bounds(counts, 10, 3 * MIN_LEVEL)  # the smallest accepted
    with pytest.raises(ValueError, match=r"alpha=.*alpha must be at least 3e-300"):
        clopper_pearson_bounds(counts, 10, 2 * MIN_LEVEL)
    # Exact at x = n, tiny level included: lower = level^(1/n).
    lower, _ = clopper_pearson_bounds([[5, 0, 0]], 5, 3e-200)
    assert lower[0, 0] == pytest.approx(np.exp(np.log(1e-200) / 5), rel=1e-6)


# --------------------------------------------------------------------- one-vs-one SVC scores
def test_one_vs_one_decision_function_is_refused():
    y = RNG.integers(0, 3, len(X))
    with pytest.raises(ValueError, match="decision_function_shape"):
        SmoothedMultiLabelClassifier(SVC(decision_function_shape="ovo"), k=1, n_draws=8).fit(X, y)
    # The default one-vs-rest shape gives one score per class: accepted, and the smoothed
    # classifier at tiny noise agrees with the base model.
    clf = SmoothedMultiLabelClassifier(SVC(), sigma=1e-6, k=1, n_draws=8, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), clf.estimator_.predict(X))
    # With two classes a one-vs-one decision function has one column, as one-vs-rest.
    y2 = (X[:, 0] > 0).astype(int)
    clf2 = SmoothedMultiLabelClassifier(
        SVC(decision_function_shape="ovo"), sigma=1e-6, k=1, n_draws=8, random_state=0
    ).fit(X, y2)
    np.testing.assert_array_equal(clf2.predict(X), clf2.estimator_.predict(X))


# ------------------------------------------------------------------- NaN scores are refused
X_NAN_AT = np.abs(X) + 0.5
X_NAN_AT[[3, 7, 20], 0] *= -1  # these inputs get NaN scores at label 1, under any tiny noise


class _NaNModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        out = self.linear(x)
        out[:, 1] = torch.where(x[:, 0] < 0, torch.nan, out[:, 1])
        return out


class _NaNRidge(RidgeClassifier):
    def decision_function(self, X):
        scores = super().decision_function(X)
        scores[np.asarray(X)[:, 0] < 0, 1] = np.nan
        return scores


@pytest.mark.parametrize("base", ["torch", "generic"])
def test_nan_scores_raise_naming_inputs_and_labels(base):
    model = _NaNModule() if base == "torch" else _NaNRidge()
    # 24 inputs, a chunk of (2 * 32) // 8 = 8 inputs: the first chunk holds 3 and 7.
    clf = SmoothedMultiLabelClassifier(
        model, sigma=1e-3, k=2, n_draws=8, batch_size=2, train_noise=False, random_state=0
    ).fit(X_NAN_AT[:3], Y[:3])
    with pytest.raises(
        ValueError,
        match=r"NaN scores.*input\(s\) \[3(, 7)?\] at label\(s\) "
        r"\[1\]",
    ):
        clf.predict_proba(X_NAN_AT)
    assert clf.predict_proba(np.abs(X_NAN_AT)).shape == (len(X), 3)


def test_nan_scores_of_ensemble_base_models_raise():
    model = DPACertifiedClassifier(_NaNRidge(), n_partitions=3, k=2).fit(np.abs(X), Y)
    with pytest.raises(
        ValueError,
        match=r"NaN scores.*input\(s\) \[3, 7, 20\] at "
        r"label\(s\) \[1\]",
    ):
        model.predict(X_NAN_AT)


def test_nan_scores_of_vectorised_heads_raise():
    from sklearn_certify.heads import LinearHead

    model = BaggingCertifiedClassifier(
        LinearHead(), n_estimators=6, max_samples=12, k=2, random_state=0
    ).fit(X, Y)
    heads = getattr(model, "stacked_models_", None)
    if heads is None:
        pytest.skip("LinearHead base models are not trained as one batched program here")
    heads.params_[0][4, 0, 1] = float("nan")  # model 4: label 1 depends on feature 0
    with pytest.raises(ValueError, match=r"base model\(s\) \[4\].*label\(s\) \[1\]"):
        model.predict(X)


# ---------------------------------------------- a certified scorer's radius on an ensemble
def test_non_integer_radius_on_an_ensemble_stops_a_grid_search_with_error_score_raise():
    search = GridSearchCV(
        DPACertifiedClassifier(n_partitions=3),
        {"k": [1, 2]},
        scoring=certified_scorer("f1", radius=0.5),
        cv=2,
        error_score="raise",
    )
    with pytest.raises(ValueError, match=r"radius=0\.5.*DPACertifiedClassifier"):
        search.fit(X, Y)


def test_non_integer_radius_on_an_ensemble_is_a_named_nan_with_the_default_error_score():
    search = GridSearchCV(
        DPACertifiedClassifier(n_partitions=3),
        {"k": [1, 2]},
        scoring=certified_scorer("f1", radius=0.5),
        cv=2,
        refit=False,
    )
    with (
        pytest.warns(UserWarning, match="test scores are non-finite"),
        pytest.warns(UserWarning, match=r"Scoring failed(.|\n)*radius=0\.5"),
    ):
        search.fit(X, Y)
    assert np.isnan(search.cv_results_["mean_test_score"]).all()


def test_integer_radius_on_an_ensemble_and_real_radius_on_smoothing_still_score():
    search = GridSearchCV(
        DPACertifiedClassifier(n_partitions=3),
        {"k": [1, 2]},
        scoring=certified_scorer("f1", radius=1.0),
        cv=2,
    ).fit(X, Y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    smoother = SmoothedMultiLabelClassifier(RidgeClassifier(), n_draws=16, random_state=0)
    search = GridSearchCV(
        smoother, {"k": [1, 2]}, scoring=certified_scorer("f1", radius=0.1), cv=2
    ).fit(X, Y)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_a_direct_call_with_a_non_integer_radius_raises_naming_radius():
    model = DPACertifiedClassifier(n_partitions=3, k=1).fit(X, Y)
    with pytest.raises(ValueError, match="radius=0.5"):
        certified_scorer("f1", radius=0.5)(model, X, Y)
