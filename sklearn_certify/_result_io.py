"""The file format of :meth:`CertificationResult.save` and :meth:`CertificationResult.load`.

One ``.npz`` archive (``numpy.savez_compressed``), read back with
``allow_pickle=False``: nothing in it is executed on load.

Arrays
    ``sizes`` (int64, n_inputs x n_radii), ``radius`` (n_radii,), ``n_true`` (int64,
    n_inputs) and, when the result has them, ``Y`` (n_inputs x n_classes), ``counts``
    (n_inputs x n_classes), ``lower`` and ``upper`` (float, n_inputs x n_classes) and
    ``n_draws_used`` (int64, n_inputs) and, for sequential certification,
    ``alpha_share`` (float, n_inputs: the share of alpha behind each input's bounds).
``settings``
    A 0-d unicode array holding a JSON object: ``format`` (always
    ``"sklearn-certify/CertificationResult"``), ``format_version`` (an int, see
    :data:`FORMAT_VERSION`), ``library_version``, ``certificate``, ``method``, ``k``,
    ``alpha``, ``n_draws``, ``label`` and ``params`` (the certificate's parameters, e.g.
    ``{"k_prime": 1, "sigma": 0.5}``).

A reader refuses a file whose ``format_version`` is newer than its own; a newer reader
keeps reading older versions.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["FORMAT_VERSION", "save_result", "load_result"]

#: Version of the file format written by this library.
FORMAT_VERSION = 1
_FORMAT = "sklearn-certify/CertificationResult"
_REQUIRED = ("sizes", "radius", "n_true")
_OPTIONAL = ("Y", "counts", "lower", "upper", "n_draws_used", "alpha_share")


def save_result(result, path) -> None:
    """Write ``result`` to ``path`` (exactly that path; atomically replaced)."""
    from . import __version__

    settings = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "certificate": result.certificate,
        "method": result.method,
        "k": int(result.k),
        "alpha": _plain(result.alpha),
        "n_draws": _plain(result.n_draws),
        "label": result.label,
        "params": {key: _plain(value) for key, value in result.params.items()},
    }
    arrays = {name: np.asarray(getattr(result, name)) for name in _REQUIRED}
    for name in _OPTIONAL:
        value = getattr(result, name, None)
        if value is not None:
            arrays[name] = np.asarray(value)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez_compressed(file, settings=np.array(json.dumps(settings)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_result(cls, path):
    """Read a result written by :func:`save_result`; ``ValueError`` if it is not one."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            data = {name: archive[name] for name in archive.files}
        if not all(isinstance(value, np.ndarray) for value in data.values()):
            raise ValueError("an entry is not a numpy array")
        settings = json.loads(str(data.pop("settings")[()]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(
            f"{path!r} is not a readable CertificationResult file ({exc})."
        ) from None
    if not isinstance(settings, dict) or settings.get("format") != _FORMAT:
        raise ValueError(f"{path!r} is not a CertificationResult file.")
    version = settings.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path!r} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path!r} was written in CertificationResult format version {version} "
            f"(by sklearn-certify {settings.get('library_version')}); this version reads "
            f"formats up to {FORMAT_VERSION}. Upgrade sklearn-certify to load it."
        )
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise ValueError(f"{path!r} is damaged: arrays {missing} are missing.")
    try:
        result = cls(
            data["sizes"], data["radius"], settings["k"], data["n_true"],
            Y=data.get("Y"), certificate=settings["certificate"], method=settings["method"],
            counts=data.get("counts"), n_draws=settings["n_draws"], alpha=settings["alpha"],
            lower=data.get("lower"), upper=data.get("upper"), params=settings["params"],
            label=settings["label"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path!r} is damaged: {exc!r}.") from None
    _check_shapes(result, data, path)
    if "n_draws_used" in data:
        result.n_draws_used = data["n_draws_used"].astype(np.int64)
    if "alpha_share" in data:
        result.alpha_share = data["alpha_share"].astype(np.float64)
    return result


def _check_shapes(result, data, path) -> None:
    n_inputs = result.sizes.shape[0]
    rows = {name: len(data[name]) for name in ("n_true", *_OPTIONAL) if name in data}
    wrong = {name: n for name, n in rows.items() if n != n_inputs}
    if wrong:
        raise ValueError(
            f"{path!r} is damaged: {n_inputs} inputs in sizes but rows {wrong}."
        )


def _plain(value):
    """A JSON-serialisable Python scalar for a numpy or Python scalar (None kept)."""
    return value.item() if isinstance(value, np.generic) else value
