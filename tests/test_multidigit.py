"""make_multidigit: shapes, ranges, label statistics, determinism and no train/test leakage."""

import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_certify.datasets import make_multidigit


@pytest.fixture(scope="module")
def data():
    return make_multidigit(random_state=0, return_sources=True)


@pytest.fixture(scope="module")
def source_digits():
    digits = load_digits()
    return digits.images / 16.0, digits.target


def test_default_shapes_and_dtypes(data):
    X_train, X_test, Y_train, Y_test, S_train, S_test = data
    assert X_train.shape == (2000, 256) and X_test.shape == (500, 256)
    assert Y_train.shape == (2000, 10) and Y_test.shape == (500, 10)
    assert S_train.shape == (2000, 4) and S_test.shape == (500, 4)
    assert X_train.dtype == X_test.dtype == np.float32
    assert np.issubdtype(Y_train.dtype, np.integer) and np.isin(Y_train, (0, 1)).all()
    assert np.isin(Y_test, (0, 1)).all()


def test_pixels_in_unit_interval(data):
    for X in data[:2]:
        assert X.min() == 0.0 and X.max() == 1.0


def test_label_statistics(data):
    Y_train, Y_test = data[2], data[3]
    for Y in (Y_train, Y_test):
        per_image = Y.sum(axis=1)
        assert per_image.min() >= 1
        assert 2.0 < per_image.mean() < 3.0
        # all ten classes appear, roughly evenly
        assert np.all(Y.mean(axis=0) > 0.15)


def test_no_leakage_between_train_and_test(data):
    S_train, S_test = data[4], data[5]
    used_train = set(S_train[S_train >= 0].tolist())
    used_test = set(S_test[S_test >= 0].tolist())
    assert used_train and used_test
    assert used_train.isdisjoint(used_test)
    # and the pools are a stratified split: the test images see every digit class
    assert len(used_test) > 400


def test_images_and_labels_match_their_sources(data, source_digits):
    X_train, _, Y_train, _, S_train, _ = data
    images, target = source_digits
    for i in range(50):
        picture = X_train[i].reshape(16, 16)
        cells = [picture[:8, :8], picture[:8, 8:], picture[8:, :8], picture[8:, 8:]]
        for cell, source in zip(cells, S_train[i]):
            expected = np.zeros((8, 8)) if source < 0 else images[source]
            np.testing.assert_allclose(cell, expected, atol=1e-6)
        present = np.unique(target[S_train[i][S_train[i] >= 0]])
        np.testing.assert_array_equal(np.flatnonzero(Y_train[i]), present)


def test_repeated_digit_class_counts_once(data, source_digits):
    _, _, Y_train, _, S_train, _ = data
    target = source_digits[1]
    n_filled = (S_train >= 0).sum(axis=1)
    assert np.any(Y_train.sum(axis=1) < n_filled)  # some image repeats a class
    for i in np.flatnonzero(Y_train.sum(axis=1) < n_filled)[:20]:
        classes = target[S_train[i][S_train[i] >= 0]]
        assert Y_train[i].sum() == np.unique(classes).size


def test_image_shape_matches_flat(data):
    X_img_train, X_img_test, Y_train, _ = make_multidigit(image_shape=True, random_state=0)
    assert X_img_train.shape == (2000, 1, 16, 16) and X_img_test.shape == (500, 1, 16, 16)
    np.testing.assert_array_equal(X_img_train.reshape(2000, -1), data[0])
    np.testing.assert_array_equal(Y_train, data[2])


def test_determinism_with_random_state(data):
    again = make_multidigit(random_state=0, return_sources=True)
    for a, b in zip(data, again):
        np.testing.assert_array_equal(a, b)
    other = make_multidigit(random_state=1, return_sources=True)
    assert not np.array_equal(data[0], other[0])
    assert not np.array_equal(data[4], other[4])


def test_random_state_instance_is_used():
    rng = np.random.RandomState(5)
    first = make_multidigit(50, 10, random_state=rng)
    second = make_multidigit(50, 10, random_state=rng)
    assert not np.array_equal(first[0], second[0])


def test_grid_and_empty_prob():
    X_train, _, Y_train, _, S_train, _ = make_multidigit(
        300, 20, grid=(1, 3), empty_prob=0.0, return_sources=True, random_state=0
    )
    assert X_train.shape == (300, 8 * 24)
    assert S_train.shape == (300, 3) and np.all(S_train >= 0)
    X_one, _, Y_one, _ = make_multidigit(300, 20, grid=1, empty_prob=0.9, random_state=0)
    assert X_one.shape == (300, 64)
    np.testing.assert_array_equal(Y_one.sum(axis=1), 1)  # one cell, never empty


def test_fast():
    make_multidigit(10, 10, random_state=0)  # load the digits once
    start = time.perf_counter()
    make_multidigit(2000, 500, random_state=0)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": 0},
        {"n_test": 1.5},
        {"grid": (0, 2)},
        {"grid": "2x2"},
        {"empty_prob": 1.0},
        {"source_test_size": 0.0},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_multidigit(**kwargs)
