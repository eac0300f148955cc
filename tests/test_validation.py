"""Every public entry point rejects bad input with a clear error.

One table: each row is (entry point, bad input) -> the exception types allowed and a
regex the message must match (the parameter's name). ``ValueError`` / ``TypeError``
(sklearn's ``InvalidParameterError`` is both) for bad values, ``NotFittedError`` for use
before ``fit``. Every row passes: there is no known gap.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from sklearn_certify import (
    BaggingCertifiedClassifier,
    CertificationResult,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.bounds import clopper_pearson_bounds, draws_for_radius
from sklearn_certify.certificates import (
    bagging_certified_size,
    dpa_certified_size,
    gaussian_certified_size,
)
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import (
    certified_f1_score,
    certified_precision_score,
    certified_recall_score,
    certified_scorer,
)

N_CLASSES = 3
BAD = (ValueError, TypeError)


# ------------------------------------------------------------------------------ data
def _data(n=30):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    Y = (rng.random((n, N_CLASSES)) < 0.5).astype(np.int64)
    Y[:2] = [[1, 0, 1], [0, 1, 0]]  # every column takes both values
    return X, Y


X, Y = _data()
X_NAN = X.copy()
X_NAN[1, 2] = np.nan
X_INF = X.copy()
X_INF[0, 0] = np.inf


def _smoothing(estimator=None, **params):
    return SmoothedMultiLabelClassifier(
        RidgeClassifier() if estimator is None else estimator,
        **{"sigma": 0.25, "k": 2, "n_draws": 16, "random_state": 0, **params},
    )


def _bagging(**params):
    return BaggingCertifiedClassifier(
        **{"n_estimators": 4, "max_samples": 10, "k": 2, "random_state": 0, **params}
    )


def _dpa(**params):
    return DPACertifiedClassifier(**{"n_partitions": 3, "k": 2, **params})


MAKERS = {"smoothing": _smoothing, "bagging": _bagging, "dpa": _dpa}


@functools.cache
def fitted(name):
    return MAKERS[name]().fit(X, Y)


# ----------------------------------------------------------------------------- table
CASES = []  # (id, thunk, exceptions, match, marks)


def case(id_, thunk, match, exc=BAD, marks=()):
    CASES.append(pytest.param(thunk, exc, match, id=id_, marks=marks))


# clopper_pearson_bounds(counts, n_draws, alpha)
CP_COUNTS = np.array([[3, 5, 0]])
for alpha in (0.0, 1.0, -0.1, 1.5, np.nan):
    case(
        f"cp-alpha={alpha}",
        functools.partial(clopper_pearson_bounds, CP_COUNTS, 10, alpha),
        "alpha",
    )
case("cp-alpha-str", lambda: clopper_pearson_bounds(CP_COUNTS, 10, "0.1"), "alpha")
case("cp-counts-nan", lambda: clopper_pearson_bounds([[np.nan, 1.0]], 10, 0.1), "counts")
case("cp-counts-inf", lambda: clopper_pearson_bounds([[np.inf, 1.0]], 10, 0.1), "counts")
case("cp-counts-1d", lambda: clopper_pearson_bounds([3, 5], 10, 0.1), "counts")
case("cp-counts-3d", lambda: clopper_pearson_bounds([[[3, 5]]], 10, 0.1), "counts")
case("cp-counts-negative", lambda: clopper_pearson_bounds([[-1, 5]], 10, 0.1), "counts")
case("cp-counts-fractional", lambda: clopper_pearson_bounds([[1.5, 5]], 10, 0.1), "counts")
case("cp-counts-above-n", lambda: clopper_pearson_bounds([[11, 5]], 10, 0.1), "counts")
case("cp-counts-str", lambda: clopper_pearson_bounds([["a", "b"]], 10, 0.1), "counts")
case("cp-n_draws=0", lambda: clopper_pearson_bounds([[0, 0]], 0, 0.1), "n_draws")
case("cp-n_draws=1.5", lambda: clopper_pearson_bounds([[0, 0]], 1.5, 0.1), "n_draws")
case("cp-n_draws-shape", lambda: clopper_pearson_bounds([[0, 0]], [5, 5], 0.1), "n_draws")

# gaussian_certified_size(lower, upper, Y, *, k, k_prime, sigma, radius, method)
LO = np.array([[0.8, 0.1, 0.0]])
UP = np.array([[0.9, 0.2, 0.1]])
YL = np.array([[1, 0, 0]])
G_OK = dict(lower=LO, upper=UP, Y=YL, k=1, k_prime=1, sigma=0.5, radius=0.1)


def _gaussian(**kw):
    return functools.partial(gaussian_certified_size, **{**G_OK, **kw})


case("gauss-lower>upper", _gaussian(lower=UP, upper=LO), "lower")
case("gauss-lower-nan", _gaussian(lower=LO * np.nan), "lower")
case("gauss-upper-inf", _gaussian(upper=UP + np.inf), "upper")
case("gauss-bounds-1d", _gaussian(lower=LO[0], upper=UP[0]), "lower")
case("gauss-upper>1", _gaussian(upper=UP + 1), "upper")
case("gauss-lower<0", _gaussian(lower=LO - 1), "lower")
case("gauss-Y-not-01", _gaussian(Y=YL * 2), r"\bY\b")
case("gauss-Y-columns", _gaussian(Y=[[1, 0]]), r"\bY\b")
case("gauss-Y-1d", _gaussian(Y=[1, 0, 0]), r"\bY\b")
for k in (0, N_CLASSES + 1):
    case(f"gauss-k={k}", _gaussian(k=k), r"\bk\b")
case("gauss-k-float", _gaussian(k=1.0), r"\bk\b")
for k_prime in (0, N_CLASSES + 1):
    case(f"gauss-k_prime={k_prime}", _gaussian(k_prime=k_prime), "k_prime")
for sigma in (0.0, -1.0, np.nan, np.inf):
    case(f"gauss-sigma={sigma}", _gaussian(sigma=sigma), "sigma")
case("gauss-radius-negative", _gaussian(radius=-0.1), "radius")
case("gauss-radius-negative-in-array", _gaussian(radius=[0.0, -1.0]), "radius")
case("gauss-radius-nan", _gaussian(radius=np.nan), "radius")
case("gauss-radius-2d", _gaussian(radius=[[0.1]]), "radius")
case("gauss-radius-str", _gaussian(radius="a"), "radius")
case("gauss-method", _gaussian(method="cohen"), "method")
case("gauss-jia-needs-k_prime-1", _gaussian(method="jia", k_prime=2), "k_prime")

# bagging_certified_size(lower, upper, Y, *, k, k_base, n_train, max_samples, radius, ...)
B_OK = dict(lower=LO, upper=UP, Y=YL, k=1, k_base=1, n_train=100, max_samples=10, radius=1)


def _bag_size(**kw):
    return functools.partial(bagging_certified_size, **{**B_OK, **kw})


case("bagsize-lower>upper", _bag_size(lower=UP, upper=LO), "lower")
case("bagsize-lower-nan", _bag_size(lower=LO * np.nan), "lower")
case("bagsize-Y-not-01", _bag_size(Y=YL * 0.5), r"\bY\b")
for k in (0, N_CLASSES + 1):
    case(f"bagsize-k={k}", _bag_size(k=k), r"\bk\b")
for k_base in (0, N_CLASSES + 1):
    case(f"bagsize-k_base={k_base}", _bag_size(k_base=k_base), "k_base")
case("bagsize-n_train=0", _bag_size(n_train=0), "n_train")
case("bagsize-max_samples=0", _bag_size(max_samples=0), "max_samples")
case("bagsize-max_samples-float", _bag_size(max_samples=0.5), "max_samples")
case("bagsize-T-fractional", _bag_size(radius=1.5), "radius")
case("bagsize-T-fractional-in-array", _bag_size(radius=[0, 1, 2.5]), "radius")
case("bagsize-T-negative", _bag_size(radius=-1), "radius")
case("bagsize-T-inf", _bag_size(radius=np.inf), "radius")
case("bagsize-attack", _bag_size(attack="flip"), "attack")
case("bagsize-method", _bag_size(method="dpa"), "method")

# dpa_certified_size(counts, Y, *, k, k_base, radius, attack, method)
D_OK = dict(counts=[[10, 3, 1]], Y=YL, k=1, k_base=1, radius=1)


def _dpa_size(**kw):
    return functools.partial(dpa_certified_size, **{**D_OK, **kw})


case("dpasize-counts-negative", _dpa_size(counts=[[-1, 3, 1]]), "counts")
case("dpasize-counts-fractional", _dpa_size(counts=[[1.5, 3, 1]]), "counts")
case("dpasize-counts-nan", _dpa_size(counts=[[np.nan, 3, 1]]), "counts")
case("dpasize-counts-str", _dpa_size(counts=[["a", "b", "c"]]), "counts")
case("dpasize-counts-shape", _dpa_size(counts=[[1, 3]]), "counts")
case("dpasize-Y-not-01", _dpa_size(Y=YL * 2), r"\bY\b")
case("dpasize-1d", _dpa_size(counts=[10, 3, 1], Y=[1, 0, 0]), r"\bY\b|counts")
for k in (0, N_CLASSES + 1):
    case(f"dpasize-k={k}", _dpa_size(k=k), r"\bk\b")
for k_base in (0, N_CLASSES + 1):
    case(f"dpasize-k_base={k_base}", _dpa_size(k_base=k_base), "k_base")
case("dpasize-T-fractional", _dpa_size(radius=0.5), "radius")
case("dpasize-T-negative", _dpa_size(radius=[-2]), "radius")
case("dpasize-attack", _dpa_size(attack="label-flip"), "attack")
case("dpasize-method", _dpa_size(method="bagging"), "method")

# certified_*_score(Y_true, sizes, k) and certified_scorer(metric, radius, **options)
YT = np.array([[1, 1, 0], [0, 0, 1]])
for score in (certified_precision_score, certified_recall_score, certified_f1_score):
    name = score.__name__.split("_")[1]
    case(f"{name}-Y_true-not-01", functools.partial(score, YT * 2, [1, 1], k=2), "Y_true")
    case(f"{name}-Y_true-1d", functools.partial(score, [1, 0], [1, 1], k=2), "Y_true")
    case(f"{name}-k=0", functools.partial(score, YT, [1, 1], k=0), r"\bk\b")
    case(f"{name}-k-float", functools.partial(score, YT, [1, 1], k=2.0), r"\bk\b")
    case(f"{name}-sizes-length", functools.partial(score, YT, [1, 1, 1], k=2), "sizes")
case("f1-k>n_classes", functools.partial(certified_f1_score, YT, [1, 1], k=N_CLASSES + 1), r"\bk\b")
case("recall-sizes-negative", functools.partial(certified_recall_score, YT, [-1, 1], k=2), "sizes")
case(
    "recall-sizes-above-min(k,|L|)",
    functools.partial(certified_recall_score, YT, [5, 1], k=2),
    "sizes",
)
case("recall-sizes-nan", functools.partial(certified_recall_score, YT, [np.nan, 1], k=2), "sizes")
case("scorer-metric", lambda: certified_scorer("accuracy"), "metric")
case("scorer-radius-negative", lambda: certified_scorer("f1", radius=-0.5), "radius")
case("scorer-radius-str", lambda: certified_scorer("f1", radius="0.5"), "radius")
case("scorer-radius-nan", lambda: certified_scorer("f1", radius=np.nan), "radius")
case("scorer-radius-inf", lambda: certified_scorer("f1", radius=np.inf), "radius")
case(
    "scorer-unknown-method-at-call",
    lambda: certified_scorer("f1", 0.1, method="cohen")(fitted("smoothing"), X, Y),
    "method",
)
case(
    "scorer-unknown-attack-at-call",
    lambda: certified_scorer("f1", 1, attack="flip")(fitted("dpa"), X, Y),
    "attack",
)

# make_multidigit(n_train, n_test, *, grid, empty_prob, source_test_size, ...)
for kw, match in [
    (dict(n_train=0), "n_train"),
    (dict(n_train=2.5), "n_train"),
    (dict(n_test=-1), "n_test"),
    (dict(grid=0), "grid"),
    (dict(grid=(2, -1)), "grid"),
    (dict(grid=(1, 2, 3)), "grid"),
    (dict(grid="ab"), "grid"),
    (dict(empty_prob=1.0), "empty_prob"),
    (dict(empty_prob=-0.1), "empty_prob"),
    (dict(empty_prob=np.nan), "empty_prob"),
    (dict(source_test_size=0.0), "source_test_size"),
    (dict(source_test_size=1.0), "source_test_size"),
]:
    key = ",".join(f"{k}={v}" for k, v in kw.items())
    case(
        f"multidigit-{key}",
        functools.partial(make_multidigit, **{"n_train": 5, "n_test": 5, **kw}),
        match,
    )
case(
    "multidigit-empty_prob-str",
    functools.partial(make_multidigit, 5, 5, empty_prob="a"),
    "empty_prob",
)
case(
    "multidigit-source_test_size-str",
    functools.partial(make_multidigit, 5, 5, source_test_size="a"),
    "source_test_size",
)

# The three estimators: constructor parameters (checked at fit) ...
PARAM_CASES = {
    "smoothing": [
        ("k", 0),
        ("k", N_CLASSES + 1),
        ("k", 1.5),
        ("k_prime", 0),
        ("k_prime", N_CLASSES + 1),
        ("sigma", 0.0),
        ("sigma", -0.5),
        ("sigma", np.nan),
        ("sigma", np.inf),
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("alpha", -0.1),
        ("alpha", 2.0),
        ("alpha", np.nan),
        ("n_draws", 0),
        ("n_draws", -3),
        ("n_draws", 2.5),
        ("method", "cohen"),
        ("batch_size", 0),
        ("estimator", "ridge"),
    ],
    "bagging": [
        ("k", 0),
        ("k", N_CLASSES + 1),
        ("k_base", 0),
        ("k_base", N_CLASSES + 1),
        ("n_estimators", 0),
        ("n_estimators", -1),
        ("n_estimators", 2.5),
        ("max_samples", 0),
        ("max_samples", -1),
        ("max_samples", 0.0),
        ("max_samples", 1.5),
        ("max_samples", -0.5),
        ("max_samples", np.nan),
        ("max_samples", "all"),
        ("alpha", 0.0),
        ("alpha", 1.0),
        ("alpha", 1.5),
        ("method", "dpa"),
        ("estimator", object()),
    ],
    "dpa": [
        ("k", 0),
        ("k", N_CLASSES + 1),
        ("k_base", 0),
        ("k_base", N_CLASSES + 1),
        ("n_partitions", 0),
        ("n_partitions", -2),
        ("n_partitions", 2.5),
        ("method", "bagging"),
        ("estimator", object()),
    ],
}
for est, rows in PARAM_CASES.items():
    for param, value in rows:
        shown = type(value).__name__ if type(value) is object else repr(value)
        case(
            f"{est}-fit-{param}={shown}",
            lambda est=est, param=param, value=value: MAKERS[est](**{param: value}).fit(X, Y),
            rf"\b{param}\b",
        )
case(
    "smoothing-fit-jia-k_prime=2", lambda: _smoothing(method="jia", k_prime=2).fit(X, Y), "k_prime"
)

# ... fit data ...
for est in MAKERS:
    make = MAKERS[est]
    ens = est != "smoothing"
    fit_rows = [
        ("X-nan", X_NAN, Y, r"\bX\b", ()),
        ("X-inf", X_INF, Y, r"\bX\b", ()),
        ("X-1d", X[:, 0], Y, r"\bX\b", ()),
        ("X-str", X.astype(str), Y, r"\bX\b", ()),
        ("X-0-rows", X[:0], Y[:0], r"\bX\b", ()),
        ("Y-values-2", X, Y * 2, r"\b[Yy]\b", ()),
        ("Y-values-0.5", X, Y * 0.5, r"\b[Yy]\b", ()),
        ("Y-nan", X, np.where(Y == 1, np.nan, 0.0), r"\b[Yy]\b", ()),
        ("Y-3d", X, Y[:, :, None], r"\b[Yy]\b", ()),
        ("Y-rows", X, Y[:-1], r"\b[Yy]\b", ()),
        ("y-one-class", X, np.zeros(len(X)), r"\b[Yy]\b", ()),
    ]
    for name, Xb, Yb, match, marks in fit_rows:
        case(
            f"{est}-fit-{name}",
            lambda make=make, Xb=Xb, Yb=Yb: make().fit(Xb, Yb),
            match,
            marks=marks,
        )

# ... use before fit ...
for est in MAKERS:
    for method, args in [
        ("predict", (X,)),
        ("predict_proba", (X,)),
        ("certify", (X, Y, 0)),
        ("score", (X, Y)),
    ]:
        case(
            f"{est}-unfitted-{method}",
            lambda est=est, method=method, args=args: getattr(MAKERS[est](), method)(*args),
            "not fitted",
            exc=NotFittedError,
        )

# ... and predict / certify on a fitted estimator.
for est in MAKERS:
    ens = est != "smoothing"
    X3 = X[:3]
    Y3 = Y[:3]
    rows = [
        ("predict-X-nan", "predict", (X_NAN,), {}, r"\bX\b"),
        ("predict-X-inf", "predict_proba", (X_INF,), {}, r"\bX\b"),
        ("predict-X-1d", "predict", (X[0],), {}, r"\bX\b"),
        ("predict-X-features", "predict", (np.ones((2, 5)),), {}, r"\bX\b"),
        ("predict-X-3d", "predict", (X3[:, :, None],), {}, r"\bX\b"),
        ("certify-X-nan", "certify", (X_NAN[:3], Y3, 0), {}, r"\bX\b"),
        ("certify-Y-more-columns", "certify", (X3, np.c_[Y3, Y3[:, :1]], 0), {}, r"\bY\b"),
        ("certify-Y-fewer-columns", "certify", (X3, Y3[:, :2], 0), {}, r"\bY\b"),
        ("certify-Y-not-01", "certify", (X3, Y3 * 2, 0), {}, r"\bY\b"),
        ("certify-Y-1d", "certify", (X3, Y3[:, 0], 0), {}, r"\b[Yy]\b"),
        ("certify-Y-3d", "certify", (X3, Y3[:, :, None], 0), {}, r"\bY\b"),
        ("certify-Y-rows", "certify", (X3, Y[:4], 0), {}, r"\bY\b"),
        ("certify-radius-negative", "certify", (X3, Y3, -1), {}, "radius"),
        ("certify-radius-nan", "certify", (X3, Y3, [0, np.nan]), {}, "radius"),
        ("certify-radius-2d", "certify", (X3, Y3, [[0, 1]]), {}, "radius"),
        ("certify-k=0", "certify", (X3, Y3, 0), {"k": 0}, r"\bk\b"),
        ("certify-k>n", "certify", (X3, Y3, 0), {"k": N_CLASSES + 1}, r"\bk\b"),
        ("certify-method", "certify", (X3, Y3, 0), {"method": "nope"}, "method"),
        ("certify-unknown-option", "certify", (X3, Y3, 0), {"sigma_typo": 1}, "sigma_typo"),
        ("score-Y-columns", "score", (X3, Y3[:, :2]), {}, r"\bY\b"),
    ]
    if ens:
        rows += [
            ("certify-T-fractional", "certify", (X3, Y3, 1.5), {}, "radius"),
            ("certify-T-fractional-array", "certify", (X3, Y3, [0, 1, 2.5]), {}, "radius"),
            ("certify-attack", "certify", (X3, Y3, 1), {"attack": "flip"}, "attack"),
        ]
    else:
        rows += [
            (
                "certify-attack-not-an-option",
                "certify",
                (X3, Y3, 0.5),
                {"attack": "deletion"},
                "attack",
            )
        ]
    if est == "dpa":
        rows += [("certify-alpha-not-an-option", "certify", (X3, Y3, 1), {"alpha": 0.01}, "alpha")]
    else:
        rows += [
            ("certify-alpha=0", "certify", (X3, Y3, 0), {"alpha": 0.0}, "alpha"),
            ("certify-alpha=1.5", "certify", (X3, Y3, 0), {"alpha": 1.5}, "alpha"),
        ]
    for name, method, args, kwargs, match in rows:
        case(
            f"{est}-{name}",
            lambda est=est, method=method, args=args, kwargs=kwargs: getattr(fitted(est), method)(
                *args, **kwargs
            ),
            match,
        )

    def _after_fit(est=est, **params):
        def run():
            model = MAKERS[est]().fit(X, Y)
            return model.set_params(**params).predict(X[:3])

        return run

    case(f"{est}-predict-k>n-after-set_params", _after_fit(k=N_CLASSES + 1), r"\bk\b", marks=())
    if ens:
        case(
            f"{est}-predict-k_base>n-after-set_params",
            _after_fit(k_base=N_CLASSES + 1),
            "k_base",
            marks=(),
        )
    else:
        case(f"{est}-predict-sigma<0-after-set_params", _after_fit(sigma=-1.0), "sigma")


# Edge inputs: alphas below the Clopper-Pearson floor, non-finite tensors, one-vs-one SVC,
# NaN scores, mixed or sparse targets, booleans as numbers (the behaviour behind these rows
# is tested in tests/test_edge_cases.py).
case("cp-alpha-below-floor", lambda: clopper_pearson_bounds(CP_COUNTS, 10, 1e-300), "alpha")
case("cp-alpha-subnormal", lambda: clopper_pearson_bounds(CP_COUNTS, 10, 5e-324), "alpha")
for est in ("smoothing", "bagging"):
    case(
        f"{est}-certify-alpha-below-floor",
        lambda est=est: fitted(est).certify(X[:3], Y[:3], 0, alpha=1e-310),
        "alpha",
    )
    case(
        f"{est}-certify-alpha-param-below-floor",
        lambda est=est: MAKERS[est](alpha=1e-305).fit(X, Y).certify(X[:3], Y[:3], 0),
        "alpha",
    )

X_T = torch.tensor(X, dtype=torch.float32)
X_T_NAN = torch.tensor(X_NAN, dtype=torch.float32)
X_T_INF = torch.tensor(X_INF, dtype=torch.float32)


@functools.cache
def fitted_torch():
    torch.manual_seed(0)
    return _smoothing(estimator=torch.nn.Linear(4, N_CLASSES), train_noise=False).fit(X_T, Y)


for name, Xb in [("nan", X_T_NAN), ("inf", X_T_INF)]:
    case(
        f"smoothing-fit-tensor-X-{name}",
        lambda Xb=Xb: _smoothing(estimator=torch.nn.Linear(4, N_CLASSES), train_noise=False).fit(
            Xb, Y
        ),
        r"\bX\b",
    )
    for method, args in [
        ("predict", (Xb,)),
        ("predict_proba", (Xb,)),
        ("certify", (Xb, Y, 0.1)),
        ("score", (Xb, Y)),
    ]:
        case(
            f"smoothing-{method}-tensor-X-{name}",
            lambda method=method, args=args: getattr(fitted_torch(), method)(*args),
            r"\bX\b",
        )
case("smoothing-predict-tensor-X-1d", lambda: fitted_torch().predict(X_T[0]), r"\bX\b")
for est in ("bagging", "dpa"):
    case(f"{est}-fit-tensor-X-nan", lambda est=est: MAKERS[est]().fit(X_T_NAN, Y), r"\bX\b")
    case(f"{est}-predict-tensor-X-inf", lambda est=est: fitted(est).predict(X_T_INF), r"\bX\b")

case(
    "smoothing-fit-svc-ovo",
    lambda: _smoothing(estimator=SVC(decision_function_shape="ovo"), k=1).fit(
        X, np.arange(len(X)) % 3
    ),
    "decision_function_shape",
)


class _NaNScores(RidgeClassifier):
    def decision_function(self, X):
        scores = super().decision_function(X)
        scores[:, 1] = np.nan
        return scores


case(
    "smoothing-predict-nan-scores",
    lambda: _smoothing(estimator=_NaNScores(), n_draws=2).fit(X[:3], Y[:3]).predict(X),
    r"input\(s\).*label\(s\) \[1\]",
)
case(
    "dpa-predict-nan-scores",
    lambda: _dpa(estimator=_NaNScores()).fit(X, Y).predict(X),
    r"input\(s\).*label\(s\) \[1\]",
)
case(
    "bagging-predict-nan-scores",
    lambda: _bagging(estimator=_NaNScores()).fit(X, Y).predict(X),
    r"input\(s\).*label\(s\) \[1\]",
)

case(
    "smoothing-recertify-n_draws",
    lambda: fitted("smoothing").certify(X[:3], Y[:3], 0).recertify(n_draws=5),
    "n_draws",
)
case(
    "smoothing-recertify-counts",
    lambda: fitted("smoothing").certify(X[:3], Y[:3], 0).recertify(counts=np.ones((3, 3))),
    "counts",
)
case(
    "bagging-recertify-n_draws",
    lambda: fitted("bagging").certify(X[:3], Y[:3], 1).recertify(n_draws=5),
    "n_draws",
)
case(
    "dpa-recertify-counts",
    lambda: fitted("dpa").certify(X[:3], Y[:3], 1).recertify(counts=Y[:3]),
    "counts",
)

Y_MIXED = np.array([0, "a", 1] * (len(X) // 3), dtype=object)
for est in MAKERS:
    case(f"{est}-fit-y-mixed-int-str", lambda est=est: MAKERS[est]().fit(X, Y_MIXED), r"\by\b")
    case(f"{est}-fit-Y-sparse", lambda est=est: MAKERS[est]().fit(X, sp.csr_matrix(Y)), r"\bY\b")
    case(
        f"{est}-certify-Y-sparse",
        lambda est=est: fitted(est).certify(X[:3], sp.csr_matrix(Y[:3]), 0),
        r"\bY\b",
    )

BOOL_CASES = {
    "smoothing": ["k", "k_prime", "n_draws", "sigma", "alpha", "batch_size", "random_state"],
    "bagging": ["n_estimators", "max_samples", "k", "k_base", "alpha", "n_jobs", "random_state"],
    "dpa": ["n_partitions", "k", "k_base", "n_jobs"],
}
for est, params in BOOL_CASES.items():
    for param in params:
        case(
            f"{est}-fit-{param}=True",
            lambda est=est, param=param: MAKERS[est](**{param: True}).fit(X, Y),
            rf"\b{param}\b",
        )
case("cp-n_draws=True", lambda: clopper_pearson_bounds([[0, 1]], True, 0.1), "n_draws")
case("cp-alpha=True", lambda: clopper_pearson_bounds([[0, 1]], 2, True), "alpha")
case("scorer-radius=True", lambda: certified_scorer("f1", radius=True), "radius")
for est in MAKERS:
    case(
        f"{est}-certify-radius=True",
        lambda est=est: fitted(est).certify(X[:3], Y[:3], True),
        "radius",
    )
    case(
        f"{est}-certify-k=True",
        lambda est=est: fitted(est).certify(X[:3], Y[:3], 0, k=True),
        r"\bk\b",
    )
case(
    "bagging-predict-k=True-after-set_params",
    lambda: _bagging().fit(X, Y).set_params(k=True).predict(X[:3]),
    r"\bk\b",
)


def _grid(estimator, radius, **options):
    def run():
        return GridSearchCV(
            estimator,
            {"k": [1, 2]},
            cv=2,
            error_score="raise",
            scoring=certified_scorer("f1", radius=radius, **options),
        ).fit(X, Y)

    return run


case("scorer-grid-dpa-radius=0.5", _grid(_dpa(), 0.5), "radius")
case("scorer-grid-bagging-radius=2.5", _grid(_bagging(), 2.5), "radius")


# Input handling: parameter types, unavailable devices, from_counts arguments, the
# planner's radius and damaged result files.
# certify(sequential=) takes a bool, not a truthy value
for value in ("False", "no", 1, [False], None):
    case(
        f"smoothing-certify-sequential={value!r}",
        lambda value=value: fitted("smoothing").certify(X[:3], Y[:3], 0, sequential=value),
        r"\bsequential\b",
        exc=TypeError,
    )


# devices this machine does not have fail at fit, naming devices
def _fit_on(devices):
    def run():
        torch.manual_seed(0)
        return _smoothing(
            estimator=torch.nn.Linear(4, N_CLASSES), train_noise=False, devices=devices
        ).fit(X_T, Y)

    return run


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
case(
    "smoothing-fit-devices=cuda:0-without-cuda", _fit_on(["cuda:0"]), r"\bdevices\b", marks=NO_CUDA
)
case(
    "smoothing-fit-devices=cuda-without-cuda",
    _fit_on(["cpu", "cuda"]),
    r"\bdevices\b",
    marks=NO_CUDA,
)
case(
    "smoothing-fit-devices=cuda-index-past-count",
    _fit_on([f"cuda:{torch.cuda.device_count()}"]),
    r"\bdevices\b",
)
case("smoothing-fit-devices=meta", _fit_on(["meta"]), r"\bdevices\b.*meta")
case(
    "smoothing-fit-devices=meta-torch.device", _fit_on([torch.device("meta")]), r"\bdevices\b.*meta"
)
case(
    "smoothing-fit-devices=mps-unavailable",
    _fit_on(["mps"]),
    r"\bdevices\b",
    marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="has mps"),
)
case("smoothing-fit-devices=xla-unavailable", _fit_on(["xla"]), r"\bdevices\b")

# from_counts: per-input draws are checked, and alpha_share needs them
FC_OK = dict(
    certificate="gaussian", k=1, method="multiguard", n_draws=100, alpha=0.01, k_prime=1, sigma=0.5
)
FC_COUNTS = np.array([[60, 30, 10], [90, 5, 5]])
FC_Y = np.array([[1, 0, 0], [1, 1, 0]])


def _from_counts(**kw):
    return functools.partial(
        CertificationResult.from_counts, FC_COUNTS, FC_Y, 0.0, **{**FC_OK, **kw}
    )


case("from_counts-n_draws_used-shape", _from_counts(n_draws_used=[100]), "n_draws_used")
case(
    "from_counts-n_draws_used-above-n_draws", _from_counts(n_draws_used=[100, 101]), "n_draws_used"
)
case("from_counts-n_draws_used-fractional", _from_counts(n_draws_used=[100, 99.5]), "n_draws_used")
case(
    "from_counts-n_draws_used-below-counts", _from_counts(n_draws_used=[50, 100]), "counts.*n_draws"
)
case(
    "from_counts-alpha_share-without-n_draws_used",
    _from_counts(alpha_share=[0.9, 0.9]),
    "alpha_share.*n_draws_used",
)
case(
    "from_counts-alpha_share>1",
    _from_counts(n_draws_used=[100, 100], alpha_share=[0.9, 1.5]),
    "alpha_share",
)
case(
    "from_counts-alpha_share-2d",
    _from_counts(n_draws_used=[100, 100], alpha_share=[[0.9, 0.9]]),
    "alpha_share",
)

# the planner's radius is a real number
for value in ("0.5", True, None):
    case(
        f"draws_for_radius-radius={value!r}",
        functools.partial(draws_for_radius, value, 0.001, 0.5, 10),
        r"\bradius\b",
        exc=TypeError,
    )


# CertificationResult.load: every field of a damaged file is refused with one
# ValueError naming the file and the field (bit flips: tests/test_results_io.py).
@functools.cache
def _saved_result():
    """A sequential Gaussian result: every array a file can hold."""
    counts = np.array([[150, 40, 10], [20, 160, 20], [64, 0, 0], [30, 30, 40]])
    return CertificationResult.from_counts(
        counts,
        [[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]],
        [0.0, 0.25],
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=200,
        alpha=0.01,
        k_prime=1,
        sigma=0.5,
        n_draws_used=[200, 200, 64, 100],
        alpha_share=[0.9, 0.9, 0.0125, 0.05],
    )


def _load_damaged(change):
    """Load a saved result after ``change(arrays, settings)`` edited its file."""

    def run():
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "result.npz")
            _saved_result().save(path)
            with np.load(path, allow_pickle=False) as archive:
                data = {name: archive[name] for name in archive.files}
            settings = json.loads(str(data.pop("settings")))
            change(data, settings)
            np.savez(path, settings=np.array(json.dumps(settings)), **data)
            return CertificationResult.load(path)

    return run


def _setting(**changes):
    return _load_damaged(lambda data, settings: settings.update(changes))


def _array(name, value):
    def change(data, settings):
        if value is None:
            del data[name]
        else:
            data[name] = value(data[name]) if callable(value) else value

    return _load_damaged(change)


def _swap_bounds(data, settings):
    data["lower"], data["upper"] = data["upper"], data["lower"]


def _nan_count(counts):
    counts = counts.astype(float)
    counts[0, 1] = np.nan
    return counts


FILE = r"result\.npz.*"
for value in (2.5, -1, 0, True, "2", None):
    case(f"load-k={value!r}", _setting(k=value), FILE + r"\bk\b")
case("load-k>n_classes", _setting(k=4), FILE + r"\bk\b")
for value in (0.0, 1.0, 1.5, -0.1, float("nan"), True, "0.01"):
    case(f"load-alpha={value!r}", _setting(alpha=value), FILE + "alpha")
case("load-certificate-unknown", _setting(certificate="cohen"), FILE + "certificate")
case("load-certificate-not-str", _setting(certificate=1), FILE + "certificate")
case("load-method-unknown", _setting(method="bagging"), FILE + "method")
for value in (True, 1.0, "1", 0):
    case(f"load-format_version={value!r}", _setting(format_version=value), FILE + "format_version")
for value in (True, 0, 2.5):
    case(f"load-n_draws={value!r}", _setting(n_draws=value), FILE + "n_draws")
case("load-params-sigma<0", _setting(params={"k_prime": 1, "sigma": -0.5}), FILE + "params.*sigma")
case(
    "load-params-k_prime>n_classes",
    _setting(params={"k_prime": 4, "sigma": 0.5}),
    FILE + "params.*k_prime",
)
case("load-params-keys", _setting(params={"sigma": 0.5}), FILE + "params")
case("load-label-not-str", _setting(label=3), FILE + "label")
case("load-unknown-setting", _setting(extra=1), FILE + "settings")
case("load-sizes-above-cap", _array("sizes", lambda s: s + 2), FILE + "sizes")
case("load-sizes-negative", _array("sizes", lambda s: s - 3), FILE + "sizes")
case("load-sizes-float", _array("sizes", lambda s: s.astype(float)), FILE + "sizes")
case("load-sizes-columns", _array("sizes", lambda s: s[:, :1]), FILE + "sizes")
case("load-radius-negative", _array("radius", np.array([0.0, -0.25])), FILE + "radius")
case("load-radius-nan", _array("radius", np.array([0.0, np.nan])), FILE + "radius")
case("load-n_true-negative", _array("n_true", lambda n: -n), FILE + "n_true")
case("load-n_true-not-Y", _array("n_true", lambda n: n + 1), FILE + "n_true")
case("load-Y-not-01", _array("Y", lambda y: y * 2), FILE + r"\bY\b")
case("load-lower>upper", _load_damaged(_swap_bounds), FILE + "lower")
case("load-upper>1", _array("upper", lambda u: u + 1), FILE + "upper")
case("load-lower-nan", _array("lower", lambda lo: lo * np.nan), FILE + "lower")
case("load-lower-width", _array("lower", lambda lo: lo[:, :-1]), FILE + "lower")
case("load-upper-without-lower", _array("lower", None), FILE + "lower")
case("load-counts-nan", _array("counts", _nan_count), FILE + "counts")
case("load-counts-negative", _array("counts", lambda c: -c), FILE + "counts")
case("load-counts-fractional", _array("counts", lambda c: c + 0.5), FILE + "counts")
case("load-counts-above-draws-used", _array("counts", lambda c: c * 4), FILE + "counts")
case("load-counts-width", _array("counts", lambda c: c[:, :2]), FILE + "counts")
case("load-n_draws_used-negative", _array("n_draws_used", lambda n: n - 300), FILE + "n_draws_used")
case(
    "load-n_draws_used-above-n_draws",
    _array("n_draws_used", lambda n: n + 1),
    FILE + "n_draws_used",
)
case("load-alpha_share-2d", _array("alpha_share", lambda a: a[:, None]), FILE + "alpha_share")
case("load-alpha_share>1", _array("alpha_share", lambda a: a * 100), FILE + "alpha_share")
case("load-alpha_share-without-n_draws_used", _array("n_draws_used", None), FILE + "alpha_share")
case(
    "load-unknown-member",
    _load_damaged(lambda d, s: d.update(extra=np.zeros(2))),
    FILE + "unexpected member 'extra.npy'",
)


@pytest.mark.parametrize("thunk, exc, match", CASES)
def test_bad_input_is_rejected_with_named_parameter(thunk, exc, match):
    with pytest.raises(exc, match=match):
        thunk()


def test_table_covers_every_public_entry_point():
    """The table above covers every public entry point: bounds, sizes, metrics, scorer,
    datasets, and fit/predict/certify/score of every estimator, fitted and not."""
    ids = " ".join(p.id for p in CASES)
    for prefix in (
        "cp-",
        "gauss-",
        "bagsize-",
        "dpasize-",
        "precision-",
        "recall-",
        "f1-",
        "scorer-",
        "multidigit-",
    ):
        assert prefix in ids
    for est in MAKERS:
        for what in ("fit", "predict", "certify", "unfitted", "score"):
            assert f"{est}-{what}" in ids


def test_valid_inputs_pass():
    """The baselines the table perturbs are themselves valid (no row fails for free)."""
    clopper_pearson_bounds(CP_COUNTS, 10, 0.1)
    _gaussian()()
    _bag_size()()
    _dpa_size()()
    certified_f1_score(YT, [1, 1], k=2)
    certified_scorer("f1", 0.1)(fitted("smoothing"), X, Y)
    certified_scorer("f1", 1, attack="deletion")(fitted("dpa"), X, Y)
    for est in MAKERS:
        model = fitted(est)
        assert model.predict(X[:3]).shape == (3, N_CLASSES)
        radius = [0, 1] if est != "smoothing" else [0.0, 0.1]  # 16 draws reach 0.17
        assert model.certify(X[:3], Y[:3], radius).sizes.shape == (3, 2)
    make_multidigit(5, 5, random_state=0)
    _load_damaged(lambda data, settings: None)()  # the undamaged file loads
    _from_counts(n_draws_used=[100, 90], alpha_share=[0.9, 0.05])()
    _fit_on(["cpu"])()
    assert draws_for_radius(0.5, 0.001, 0.5, 10) == 54
