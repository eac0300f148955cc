"""CertificationResult.save / load: a pickle-free, versioned file."""

import json
import zipfile

import numpy as np
import pytest

from sklearn_certify import CertificationResult
from sklearn_certify._result_io import FORMAT_VERSION

from .test_results import _bagging, _dpa, _gaussian

_ARRAYS = ("sizes", "radius", "n_true", "Y", "counts", "lower", "upper", "n_draws_used")


def _assert_same(a, b):
    for name in _ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None
        else:
            np.testing.assert_array_equal(x, y)
            assert np.asarray(x).dtype == np.asarray(y).dtype
    for name in ("k", "certificate", "method", "n_draws", "alpha", "params", "label"):
        assert getattr(a, name) == getattr(b, name)


@pytest.mark.parametrize(
    "make, recertify",
    [
        (_gaussian, dict(radius=[0.0, 0.3, 0.7], k=3, alpha=0.05, method="first-term")),
        (_bagging, dict(radius=[0, 3], k=1, alpha=0.1, attack="deletion")),
        (_dpa, dict(radius=[0, 2, 4], k=3, method="dpa")),
    ],
    ids=["gaussian", "bagging", "dpa"],
)
def test_a_loaded_result_is_the_saved_one_and_recertifies_alike(tmp_path, make, recertify):
    result = make(label="run 1")[0]
    path = tmp_path / "result.cert"  # any name: no suffix is added
    result.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["result.cert"]
    loaded = CertificationResult.load(str(path))
    _assert_same(loaded, result)
    _assert_same(loaded.recertify(**recertify), result.recertify(**recertify))
    np.testing.assert_array_equal(loaded.f1(), result.f1())


def test_the_file_is_plain_arrays_and_json(tmp_path):
    result = _gaussian()[0]
    result.save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz", allow_pickle=False) as archive:
        assert set(archive.files) == {"settings", *_ARRAYS}
        settings = json.loads(str(archive["settings"]))
    assert settings["format"] == "sklearn-certify/CertificationResult"
    assert settings["format_version"] == FORMAT_VERSION
    assert settings["params"] == {"k_prime": 1, "sigma": 0.5}
    assert (settings["k"], settings["alpha"], settings["method"]) == (2, 0.01, "multiguard")


def test_draws_used_per_input_are_kept(tmp_path):
    result = _gaussian()[0]
    # per-input draws that can be behind the counts (each at least the row's largest count)
    result.n_draws_used = np.minimum(
        result.counts.max(axis=1) + np.arange(len(result.sizes)), result.n_draws
    ).astype(np.int64)
    assert len(set(result.n_draws_used.tolist())) > 1
    result.save(tmp_path / "r.npz")
    np.testing.assert_array_equal(
        CertificationResult.load(tmp_path / "r.npz").n_draws_used, result.n_draws_used
    )


def test_a_result_without_counts_round_trips(tmp_path):
    result = CertificationResult([[1, 0]], [0.0, 1.0], 1, [1])
    result.save(tmp_path / "r.npz")
    _assert_same(CertificationResult.load(tmp_path / "r.npz"), result)


def _rewrite(path, **changes):
    """Rewrite a saved file with some settings or arrays changed (None: removed)."""
    with np.load(path, allow_pickle=False) as archive:
        data = {name: archive[name] for name in archive.files}
    settings = json.loads(str(data["settings"]))
    for key, value in changes.items():
        if key in data and key != "settings":
            if value is None:
                del data[key]
            else:
                data[key] = value
        else:
            settings[key] = value
    data["settings"] = np.array(json.dumps(settings))
    with open(path, "wb") as file:
        np.savez(file, **data)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(format_version=FORMAT_VERSION + 1), "newer|format version 2.*Upgrade"),
        (dict(format_version="1"), "invalid format_version"),
        (dict(format="something else"), "not a CertificationResult file"),
        (dict(sizes=None), r"arrays \['sizes'\] are missing"),
        (dict(counts=np.zeros((3, 4), int)), "damaged.*counts"),
        (dict(k=None), "damaged"),
    ],
)
def test_newer_or_damaged_files_are_clear_errors(tmp_path, changes, match):
    path = tmp_path / "r.npz"
    _gaussian()[0].save(path)
    _rewrite(path, **changes)
    with pytest.raises(ValueError, match=match):
        CertificationResult.load(path)


def test_truncated_or_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "r.npz"
    _gaussian()[0].save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable CertificationResult file"):
        CertificationResult.load(path)
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable CertificationResult file"):
        CertificationResult.load(path)
    np.savez(path, x=np.zeros(3))  # an npz, but not a result
    with pytest.raises(ValueError, match="not a readable CertificationResult file"):
        CertificationResult.load(path)
    with zipfile.ZipFile(path, "w") as archive:  # a pickled array is never unpickled
        archive.writestr("settings.npy", b"")
    with pytest.raises(ValueError, match="not a readable"):
        CertificationResult.load(path)
    with pytest.raises(FileNotFoundError):
        CertificationResult.load(tmp_path / "missing.npz")


def test_a_sequential_result_round_trips_with_its_alpha_shares(tmp_path):
    result = _gaussian()[0]
    n = len(result.sizes)
    sequential = CertificationResult.from_counts(
        result.counts,
        result.Y,
        result.radius,
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=result.n_draws,
        alpha=0.01,
        k_prime=1,
        sigma=0.5,
        n_draws_used=np.full(n, result.n_draws),
        alpha_share=np.full(n, 0.9),
    )
    sequential.save(tmp_path / "s.npz")
    loaded = CertificationResult.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.alpha_share, sequential.alpha_share)
    np.testing.assert_array_equal(
        loaded.recertify(radius=[0.5]).sizes, sequential.recertify(radius=[0.5]).sizes
    )
    # bounds at 0.9 alpha: never looser than the fixed-n ones
    assert np.all(sequential.lower <= result.lower) and np.all(sequential.upper >= result.upper)


def _sequential_dpa_and_bare():
    """One result of each kind a file holds: sequential Gaussian (every array), DPA
    (integer radii, no alpha) and a bare one (sizes only)."""
    counts = np.array([[150, 40, 10], [20, 160, 20], [64, 0, 0], [30, 30, 40]])
    Y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    gaussian = CertificationResult.from_counts(
        counts,
        Y,
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
    return [gaussian, _dpa()[0], CertificationResult([[1, 0]], [0.0, 1.0], 1, [1])]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["sequential-gaussian", "dpa", "bare"])
def test_a_bit_flip_anywhere_is_a_value_error_or_changes_nothing(tmp_path, which):
    """Flip one bit at many offsets of a saved file (every byte of the zip directory,
    every byte, or every third byte of the larger file, elsewhere; the bit cycling
    through the 8 positions): load either raises the documented ValueError naming the
    file, or (a flip in a field zip ignores, such as a timestamp) returns the saved
    result unchanged. Never zlib.error, NotImplementedError or another exception, and
    never a result with other content or a member silently missing."""
    result = _sequential_dpa_and_bare()[which]
    path = tmp_path / "r.npz"
    result.save(path)
    raw = path.read_bytes()
    directory = raw.find(b"PK\x01\x02")
    offsets = sorted({*range(0, len(raw), 3 if which == 0 else 1), *range(directory, len(raw))})
    refused = 0
    for offset in offsets:
        damaged = bytearray(raw)
        damaged[offset] ^= 1 << (offset % 8)
        path.write_bytes(bytes(damaged))
        try:
            loaded = CertificationResult.load(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            refused += 1
            continue
        _assert_same(loaded, result)
        for name in ("alpha_share", "n_draws_used"):
            if getattr(result, name) is None:
                assert getattr(loaded, name) is None
            else:
                np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert refused > 0.6 * len(offsets)  # the data, names and sizes are all checked


def test_every_member_of_a_sequential_result_round_trips(tmp_path):
    result = _sequential_dpa_and_bare()[0]
    result.save(tmp_path / "s.npz")
    loaded = CertificationResult.load(tmp_path / "s.npz")
    _assert_same(loaded, result)
    np.testing.assert_array_equal(loaded.alpha_share, result.alpha_share)
    assert loaded.alpha_share.dtype == np.float64
