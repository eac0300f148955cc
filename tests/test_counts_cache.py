"""The counts caches never serve the counts of another model.

Off by default: every call samples anew, however the model was changed in place. With
the in-process cache switched on (``config_context(counts_cache=True)``) or a
``memory=`` directory, a model is cached only when the key covers it; a model the key
cannot cover (hooks, attributes holding other objects) is sampled every time, with one
warning saying why.
"""

import importlib
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import sklearn_certify
from sklearn_certify import SmoothedMultiLabelClassifier, config_context
from sklearn_certify._utils._keys import UncacheableModel, model_key
from sklearn_certify._utils._memory import recent_counts
from sklearn_certify.smoothing._sampling import sample_label_counts

N_FEATURES, N_CLASSES = 4, 3
SCALE = 1.0  # a module global that _Net.forward reads


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(N_FEATURES, N_CLASSES)
        with torch.no_grad():
            self.linear.weight.copy_(torch.arange(12.0).reshape(3, 4) / 6 - 1)
            self.linear.bias.zero_()

    def forward(self, x):
        return self.linear(x) * SCALE


def _changes():
    """In-place changes of a fitted model after a first certify: each one changes what
    the model computes, so a cache keyed on the model must notice it."""

    def pre_hook(module, args):
        return (-args[0],)

    def forward_hook(module, args, output):
        return output.flip(1)

    def closure_scale(factor):
        def forward(x):
            return torch.nn.Linear.forward(net_ref[0].linear, x) * factor

        return forward

    net_ref = []

    def swap_forward(net):
        net_ref.append(net)
        net.forward = closure_scale(-1.0)

    class Flip(torch.nn.Module):
        def forward(self, x):
            return x.flip(1)

    class Listed(torch.nn.Module):  # a submodule in a plain list: not registered
        def __init__(self, inner):
            super().__init__()
            self.extra = [Flip()]
            self.inner = inner

        def forward(self, x):
            return self.extra[0](self.inner(x))

    def dict_of_tensors(net):
        net.shift = {"bias": torch.tensor([0.0, 0.0, 5.0])}
        net.forward = types.MethodType(lambda self, x: self.linear(x) + self.shift["bias"], net)

    return {
        "forward pre-hook": lambda net: net.register_forward_pre_hook(pre_hook),
        "forward hook": lambda net: net.linear.register_forward_hook(forward_hook),
        "forward set on the instance": swap_forward,
        "tensor in a dict": dict_of_tensors,
        "submodule in a plain list": lambda net: setattr(net, "linear", Listed(net.linear)),
        "module global read by forward": lambda net: globals().__setitem__("SCALE", -1.0),
        "config object": lambda net: (
            setattr(net, "config", types.SimpleNamespace(a=1)),
            net.register_forward_pre_hook(pre_hook),
        ),
    }


@pytest.fixture(autouse=True)
def _restore_global():
    yield
    globals()["SCALE"] = 1.0


def _fitted(**kwargs):
    X = np.random.RandomState(0).normal(size=(30, N_FEATURES)).astype(np.float32)
    Y = (X[:, :N_CLASSES] > 0).astype(int)
    Y[:, 0] = 1
    clf = SmoothedMultiLabelClassifier(
        _Net(), sigma=0.5, k=1, n_draws=200, train_noise=False, random_state=0, **kwargs
    )
    return clf.fit(X, Y), X, Y


def _fresh_counts(clf, X):
    """What sampling the model as it is now gives, bypassing every cache."""
    return sample_label_counts(
        clf.estimator_,
        X,
        n_classes=N_CLASSES,
        sigma=0.5,
        k_prime=1,
        n_draws=200,
        batch_size=1000,
        seed=_seed(clf),
    )


def _seed(clf):
    from sklearn_certify.smoothing._sampling import draw_seed

    return draw_seed(clf.random_state)


def test_the_counts_cache_is_off_by_default():
    assert sklearn_certify.get_config() == {"counts_cache": False}


@pytest.mark.parametrize("change", list(_changes()))
def test_by_default_a_model_changed_in_place_is_sampled_again(change):
    clf, X, Y = _fitted()
    before = clf.certify(X, Y, 0.2)
    _changes()[change](clf.estimator_)
    after = clf.certify(X, Y, 0.2)
    np.testing.assert_array_equal(after.counts, _fresh_counts(clf, X))
    assert not np.array_equal(after.counts, before.counts)


@pytest.mark.parametrize("change", [c for c in _changes() if c != "module global read by forward"])
@pytest.mark.parametrize("where", ["process", "memory"])
def test_with_a_cache_on_a_model_the_key_cannot_cover_is_not_cached(change, where, tmp_path):
    clf, X, Y = _fitted(memory=tmp_path if where == "memory" else None)
    with config_context(counts_cache=where == "process"):
        before = clf.certify(X, Y, 0.2)
        _changes()[change](clf.estimator_)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            after = clf.certify(X, Y, 0.2)
    np.testing.assert_array_equal(after.counts, _fresh_counts(clf, X))
    assert not np.array_equal(after.counts, before.counts)
    # either the key sees the change (tensors in a dict), or the model is refused once
    refusals = [w for w in caught if "not cached" in str(w.message)]
    assert len(refusals) <= 1
    if change != "tensor in a dict":
        assert len(refusals) == 1


def test_the_key_names_why_a_model_cannot_be_cached():
    net = _Net()
    model_key(net)
    net.register_forward_pre_hook(lambda module, args: None)
    with pytest.raises(UncacheableModel, match="forward pre hooks"):
        model_key(net)
    other = _Net()
    other.scaler = types.SimpleNamespace(mean=0.0)
    with pytest.raises(UncacheableModel, match=r"module\.scaler holds a types\.SimpleNamespace"):
        model_key(other)
    other = _Net()
    other.linear.activation = torch.tanh
    with pytest.raises(UncacheableModel, match=r"module\.linear\.activation"):
        model_key(other)
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        with pytest.raises(UncacheableModel, match="global module hook"):
            model_key(_Net())
    finally:
        handle.remove()


@pytest.fixture
def edit_module(tmp_path, monkeypatch):
    """``edit_module(name, source)`` writes module ``name`` in ``tmp_path`` and imports
    it, or reloads it when it was imported before: a class edited between two runs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def edit(name, source):
        (tmp_path / f"{name}.py").write_text(source)
        if name in written:
            return importlib.reload(sys.modules[name])
        written.append(name)
        return importlib.import_module(name)

    yield edit
    for name in written:
        sys.modules.pop(name, None)


def test_the_key_covers_tensors_in_dicts_dtypes_and_class_source(edit_module):
    net = _Net()
    net.table = {"shift": torch.zeros(3)}
    before = model_key(net)
    net.table["shift"][0] = 1.0
    assert model_key(net) != before
    # two classes with one name and different source code: different keys
    source = (
        "import torch\n\nclass Scaled(torch.nn.Module):\n"
        "    def forward(self, x):\n        return {}\n"
    )
    first = model_key(edit_module("edited_model", source.format("x")).Scaled())
    edited = edit_module("edited_model", source.format("-x"))
    assert model_key(edited.Scaled()) != first


def test_an_edited_forward_is_not_served_the_disk_counts_of_the_old_one(tmp_path, edit_module):
    """Across processes, the source code of the model's class is part of the key."""
    source = (
        "import torch\n\nclass Edited(torch.nn.Linear):\n"
        "    def forward(self, x):\n        return {}\n"
    )
    edited = edit_module("edited_forward", source.format("super().forward(x)"))
    net = edited.Edited(N_FEATURES, N_CLASSES)
    with torch.no_grad():
        net.weight.copy_(_Net().linear.weight)
        net.bias.zero_()
    X = np.random.RandomState(0).normal(size=(30, N_FEATURES)).astype(np.float32)
    Y = (X[:, :N_CLASSES] > 0).astype(int)
    common = dict(
        sigma=0.5, k=1, n_draws=200, train_noise=False, random_state=0, memory=tmp_path / "cache"
    )
    first = SmoothedMultiLabelClassifier(net, **common).fit(X, Y).certify(X, Y, 0.2)
    edited = edit_module("edited_forward", source.format("-super().forward(x)"))  # next run
    changed = edited.Edited(N_FEATURES, N_CLASSES)
    changed.load_state_dict(net.state_dict())
    clf = SmoothedMultiLabelClassifier(changed, **common).fit(X, Y)
    second = clf.certify(X, Y, 0.2)
    np.testing.assert_array_equal(second.counts, _fresh_counts(clf, X))
    assert not np.array_equal(first.counts, second.counts)


def test_no_hashing_when_no_cache_is_on(monkeypatch):
    from sklearn_certify._utils import _keys
    from sklearn_certify.smoothing import _counts_cache

    clf, X, _ = _fitted()

    def refuse(*args, **kwargs):
        raise AssertionError("hashed although no cache can hit")

    monkeypatch.setattr(_keys, "model_key", refuse)
    monkeypatch.setattr(_counts_cache, "data_key", refuse)
    monkeypatch.setattr(_counts_cache, "counts_key", refuse)
    clf.predict_proba(X)


def test_config_context_switches_the_in_process_cache_and_drops_it_on_exit():
    clf, X, _ = _fitted()
    with config_context(counts_cache=True):
        first = clf.predict_proba(X)
        assert len(recent_counts._items) == 1
        np.testing.assert_array_equal(clf.predict_proba(X), first)
        with config_context(counts_cache=False):
            assert len(recent_counts._items) == 0
        assert sklearn_certify.get_config()["counts_cache"]
    assert not sklearn_certify.get_config()["counts_cache"]
    assert len(recent_counts._items) == 0
    with pytest.raises(TypeError, match="counts_cache must be True or False"):
        sklearn_certify.set_config(counts_cache="yes")
