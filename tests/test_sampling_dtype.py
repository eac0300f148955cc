"""sampling_dtype and compile: the base model runs cast or compiled, the noise never changes."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import SmoothedMultiLabelClassifier, config_context
from sklearn_certify.nets import MultiLabelNet
from sklearn_certify.smoothing import _runners, _sampling
from sklearn_certify.smoothing._runners import SamplingModels
from sklearn_certify.smoothing._sampling import sample_label_counts

from .test_sampling import N_CLASSES, N_FEATURES, _linear

DTYPES = [None, "float32", "bfloat16", "float16"]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, N_FEATURES)).astype(np.float32)
    Y = (rng.random((12, N_CLASSES)) < 0.4).astype(int)
    Y[:, 0] = 1
    return X, Y


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile through dynamo alone (no code generation), its calls counted."""
    calls = []

    def compile_(module):
        calls.append(module)
        return torch.compile(module, backend="eager")

    monkeypatch.setattr(_runners, "_torch_compile", compile_)
    return calls


def _clf(model, **params):
    params = {
        "sigma": 0.5,
        "k": 2,
        "n_draws": 60,
        "batch_size": 25,
        "random_state": 0,
        "train_noise": False,
        **params,
    }
    return SmoothedMultiLabelClassifier(model, **params)


class Deep(torch.nn.Module):
    """Enough layers that rounding to bfloat16 shows in the scores."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(N_FEATURES, 64), torch.nn.ReLU(), torch.nn.Linear(64, N_CLASSES)
        ).to(dtype)
        self.seen = []  # (dtype of the input, dtype of the first layer's output)

    def forward(self, x):
        hidden = self.net[0](x)
        self.seen.append((x.dtype, hidden.dtype))
        return self.net[2](self.net[1](hidden))


class Autocast(torch.nn.Module):
    """The base classifier sampling_dtype="bfloat16" stands for, written by hand."""

    def __init__(self, module, dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x):
        with torch.autocast("cpu", dtype=self.dtype):
            return self.module(x)


class CastCopy(torch.nn.Module):
    """ "Cast, then the cast model", by hand; its first parameter keeps the source dtype
    so that the noise is drawn in the same dtype as for the source model."""

    def __init__(self, module, dtype):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1, dtype=next(module.parameters()).dtype))
        self.cast = Deep(dtype)
        self.cast.load_state_dict({k: v.to(dtype) for k, v in module.state_dict().items()})
        self.dtype = dtype

    def forward(self, x):
        return self.cast(x.to(self.dtype))


def test_sampling_dtype_never_changes_the_noise(data, monkeypatch):
    """The noise streams and the noisy inputs handed to the model are bit-identical
    for every sampling_dtype: only the model after them changes."""
    X, Y = data
    noise, inputs = [], []
    draw, scores = _sampling.torch_noise_, _runners._Runner.scores

    def recorded_noise(out, key, seed, start, *args):
        result = draw(out, key, seed, start, *args)
        noise.append((key, start, out.dtype, out.clone()))
        return result

    def recorded_inputs(self, noisy, n_classes):
        inputs.append(noisy.clone())
        return scores(self, noisy, n_classes)

    monkeypatch.setattr(_sampling, "torch_noise_", recorded_noise)
    monkeypatch.setattr(_runners._Runner, "scores", recorded_inputs)
    seen = {}
    for dtype in DTYPES:
        noise.clear(), inputs.clear()
        _clf(Deep(), sampling_dtype=dtype).fit(X, Y).predict_proba(X)
        seen[dtype] = (list(noise), list(inputs))
    reference_noise, reference_inputs = seen[None]
    assert len(reference_noise) > len(X) and len(reference_inputs) == 12 * 60 // 25 + 1
    for dtype in DTYPES[1:]:
        got_noise, got_inputs = seen[dtype]
        assert len(got_noise) == len(reference_noise)
        for (k1, s1, d1, a), (k2, s2, d2, b) in zip(reference_noise, got_noise):
            assert (k1, s1, d1) == (k2, s2, d2) and d1 == torch.float32
            assert torch.equal(a, b)
        for a, b in zip(reference_inputs, got_inputs):
            assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)


def test_bfloat16_is_the_autocast_model_exactly(data):
    """sampling_dtype="bfloat16" gives the counts of the smoothed classifier whose base
    model is the module under autocast; the module sees float32 inputs, its layers run
    in bfloat16, and the module itself is left as it was."""
    X, Y = data
    module = Deep()
    module.train()
    clf = _clf(module, sampling_dtype="bfloat16").fit(X, Y)
    counts = clf.certify(X, Y, radius=0.25).counts
    assert module.seen[-1] == (torch.float32, torch.bfloat16)
    assert module.training and module.net[0].weight.dtype == torch.float32
    by_hand = _clf(Autocast(Deep(), torch.bfloat16)).fit(X, Y).certify(X, Y, 0.25).counts
    np.testing.assert_array_equal(counts, by_hand)
    # predict uses the very same base model as certify
    np.testing.assert_array_equal(clf.predict_proba(X) * clf.n_draws, counts)


def test_float32_of_a_float64_model_is_a_cast_copy(data):
    """A float64 model with sampling_dtype="float32" runs a float32 copy of itself (the
    given model stays float64) on inputs cast after the noise is added in float64."""
    X, Y = data
    module = Deep(torch.float64)
    clf = _clf(module, sampling_dtype="float32").fit(X, Y)
    counts = clf.certify(X, Y, radius=0.25).counts
    assert module.net[0].weight.dtype == torch.float64
    by_hand = _clf(CastCopy(Deep(torch.float64), torch.float32)).fit(X, Y)
    np.testing.assert_array_equal(counts, by_hand.certify(X, Y, radius=0.25).counts)
    # the copy is kept between calls, and rebuilt when the weights change in place
    runners = clf._sampling_models._runners
    (runner,) = runners.values()
    clf.predict_proba(X)
    assert list(runners.values()) == [runner]
    with torch.no_grad():
        module.net[2].bias.add_(torch.arange(N_CLASSES, dtype=torch.float64))
    changed = clf.predict_proba(X)
    assert next(iter(runners.values())) is not runner
    fresh = _clf(Deep(torch.float64), sampling_dtype="float32").fit(X, Y)
    with torch.no_grad():
        fresh.estimator_.net[2].bias.add_(torch.arange(N_CLASSES, dtype=torch.float64))
    np.testing.assert_array_equal(changed, fresh.predict_proba(X))


@pytest.mark.parametrize("n_jobs, devices", [(2, None), (None, ["cpu", "cpu"])])
def test_every_sampling_path_runs_the_same_reduced_model(data, n_jobs, devices):
    X, Y = data
    reference = _clf(Deep(), sampling_dtype="bfloat16").fit(X, Y).predict_proba(X)
    clf = _clf(Deep(), sampling_dtype="bfloat16", n_jobs=n_jobs, devices=devices).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), reference)
    sequential = clf.certify(X, Y, radius=0.0, sequential=True)
    assert sequential.n_draws_used.max() <= clf.n_draws


def test_sampling_options_need_a_torch_model(data):
    X, Y = data
    with pytest.raises(ValueError, match="need a torch base model"):
        _clf(RidgeClassifier(), sampling_dtype="bfloat16").fit(X, Y)
    clf = _clf(RidgeClassifier()).fit(X, Y).set_params(compile=True)
    with pytest.raises(ValueError, match="need a torch base model"):
        clf.predict(X)
    with pytest.raises(ValueError, match="sampling_dtype"):
        _clf(Deep(), sampling_dtype="int8").fit(X, Y)


def test_the_counts_cache_keys_on_the_sampling_options(data, sampling_calls):
    calls = sampling_calls
    X, Y = data
    clf = _clf(Deep().net).fit(X, Y)  # Deep itself records its calls: not a pure model
    with config_context(counts_cache=True):
        clf.predict_proba(X)
        clf.predict_proba(X)
        assert len(calls) == 1
        clf.set_params(sampling_dtype="bfloat16").predict_proba(X)
    assert len(calls) == 2 and calls[-1][1]["sampling_dtype"] == "bfloat16"


# --------------------------------------------------------------------------- compile
def test_compiled_once_per_model_and_device_and_reused(data, eager_compile):
    X, Y = data
    clf = _clf(Deep(), compile=True).fit(X, Y)
    first = clf.predict_proba(X)
    clf.certify(X, Y, radius=0.25)
    clf.predict_proba(X[:3])
    assert len(eager_compile) == 1
    np.testing.assert_array_equal(first, _clf(Deep()).fit(X, Y).predict_proba(X))
    # pickling keeps no compiled code: the copy compiles again on its first call
    clone = pickle.loads(pickle.dumps(clf))
    assert clone._sampling_models._runners == {}
    np.testing.assert_array_equal(clone.predict_proba(X), first)
    assert len(eager_compile) == 2
    # another device: its own compiled copy
    clf.set_params(devices=["cpu"]).predict_proba(X)
    assert len(eager_compile) == 3


def test_a_model_that_cannot_compile_runs_eagerly_with_one_warning(data, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("no backend for this")

    monkeypatch.setattr(_runners, "_torch_compile", lambda module: Broken())
    X, Y = data
    clf = _clf(Deep(), compile=True).fit(X, Y)
    with pytest.warns(UserWarning, match="runs eagerly") as record:
        got = clf.predict_proba(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.certify(X, Y, radius=0.0)
    assert len([w for w in record if "runs eagerly" in str(w.message)]) == 1
    np.testing.assert_array_equal(got, _clf(Deep()).fit(X, Y).predict_proba(X))


# torch.compile's tracing calls a deprecated torch.jit helper and reads .grad inside torch
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_a_skorch_net_compiled_by_skorch_is_not_compiled_again(data, eager_compile):
    X, Y = data
    net = MultiLabelNet(module__hidden=(8,), max_epochs=1, compile=True, compile__backend="eager")
    clf = _clf(net, compile=True, n_draws=20).fit(X, Y)
    assert hasattr(clf.estimator_.module_, "_orig_mod")  # skorch compiled it
    clf.predict_proba(X)
    assert eager_compile == []


@pytest.mark.slow
# torch.compile's tracing calls a deprecated torch.jit helper inside torch
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compile_with_inductor_gives_the_eager_counts(data):
    """The real thing: torch.compile's default backend (generates C++ on a CPU)."""
    X, Y = data
    module = _linear()
    compiled = _clf(module, compile=True).fit(X, Y)
    np.testing.assert_array_equal(
        compiled.predict_proba(X), _clf(_linear()).fit(X, Y).predict_proba(X)
    )


# --------------------------------------------------------------- the noise on a thread
@pytest.mark.parametrize("n_draws, batch_size", [(60, 25), (1100, 700), (3, 10)])
def test_noise_drawn_ahead_on_a_thread_gives_the_same_counts(data, n_draws, batch_size):
    X, _ = data
    module = Deep()
    runs = [
        sample_label_counts(
            module,
            X,
            n_classes=N_CLASSES,
            sigma=0.5,
            k_prime=2,
            n_draws=n_draws,
            batch_size=batch_size,
            random_state=3,
            overlap=overlap,
        )
        for overlap in (False, True)
    ]
    np.testing.assert_array_equal(*runs)
    assert (runs[0].sum(axis=1) == 2 * n_draws).all()


def test_an_error_with_noise_drawn_ahead_leaves_no_thread_state_behind(data):
    class NaNs(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), N_CLASSES), float("nan"))

    X, _ = data
    with pytest.raises(ValueError, match="NaN"):
        sample_label_counts(
            NaNs(),
            X,
            n_classes=N_CLASSES,
            sigma=0.5,
            k_prime=1,
            n_draws=40,
            batch_size=16,
            random_state=0,
            overlap=True,
        )
    assert not torch.is_inference_mode_enabled()
    # an error in the middle of the batches (a model scoring the wrong number of labels)
    with pytest.raises(ValueError, match="scores 3 labels"):
        sample_label_counts(
            _linear(n_classes=3),
            X,
            n_classes=N_CLASSES,
            sigma=0.5,
            k_prime=1,
            n_draws=40,
            batch_size=16,
            random_state=0,
            overlap=True,
        )
    assert not torch.is_inference_mode_enabled()
    models = SamplingModels()
    assert models.runner(_linear()).source_dtype == torch.float32
