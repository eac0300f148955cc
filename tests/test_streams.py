"""Per-input noise streams: an input's counts depend on the seed and its content only."""

import numpy as np
import pytest
import torch

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.smoothing._sampling import draw_seed, sample_label_counts
from sklearn_certify.smoothing._streams import (
    BLOCK_MAX,
    BLOCK_MIN,
    BlockGenerator,
    block_bounds,
    block_seed,
    input_keys,
    numpy_noise,
    torch_noise_,
)

from .test_sampling import N_CLASSES, N_FEATURES, TorchAdapter, _linear


def torch_draws(key, seed, start, stop, shape=(3,), dtype=torch.float32):
    out = torch.empty((stop - start, *shape), dtype=dtype)
    return torch_noise_(out, key, seed, start, BlockGenerator())


def test_blocks_tile_the_draws_doubling_then_constant():
    blocks = list(block_bounds(0, 3 * BLOCK_MAX))
    assert [b for b, _, _ in blocks] == list(range(len(blocks)))
    assert [hi - lo for _, lo, hi in blocks] == [16, 16, 32, 64, 128, 256, 512, 512]
    assert all(blocks[j][2] == blocks[j + 1][1] for j in range(len(blocks) - 1))
    assert blocks[0][1] == 0 and BLOCK_MIN == 16
    # any range: exactly the blocks it overlaps
    for start, stop in [(0, 1), (15, 17), (500, 513), (1100, 1101), (40, 3000)]:
        got = list(block_bounds(start, stop))
        assert got == [blk for blk in block_bounds(0, 4000) if blk[1] < stop and blk[2] > start]
    assert list(block_bounds(5, 5)) == []


@pytest.mark.parametrize("draws", [torch_draws, lambda *a: numpy_noise(*a, (3,), np.float32)])
def test_every_draw_is_the_same_whatever_range_asked(draws):
    key = input_keys(np.zeros((1, 3), np.float32))[0]
    full = np.asarray(draws(key, 7, 0, 1200))
    for start, stop in [(0, 1), (0, 10), (0, 16), (3, 40), (100, 700), (1000, 1200)]:
        np.testing.assert_array_equal(np.asarray(draws(key, 7, start, stop)), full[start:stop])
    # a draw is standard normal: not a copy of another block
    assert abs(full.mean()) < 0.1 and abs(full.std() - 1) < 0.05
    assert not np.array_equal(full[:16], full[16:32])


def test_streams_differ_by_seed_content_dtype_and_shape():
    X = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 1.0, 2.5]], dtype=np.float32)
    keys = input_keys(X)
    assert keys[0] == keys[1] != keys[2]
    assert keys[0] == input_keys(X[::-1].copy())[2] == input_keys(torch.from_numpy(X))[0]
    assert keys[0] != input_keys(X.astype(np.float64))[0]
    assert keys[0] != input_keys(X.reshape(3, 1, 3))[0]
    assert block_seed(0, keys[0], 0) != block_seed(1, keys[0], 0)
    assert block_seed(0, keys[0], 0) != block_seed(0, keys[0], 1)
    assert not np.array_equal(torch_draws(keys[0], 0, 0, 16), torch_draws(keys[2], 0, 0, 16))


@pytest.fixture
def X():
    X = np.random.RandomState(0).normal(size=(7, N_FEATURES)).astype(np.float32)
    X[4] = X[1]  # a duplicate input gets the duplicate counts
    return X


def _counts(model, X, **kwargs):
    params = dict(
        n_classes=N_CLASSES, sigma=2.0, k_prime=1, n_draws=150, batch_size=64, random_state=0
    )
    params.update(kwargs)
    return sample_label_counts(model, X, **params)


@pytest.mark.parametrize("generic", [False, True], ids=["torch", "generic"])
def test_counts_ignore_order_subsets_and_batch_size(X, generic):
    model = TorchAdapter(_linear()) if generic else _linear()
    ref = _counts(model, X)
    np.testing.assert_array_equal(ref[4], ref[1])
    np.testing.assert_array_equal(_counts(model, X[::-1].copy()), ref[::-1])
    np.testing.assert_array_equal(_counts(model, X[2:5]), ref[2:5])
    np.testing.assert_array_equal(_counts(model, X[[3]]), ref[[3]])
    for batch_size in (1, 7, 150, 1000):
        np.testing.assert_array_equal(_counts(model, X, batch_size=batch_size), ref)
    # the first m draws of an input are the draws of a run with n_draws = m
    np.testing.assert_array_equal(
        _counts(model, X, n_draws=40, batch_size=1000), _counts(model, X, n_draws=40)
    )
    assert not np.array_equal(_counts(model, X, random_state=1), ref)


def test_torch_tensor_and_array_inputs_share_streams(X):
    model = _linear()
    np.testing.assert_array_equal(_counts(model, torch.from_numpy(X)), _counts(model, X))


def test_prefix_draws_match_a_shorter_run():
    """Counting draws one by one: n_draws=m is exactly the first m draws of n_draws=n."""

    class Sign(torch.nn.Module):  # label 1 iff the (only) feature is positive
        def forward(self, x):
            return torch.cat([-x, x], dim=1)

    x = np.zeros((1, 1), np.float32)
    key = input_keys(x)[0]
    seed = draw_seed(0)  # what random_state=0 seeds a call with
    draws = torch_draws(key, seed, 0, 600, shape=(1,))[:, 0].numpy()
    for m in (1, 16, 17, 100, 600):
        got = sample_label_counts(
            Sign(), x, n_classes=2, sigma=1.0, k_prime=1, n_draws=m, batch_size=50, random_state=0
        )
        assert got[0, 1] == int((draws[:m] > 0).sum())


@pytest.mark.parametrize("estimator", ["torch", "generic"])
def test_predict_proba_of_one_input_is_its_row_of_the_batch(X, estimator):
    from sklearn.linear_model import RidgeClassifier

    Y = (X[:, :N_CLASSES] > 0).astype(int)
    base = _linear() if estimator == "torch" else RidgeClassifier()
    clf = SmoothedMultiLabelClassifier(
        base,
        sigma=1.0,
        k=2,
        n_draws=100,
        batch_size=32,
        train_noise=estimator == "generic",
        random_state=0,
    ).fit(X, Y)
    proba = clf.predict_proba(X)
    for i in range(len(X)):
        np.testing.assert_array_equal(clf.predict_proba(X[[i]])[0], proba[i])
    np.testing.assert_array_equal(clf.set_params(batch_size=1000).predict_proba(X), proba)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_streams_are_prefix_stable_and_ignore_batching(X):
    key = input_keys(X[:1])[0]
    out = torch.empty((1200, 3), device="cuda")
    full = torch_noise_(out, key, 7, 0, BlockGenerator("cuda")).cpu()
    for start, stop in [(0, 10), (3, 40), (100, 700), (1000, 1200)]:
        part = torch.empty((stop - start, 3), device="cuda")
        got = torch_noise_(part, key, 7, start, BlockGenerator("cuda")).cpu()
        np.testing.assert_array_equal(got.numpy(), full[start:stop].numpy())
    model = _linear().cuda()
    ref = _counts(model, X)
    np.testing.assert_array_equal(_counts(model, X[::-1].copy()), ref[::-1])
    np.testing.assert_array_equal(_counts(model, X[2:5]), ref[2:5])
    for batch_size in (7, 1000):
        np.testing.assert_array_equal(_counts(model, X, batch_size=batch_size), ref)
    np.testing.assert_array_equal(_counts(model, torch.from_numpy(X).cuda()), ref)


def test_large_inputs_hashed_on_threads_get_the_same_keys():
    X = np.random.RandomState(0).rand(4, 700_000).astype(np.float32)  # over 8 MiB
    X[2] = X[0]
    keys = input_keys(X)
    assert keys == [input_keys(X[[i]])[0] for i in range(4)] and keys[0] == keys[2]


@pytest.mark.parametrize("generic", [False, True], ids=["torch", "generic"])
def test_small_batches_generate_each_block_once(monkeypatch, generic):
    from sklearn_certify.smoothing import _streams

    seeded = []
    original = _streams.block_seed
    monkeypatch.setattr(
        _streams, "block_seed", lambda *args: seeded.append(args[2]) or original(*args)
    )
    model = TorchAdapter(_linear()) if generic else _linear()
    X = np.zeros((2, N_FEATURES), np.float32)
    X[1] = 1.0
    small = _counts(model, X, n_draws=1000, batch_size=10)
    assert sorted(seeded) == sorted(2 * list(range(7)))  # blocks 0..6 of each input
    np.testing.assert_array_equal(small, _counts(model, X, n_draws=1000, batch_size=1000))


# ----------------------------------------------------------------------------- entropy
def _fingerprints(generator, seeds, width=1):
    """The first two draws of each block seed, as bytes (a block's identity)."""
    out = torch.empty((2, width))
    return [generator.normal_(out, seed).numpy().tobytes() for seed in seeds]


def test_every_bit_of_a_block_seed_changes_the_noise():
    """torch's manual_seed keeps 32 bits on the CPU: seeds equal in those bits must still
    draw different noise, whichever of the 128 bits differs."""
    base = bytes(16)
    flipped = [(1 << bit).to_bytes(16, "little") for bit in (0, 31, 32, 63, 64, 100, 127)]
    prints = _fingerprints(BlockGenerator(), [base, *flipped])
    assert len(set(prints)) == len(prints)
    # reproducible: the same block seed always draws the same noise
    assert _fingerprints(BlockGenerator(), [flipped[3]]) == [prints[4]]


def test_no_two_blocks_collide_where_32_bit_seeds_would():
    """200,000 block seeds: with 32 effective bits about 4.7 pairs of identical blocks are
    expected (a collision-free run has probability 1 %); with 128 bits, none."""
    n = 200_000
    seeds = [block_seed(12345, i.to_bytes(16, "little"), 0) for i in range(n)]
    low_bits = {int.from_bytes(seed, "little") & 0xFFFFFFFF for seed in seeds}
    assert len(low_bits) < n  # the old seeding would have drawn equal blocks here
    prints = _fingerprints(BlockGenerator(), seeds)
    assert len(set(prints)) == n


def test_numpy_blocks_use_every_bit_of_the_seed(monkeypatch):
    from sklearn_certify.smoothing import _streams

    key = input_keys(np.zeros((1, 2), np.float32))[0]
    # two block seeds that agree in their low 64 bits
    fake = iter([bytes(8) + b"\x01" + bytes(7), bytes(16)])
    monkeypatch.setattr(_streams, "block_seed", lambda *args: next(fake))
    a = numpy_noise(key, 0, 0, 16, (2,), np.float64)
    b = numpy_noise(key, 0, 0, 16, (2,), np.float64)
    assert not np.array_equal(a, b)


def test_seed_none_takes_os_entropy_not_the_global_numpy_state(X):
    np.random.seed(0)  # noqa: NPY002 - the global state an attacker could know
    first = draw_seed(None)
    np.random.seed(0)  # noqa: NPY002 - the global state an attacker could know
    assert draw_seed(None) != first
    assert 0 <= first < 2**128
    # the same int always gives the same 128-bit seed; different ints different ones
    assert draw_seed(3) == draw_seed(3) != draw_seed(4)
    assert draw_seed(np.random.RandomState(3)) == draw_seed(3)
    model = _linear()
    np.random.seed(0)  # noqa: NPY002 - the global state an attacker could know
    a = _counts(model, X, random_state=None, n_draws=400)
    np.random.seed(0)  # noqa: NPY002 - the global state an attacker could know
    b = _counts(model, X, random_state=None, n_draws=400)
    assert not np.array_equal(a, b)
