"""Denoised smoothing: denoiser= in every sampling path and cache key; GaussianDenoiser."""

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import SmoothedMultiLabelClassifier, config_context
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import DenoiserCNN, DenoiserMLP, GaussianDenoiser, MultiLabelNet
from sklearn_certify.smoothing._counts_cache import counts_params_key
from sklearn_certify.smoothing._denoised import Denoised
from sklearn_certify.smoothing._sampling import sample_label_counts


@pytest.fixture(scope="module")
def data():
    return make_multidigit(300, 12, random_state=0)


@pytest.fixture(scope="module")
def clean_net(data):
    X, _, Y, _ = data
    torch.manual_seed(0)
    return MultiLabelNet(module__hidden=(16,), max_epochs=3, lr=3e-3).fit(X, Y)


class Scale(torch.nn.Module):
    """A denoiser that multiplies its input by a learnable-looking scalar."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = torch.nn.Parameter(torch.tensor(float(factor)))

    def forward(self, x):
        return self.factor * x


def smoothed(net, denoiser, **kwargs):
    return SmoothedMultiLabelClassifier(
        FrozenEstimator(net),
        denoiser=denoiser,
        train_noise=False,
        n_draws=50,
        batch_size=64,
        random_state=0,
        **kwargs,
    )


def composed_counts(net, denoiser, X, seed_from):
    """Counts of classifier(denoiser(x + noise)), composed by hand, with the seed the
    smoothed classifier draws."""
    from sklearn_certify.smoothing._sampling import draw_seed

    module = Denoised(denoiser, net.module_)
    return sample_label_counts(
        module,
        X,
        n_classes=10,
        sigma=0.5,
        k_prime=1,
        n_draws=50,
        batch_size=64,
        seed=draw_seed(seed_from),
    )


def test_the_denoiser_runs_in_front_of_the_classifier(data, clean_net):
    X, X_test, Y, _ = data
    # a denoiser mapping everything to 0: every noisy copy gets the classifier's label at 0
    clf = smoothed(clean_net, Scale(0.0)).fit(X, Y)
    top = int(clean_net.module_(torch.zeros(1, X.shape[1])).argmax())
    counts, _ = clf._label_counts(X_test)
    assert (counts[:, top] == 50).all()
    # a fixed denoiser: the counts are those of the hand-composed module
    clf = smoothed(clean_net, Scale(0.7)).fit(X, Y)
    expected = composed_counts(clean_net, clf.denoiser_, X_test, 0)
    assert np.array_equal(clf._label_counts(X_test)[0], expected)
    # ... and not those of the classifier alone
    alone = smoothed(clean_net, None).fit(X, Y)
    assert not np.array_equal(alone._label_counts(X_test)[0], expected)


def test_every_sampling_path_includes_the_denoiser(data, clean_net):
    X, X_test, Y, Y_test = data
    clf = smoothed(clean_net, Scale(0.7)).fit(X, Y)
    expected = composed_counts(clean_net, clf.denoiser_, X_test, 0)
    proba = expected / 50
    assert np.allclose(clf.predict_proba(X_test), proba)
    top3 = np.argsort(-expected, axis=1, kind="stable")[:, :3]
    assert np.array_equal(np.sort(np.flatnonzero(clf.predict(X_test)[0])), np.sort(top3[0]))
    assert np.array_equal(clf.certify(X_test, Y_test).counts, expected)
    # sequential: its first stage's counts are draws [0, m) of the same streams
    seq = clf.certify(X_test, Y_test, radius=0.0, sequential=True)
    full = seq.n_draws_used == 50
    assert np.array_equal(seq.counts[full], expected[full])
    for options in (dict(devices=["cpu", "cpu"]), dict(n_jobs=2)):
        # joblib workers on threads here (fast); processes get the pickled classifier,
        # whose denoiser survives pickling (below)
        with joblib.parallel_config(backend="threading"):
            counts = clf.set_params(**options).certify(X_test, Y_test).counts
        assert np.array_equal(counts, expected), options
        clf.set_params(devices=None, n_jobs=None)
    restored = pickle.loads(pickle.dumps(clf))
    assert np.array_equal(restored.certify(X_test, Y_test).counts, expected)


@pytest.mark.parametrize("counts_cache", [False, True])
def test_a_denoiser_changed_in_place_is_not_served_stale_counts(
    tmp_path, data, clean_net, counts_cache
):
    X, X_test, Y, _ = data
    denoiser = Scale(0.7)
    for memory in (None, tmp_path / str(counts_cache)):
        with config_context(counts_cache=counts_cache):
            _assert_fresh_counts(data, clean_net, denoiser, memory)
    # the counts key holds the denoiser
    with_den = smoothed(clean_net, denoiser, memory=tmp_path).fit(X, Y)
    without = smoothed(clean_net, None, memory=tmp_path).fit(X, Y)
    assert counts_params_key(with_den, 0, None) != counts_params_key(without, 0, None)


def _assert_fresh_counts(data, clean_net, denoiser, memory):
    """Counts change with the denoiser changed in place, and come back when it does."""
    X, X_test, Y, _ = data
    clf = smoothed(clean_net, denoiser, memory=memory).fit(X, Y)
    before = clf.predict_proba(X_test)
    with torch.no_grad():
        denoiser.factor.fill_(0.0)
    after = clf.predict_proba(X_test)
    top = int(clean_net.module_(torch.zeros(1, X.shape[1])).argmax())
    assert (after[:, top] == 1).all() and not np.allclose(before, after)
    with torch.no_grad():
        denoiser.factor.fill_(0.7)
    assert np.array_equal(clf.predict_proba(X_test), before)


def test_gaussian_denoiser_learns_to_denoise(data):
    X, _, _, _ = data
    torch.manual_seed(0)
    den = GaussianDenoiser(sigma=0.5, max_epochs=15, lr=3e-3).fit(X)
    assert isinstance(den.module_, DenoiserMLP)
    rng = np.random.default_rng(1)
    noisy = (X + 0.5 * rng.standard_normal(X.shape)).astype(np.float32)
    mse = float(np.mean((den.transform(noisy) - X) ** 2))
    # the noisy input's error is sigma^2 = 0.25 per feature; the denoiser cuts it
    # (measured: about 0.05)
    assert mse < 0.1, mse
    images = make_multidigit(60, 1, image_shape=True, random_state=0)[0]
    assert isinstance(GaussianDenoiser(max_epochs=1).fit(images).module_, DenoiserCNN)
    assert GaussianDenoiser(max_epochs=1).fit(images).transform(images[:2]).shape == (2, 1, 16, 16)


def test_stability_denoiser_for_a_clean_trained_net(data, clean_net):
    """The typical use: a net trained on clean data, frozen, with a stability-trained
    denoiser fitted by the smoothing classifier; the denoiser trains at the smoothing
    sigma, through the frozen classifier, which it leaves unchanged."""
    X, X_test, Y, Y_test = data
    before = [p.detach().clone() for p in clean_net.module_.parameters()]
    clf = smoothed(
        clean_net, GaussianDenoiser(objective="stability", max_epochs=4, lr=3e-3), sigma=0.25
    ).fit(X, Y)
    assert clf.denoiser_.sigma == 0.25 and clf.denoiser_.objective == "stability"
    assert all(torch.equal(a, b) for a, b in zip(before, clean_net.module_.parameters()))
    assert clf.estimator_.estimator is clean_net
    # the fitted denoiser does not keep the classifier
    assert getattr(clf.denoiser_, "_classifier", None) is None
    # reproducible from random_state
    again = smoothed(
        clean_net, GaussianDenoiser(objective="stability", max_epochs=4, lr=3e-3), sigma=0.25
    ).fit(X, Y)
    assert all(
        torch.equal(a, b)
        for a, b in zip(clf.denoiser_.module_.parameters(), again.denoiser_.module_.parameters())
    )
    result = clf.certify(X_test, Y_test, [0.0, 0.25])
    assert result.sizes.shape == (len(X_test), 2)


def test_clear_errors(data, clean_net):
    X, _, Y, _ = data
    with pytest.raises(ValueError, match="denoiser needs a torch base model"):
        SmoothedMultiLabelClassifier(
            RidgeClassifier(), denoiser=Scale(1.0), train_noise=False, n_draws=10
        ).fit(X, Y)
    with pytest.raises(ValueError, match="objective='stability'"):
        GaussianDenoiser(objective="stability", max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="objective"):
        GaussianDenoiser(objective="l1", max_epochs=1).fit(X)
    with pytest.raises(ValueError, match="denoiser"):
        SmoothedMultiLabelClassifier(
            FrozenEstimator(clean_net), denoiser="yes", train_noise=False
        ).fit(X, Y)
    meta = Scale(1.0).to("meta")
    with pytest.raises(ValueError, match="move the denoiser"):
        smoothed(clean_net, meta).fit(X, Y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_denoised_smoothing_and_consistency_on_cuda(data):
    """On CUDA: consistency training draws its copies' noise on the device, the
    denoiser is trained on the base model's device, and the denoised counts equal the
    hand-composed module's."""
    X, X_test, Y, Y_test = data
    clf = SmoothedMultiLabelClassifier(
        MultiLabelNet(module__hidden=(16,), max_epochs=2, device="cuda"),
        train_noise="consistency",
        n_draws=50,
        random_state=0,
    ).fit(X, Y)
    assert next(clf.estimator_.module_.parameters()).is_cuda
    den = SmoothedMultiLabelClassifier(
        FrozenEstimator(clf.estimator_),
        train_noise=False,
        n_draws=50,
        random_state=0,
        denoiser=GaussianDenoiser(objective="stability", max_epochs=1),
    ).fit(X, Y)
    assert next(den.denoiser_.module_.parameters()).is_cuda
    expected = composed_counts(clf.estimator_, den.denoiser_.module_, X_test, 0)
    assert np.array_equal(den.certify(X_test, Y_test).counts, expected)


def test_a_trained_denoiser_is_cached_with_memory(tmp_path, data, clean_net, count_calls):
    X, X_test, Y, _ = data
    calls = count_calls(GaussianDenoiser, "fit")

    def make(net):
        return smoothed(net, GaussianDenoiser(objective="stability", max_epochs=1), memory=tmp_path)

    first = make(clean_net).fit(X, Y)
    second = make(clean_net).fit(X, Y)
    assert len(calls) == 1
    assert np.array_equal(first.predict_proba(X_test), second.predict_proba(X_test))
    # the stability denoiser is keyed on the base model's content: another net retrains it
    other = MultiLabelNet(module__hidden=(16,), max_epochs=1).fit(X, Y)
    make(other).fit(X, Y)
    assert len(calls) == 2
