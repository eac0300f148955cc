"""The file format of :meth:`CertificationResult.save` and :meth:`CertificationResult.load`.

One ``.npz`` archive (``numpy.savez_compressed``), read back with
``allow_pickle=False``: nothing in it is executed on load.

Arrays
    ``sizes`` (int64, n_inputs x n_radii), ``radius`` (n_radii,), ``n_true`` (int64,
    n_inputs) and, when the result has them, ``Y`` (n_inputs x n_classes), ``counts``
    (in the certificate's ``counts_layout``: n_inputs x n_classes label counts, or
    n_inputs x n_models x k_base model votes), ``lower`` and ``upper`` (float,
    n_inputs x n_classes) and
    ``n_draws_used`` (int64, n_inputs) and, for sequential certification,
    ``alpha_share`` (float, n_inputs: the share of alpha behind each input's bounds).
``settings``
    A 0-d unicode array holding a JSON object: ``format`` (always
    ``"sklearn-certify/CertificationResult"``), ``format_version`` (an int, see
    :data:`FORMAT_VERSION`), ``library_version``, ``certificate``, ``method``, ``k``,
    ``alpha``, ``n_draws``, ``label`` and ``params`` (the certificate's parameters, e.g.
    ``{"k_prime": 1, "sigma": 0.5}``).

A reader refuses a file whose ``format_version`` is newer than its own; a newer reader
keeps reading older versions. It also refuses, with one ``ValueError`` naming the file
(and the field, where one is wrong), any damage it can see: a member whose CRC-32 fails
or that zip cannot read, a member count that differs from the archive's end record, an
unknown member or settings key, an array whose data does not match its ``.npy`` header
or that holds Python objects, and every field out of its domain (see
``_checked_fields``).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = ["FORMAT_VERSION", "save_result", "load_result"]

#: Version of the file format written by this library.
FORMAT_VERSION = 1
_FORMAT = "sklearn-certify/CertificationResult"
_REQUIRED = ("sizes", "radius", "n_true")
_OPTIONAL = ("Y", "counts", "lower", "upper", "n_draws_used", "alpha_share")
_EOCD_SIZE = 22
_MEMBERS = ("settings", *_REQUIRED, *_OPTIONAL)
_SETTINGS = (
    "format",
    "format_version",
    "library_version",
    "certificate",
    "method",
    "k",
    "alpha",
    "n_draws",
    "label",
    "params",
)


def save_result(result, path) -> None:
    """Write ``result`` to ``path`` (exactly that path; atomically replaced)."""
    from ._version import __version__

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


class _Damaged(ValueError):
    """A field of a result file that is not valid; ``load_result`` names the file."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# What reading a damaged archive can raise, from zipfile, zlib and the .npy header
# parser (FileNotFoundError is let through).
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    OverflowError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


def load_result(cls, path):
    """Read a result written by :func:`save_result`; ``ValueError`` if it is not one.

    Every member's CRC is checked, every array is parsed without pickles and checked
    against its header, and every field is validated (:func:`_checked_fields`) before
    the result is built: a damaged file raises one ``ValueError`` naming the file and,
    where one field is wrong, that field.
    """
    path = os.fspath(path)
    try:
        data = _read_members(path)
        settings = json.loads(_settings_text(data.pop("settings", None)))
    except FileNotFoundError:
        raise
    except _READ_ERRORS as exc:
        raise ValueError(f"{path!r} is not a readable CertificationResult file ({exc}).") from None
    if not isinstance(settings, dict) or settings.get("format") != _FORMAT:
        raise ValueError(f"{path!r} is not a CertificationResult file.")
    version = settings.get("format_version")
    if type(version) is not int or version < 1:
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
        fields = _checked_fields(data, settings)
    except _Damaged as exc:
        raise ValueError(f"{path!r} is damaged: {exc}") from None
    return cls(**fields)


def _read_members(path) -> dict:
    """The arrays of the archive by name: CRC-checked, pickle-free, exactly sized."""
    data = {}
    with open(path, "rb") as file:
        file.seek(max(file.seek(0, os.SEEK_END) - _EOCD_SIZE, 0))
        end = file.read(_EOCD_SIZE)
    # save_result writes no archive comment, so the end-of-central-directory record is
    # the file's last 22 bytes; its member count catches central-directory damage that
    # hides members from zipfile (a corrupted comment length swallows the entries after
    # it).
    if len(end) != _EOCD_SIZE or end[:4] != b"PK\x05\x06":
        raise ValueError("the zip archive's end record is not at the end of the file")
    listed = struct.unpack("<H", end[10:12])[0]
    with zipfile.ZipFile(path) as archive:
        if len(archive.infolist()) != listed:
            raise ValueError(
                f"the archive lists {listed} members but {len(archive.infolist())} can be read"
            )
        for name in archive.namelist():
            stem = name[:-4] if name.endswith(".npy") else None
            if stem not in _MEMBERS or stem in data:
                raise ValueError(f"unexpected member {name!r}")
            data[stem] = _read_npy(archive.read(name))  # read() checks the CRC
    return data


def _read_npy(raw: bytes) -> np.ndarray:
    """An array from ``.npy`` bytes; refuses objects and a body that does not match the
    header (no allocation beyond the bytes at hand)."""
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("an array holds Python objects")
    body = raw[stream.tell() :]
    count = math.prod(shape)
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"an array's data ({len(body)} bytes) does not match its header")
    array = np.frombuffer(body, dtype=dtype, count=count) if count else np.empty(0, dtype)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _settings_text(settings) -> str:
    if settings is None:
        raise ValueError("the settings entry is missing")
    if settings.ndim != 0 or settings.dtype.kind != "U":
        raise ValueError("the settings entry is not a string")
    return str(settings[()])


def _checked_fields(data: dict, settings: dict) -> dict:
    """The constructor arguments of the result in ``data`` and ``settings``, each field
    validated (``_Damaged`` naming the first bad one)."""
    from ._utils._validation import check_alpha, check_per_input_draws, check_radius
    from .certificates import CERTIFICATES

    unknown = sorted(set(settings) - set(_SETTINGS))
    absent = [key for key in _SETTINGS if key not in settings]
    if unknown or absent:
        raise _Damaged("settings", f"missing keys {absent}, unknown keys {unknown}")
    k = settings["k"]
    if type(k) is not int or k < 1:
        raise _Damaged("k", f"must be a positive int, got {k!r}")
    certificate = settings["certificate"]
    if certificate is not None and certificate not in CERTIFICATES:
        raise _Damaged("certificate", f"{certificate!r} is not one of {sorted(CERTIFICATES)}")
    spec = CERTIFICATES.get(certificate)
    method = settings["method"]
    if method is not None and (
        not isinstance(method, str) or (spec is not None and method not in spec.methods)
    ):
        raise _Damaged("method", f"{method!r} is not a method of {certificate!r}")
    alpha = settings["alpha"]
    if alpha is not None:
        try:
            alpha = check_alpha(alpha)
        except (TypeError, ValueError) as exc:
            raise _Damaged("alpha", str(exc)) from None
        if spec is not None and not spec.sampled:
            raise _Damaged("alpha", f"{certificate} certificates take no alpha")
    n_draws = settings["n_draws"]
    if n_draws is not None and (type(n_draws) is not int or n_draws < 1):
        raise _Damaged("n_draws", f"must be a positive int, got {n_draws!r}")
    for key in ("label", "library_version"):
        if settings[key] is not None and not isinstance(settings[key], str):
            raise _Damaged(key, f"must be a string, got {settings[key]!r}")
    params = settings["params"]
    if not isinstance(params, dict):
        raise _Damaged("params", f"must be a JSON object, got {params!r}")
    if (
        spec is not None
        and params
        and not (set(spec.params) <= set(params) <= set(spec.params) | set(spec.optional_params))
    ):
        raise _Damaged(
            "params", f"{certificate} certificates take {list(spec.params)}, got {sorted(params)}"
        )

    sizes, radius, n_true = data["sizes"], data["radius"], data["n_true"]
    _check_array("radius", radius, 1, "number")
    try:
        check_radius(radius, integer=spec is not None and spec.integer_radius)
    except (TypeError, ValueError) as exc:
        raise _Damaged("radius", str(exc)) from None
    _check_array("sizes", sizes, 2, "integer")
    n_inputs = sizes.shape[0]
    if sizes.shape[1] != radius.size:
        raise _Damaged("sizes", f"has {sizes.shape[1]} columns for {radius.size} radii")
    _check_array("n_true", n_true, 1, "integer", (n_inputs,))
    if np.any(n_true < 0):
        raise _Damaged("n_true", "holds a negative number of true labels")
    if np.any(sizes < 0) or np.any(sizes > np.minimum(k, n_true)[:, None]):
        raise _Damaged("sizes", "must lie between 0 and min(k, n_true) on every row")

    n_classes = None
    # the counts' layout is the certificate's: label counts (n_inputs, n_classes), or
    # every model's votes, (n_inputs, n_models, k_base) label indices (Finite Aggregation)
    votes = spec is not None and method is not None and spec.counts_layout(method) == "model-votes"
    for name in ("Y", "counts", "lower", "upper"):
        if name in data and not (votes and name == "counts"):
            kind = "number" if name != "Y" else "label"
            _check_array(name, data[name], 2, kind, (n_inputs, n_classes))
            n_classes = data[name].shape[1]
    if votes and "counts" in data:
        _check_array("counts", data["counts"], 3, "number", (n_inputs, None, None))
        if n_classes is not None and np.any(data["counts"] >= n_classes):
            raise _Damaged("counts", f"holds a vote for a label beyond the {n_classes}")
    if n_classes is not None and k > n_classes:
        raise _Damaged("k", f"k={k} exceeds the {n_classes} labels")
    Y = data.get("Y")
    if Y is not None and not np.array_equal(n_true, Y.sum(axis=1)):
        raise _Damaged("n_true", "is not the number of true labels of each row of Y")
    if ("lower" in data) != ("upper" in data):
        raise _Damaged(
            "lower" if "lower" not in data else "upper", "is missing: lower and upper come together"
        )
    lower, upper = data.get("lower"), data.get("upper")
    if lower is not None:
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise _Damaged(
                "lower" if not np.all(np.isfinite(lower)) else "upper", "holds NaN or infinity"
            )
        if np.any(lower < 0) or np.any(upper > 1) or np.any(lower > upper):
            bad = "lower" if np.any(lower < 0) or np.any(lower > upper) else "upper"
            raise _Damaged(bad, "bounds must satisfy 0 <= lower <= upper <= 1")
    counts = data.get("counts")
    if counts is not None and not (
        np.all(np.isfinite(counts)) and np.all(counts == np.round(counts)) and np.all(counts >= 0)
    ):
        raise _Damaged("counts", "must hold finite non-negative whole numbers")
    n_draws_used = data.get("n_draws_used")
    alpha_share = data.get("alpha_share")
    if alpha_share is not None and n_draws_used is None:
        raise _Damaged("alpha_share", "comes without n_draws_used")
    if n_draws_used is not None:
        name = "n_draws_used"
        try:
            n_draws_used, alpha_share = check_per_input_draws(
                n_draws_used, alpha_share, n_inputs, n_draws
            )
            name = "counts"
            if (
                counts is not None
                and spec is not None
                and spec.sampled
                and np.any(counts > n_draws_used[:, None])
            ):
                raise ValueError("counts exceed the draws used on a row")
        except (TypeError, ValueError) as exc:
            if "alpha_share" in str(exc):
                name = "alpha_share"
            raise _Damaged(name, str(exc)) from None
    if spec is not None and params and n_classes is not None and Y is not None:
        _check_params(spec, k, radius, method, params, n_classes)
    return dict(
        sizes=sizes,
        radius=radius,
        k=k,
        n_true=n_true,
        Y=Y,
        certificate=certificate,
        method=method,
        counts=counts,
        n_draws=n_draws,
        alpha=alpha,
        lower=lower,
        upper=upper,
        params=params,
        label=settings["label"],
        n_draws_used=n_draws_used,
        alpha_share=alpha_share,
    )


def _check_array(
    name: str, array: np.ndarray, ndim: int, kind: str, shape: tuple | None = None
) -> None:
    """``array`` has ``ndim`` dimensions, the given shape (None: any size) and a dtype of
    ``kind``: "integer", "number" (integer or float; never bool) or "label" (0/1)."""
    if array.ndim != ndim:
        raise _Damaged(name, f"must be {ndim}-D, got shape {array.shape}")
    if shape is not None and any(n is not None and n != m for n, m in zip(shape, array.shape)):
        expected = tuple("any" if n is None else n for n in shape)
        raise _Damaged(name, f"has shape {array.shape}, expected {expected}")
    dtype = array.dtype
    if kind == "label":
        if (
            not (
                dtype.kind == "b"
                or np.issubdtype(dtype, np.integer)
                or np.issubdtype(dtype, np.floating)
            )
            or not np.isin(array, (0, 1)).all()
        ):
            raise _Damaged(name, "must hold only 0 and 1")
        return
    numeric = (
        np.issubdtype(dtype, np.integer)
        if kind == "integer"
        else np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    )
    if dtype.kind == "b" or not numeric:
        raise _Damaged(name, f"must hold {kind}s, got dtype {dtype}")


def _check_params(spec, k, radius, method, params, n_classes) -> None:
    """The certificate's parameters, checked by its own function on zero inputs."""
    method = method if method is not None else spec.methods[0]
    empty = np.zeros((0, n_classes))
    labels = np.zeros((0, n_classes), dtype=np.int64)
    try:
        args = (
            (empty, empty, labels)
            if spec.sampled
            else (spec.empty_counts(method, params, n_classes), labels)
        )
        spec.check_method(method, params)
        spec.function(*args, k=k, radius=radius, method=method, **params)
    except (TypeError, ValueError) as exc:
        raise _Damaged("params", str(exc)) from None


def _plain(value):
    """A JSON-serialisable Python scalar for a numpy or Python scalar (None kept)."""
    return value.item() if isinstance(value, np.generic) else value
