"""The sampling engine of Gaussian smoothing: label counts over noisy copies.

For every input ``x`` the engine draws ``n_draws`` noisy copies ``x + eps`` with
``eps ~ N(0, sigma^2 I)``, asks the base model for its top-k' labels on each copy and
counts, per label, in how many copies it was among them (MultiGuard Section 3.3: the
label frequencies ``n_i``). Nothing here knows about estimators or certificates.

Work layout
-----------
The ``n_inputs * n_draws`` noisy copies are enumerated in input-major order (all
draws of input 0, then all draws of input 1, ...) and cut into consecutive batches
of ``batch_size`` copies; a batch may hold the tail of one input's draws and the head
of the next one's. Each batch is one forward pass, so a pass is always full whatever
the ratio of ``batch_size`` to ``n_draws``, and memory is bounded by ``batch_size``
copies (plus at most one block of an input's noise, see
:mod:`~sklearn_certify.smoothing._streams`), never by ``n_inputs * n_draws``.

* **Torch path** (``torch.nn.Module``, or a fitted skorch ``NeuralNet`` through its
  ``module_`` and ``device``): inputs are moved to the model's device a chunk at a time
  (at most ``batch_size`` clean inputs at once, :func:`chunk_inputs`); each input's
  noise is drawn there from its own stream by a ``torch.Generator`` on that device;
  the forward pass runs under ``torch.inference_mode`` with every submodule in eval
  mode (each one's mode is restored afterwards); top-k' and the counting
  (``index_add_`` of ones into the flattened ``(inputs, labels)`` count table,
  deterministic) stay on the device. Counts go to the host once per input chunk, not
  per batch. On a CPU whose cores torch's threads leave half free, each batch's noisy
  copies are made on a second thread while the model runs on the previous batch
  (:func:`_ahead`): the same values, one more batch in memory. The module runs as
  :class:`SamplingModels` prepares it (``sampling_dtype``, ``compile``); the noise
  never depends on that.
* **Generic path** (any estimator with ``decision_function`` or ``predict_proba``,
  including the list-of-arrays form of multi-output classifiers): numpy noise from
  each input's stream (``numpy.random.Generator``), scores from
  :func:`sklearn_certify._utils._scores.label_scores`, top-k' from
  :func:`sklearn_certify._utils._scores.top_k_indicator`.

Ties
----
A top-k' always breaks ties towards the lower label index: the torch path sorts the
scores with a stable descending sort and keeps the first k' positions, the generic
path uses a stable argsort of the negated scores. A model that scores every label the
same thus always predicts labels ``0 .. k'-1``.

NaN scores cannot be ranked: they mean a broken model, and raise a ``ValueError`` that
names the inputs and labels affected (the torch path checks once per input chunk, on
the device, and replays that chunk's draws to locate them).

Seeding
-------
One 128-bit seed is drawn per call (:func:`draw_seed`): from the operating system's
entropy for ``random_state=None``, else from
:func:`sklearn.utils.check_random_state` (four ``randint(2**31 - 1)`` words). Each input's
noise is its own
stream, determined by that seed and the input's content only
(:mod:`~sklearn_certify.smoothing._streams`): an input's counts do not depend on its
position in X, on the other inputs, on ``batch_size``, or on how the inputs are split
across processes or workers. The same ``random_state`` (an int, or a ``RandomState``
in the same state) therefore gives identical counts for equal inputs on the same kind
of device. CPU and CUDA generators (and CUDA GPUs of different models) draw other
values: the counts then differ, but follow the same distribution.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from types import SimpleNamespace

import numpy as np
import torch
from sklearn.utils import check_random_state

from .._utils._devices import module_dtype
from .._utils._random import SEED_HIGH
from .._utils._scores import check_no_nan_scores, label_scores, nan_scores_error, top_k_indicator
from ._models import (
    _check_width,
    _eval_mode,
    _module_scores,
    is_torch_model,
    module_input,
    torch_module_and_device,
)
from ._runners import SamplingModels, _spare_cores, check_sampling_options
from ._streams import SEED_BITS, BlockGenerator, input_keys, numpy_noise, torch_noise_

__all__ = ["check_scores_width", "chunk_inputs", "draw_seed", "sample_label_counts"]

# The torch path moves about this many batches' worth of inputs to the device at a
# time, and copies their counts back to the host once.
_BATCHES_PER_CHUNK = 32


def draw_seed(random_state) -> int:
    """The 128-bit seed of one sampling call.

    ``None`` takes fresh entropy from the operating system (:func:`secrets.randbits`),
    never from numpy's global random state, so that no one who knows or sets that state
    (``np.random.seed(0)``) can predict the noise. An int or a ``RandomState`` draws four
    31-bit words from ``check_random_state(random_state)``: the same int always gives
    the same seed, so calls are reproducible.
    """
    if random_state is None:
        return secrets.randbits(SEED_BITS)
    words = check_random_state(random_state).randint(SEED_HIGH, size=4)
    return sum(int(word) << (31 * i) for i, word in enumerate(words))


def sample_label_counts(
    model,
    X,
    *,
    n_classes: int,
    sigma: float,
    k_prime: int,
    n_draws: int,
    batch_size: int,
    random_state=None,
    verbose: int = 0,
    seed: int | None = None,
    first_draw: int = 0,
    device=None,
    input_offset: int = 0,
    sampling_dtype: str | None = None,
    compile: bool = False,
    models: SamplingModels | None = None,
    overlap: bool | None = None,
) -> np.ndarray:
    """Count how often each label is in the base model's top-k' under Gaussian noise.

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch NeuralNet, or estimator
        The base model. Torch models run on their own device; other estimators need
        ``decision_function`` or ``predict_proba``. Its scores must have one column
        per label (a binary estimator's single decision column ``s`` is read as the
        two labels' scores ``(-s, s)``).
    X : array-like or torch.Tensor of shape (n_inputs, ...)
        Clean inputs, flat or image-shaped: each noisy copy has ``X[i]``'s shape.
    n_classes : int
        Number of labels the model scores; checked against its output.
    sigma : float
        Standard deviation of the isotropic Gaussian noise.
    k_prime : int
        Number of labels in each base prediction.
    n_draws : int
        Noisy copies per input.
    batch_size : int
        Noisy copies per forward pass (per call to the estimator's scoring method).
    random_state : int, RandomState instance or None
        Source of the one seed drawn per call (see the module docstring).
    verbose : int
        Show a tqdm progress bar over noisy copies when > 0.
    seed : int or None
        The seed itself, instead of one drawn from ``random_state`` (shards of one call
        share their caller's seed).
    first_draw : int
        Index of each input's first draw in its stream: the counts are over draws
        ``[first_draw, first_draw + n_draws)``. Counts over consecutive ranges add up
        to the counts over their union.
    device : str, torch.device or None
        Run a torch model on this device (a copy of its module is moved there) instead
        of its own.
    input_offset : int
        Index of ``X[0]`` among the caller's inputs, so that an error naming inputs
        (NaN scores) names them as the caller knows them when ``X`` is a shard.
    sampling_dtype : {None, "float32", "bfloat16", "float16"}
        The dtype a torch model runs in (see :class:`SamplingModels`); None runs it as
        it is. The noise is drawn and added as with None, whatever this is.
    compile : bool
        Run a torch model through ``torch.compile`` (once per ``models`` and device).
    models : SamplingModels or None
        Where the prepared (cast, moved or compiled) module is kept between calls; None
        prepares it for this call only.
    overlap : bool or None
        On a CPU device, draw each batch's noise on a second thread while the model
        runs on the previous batch (the counts are the same either way). None: when
        torch's threads leave as many cores free as they use (``torch.set_num_threads``).

    Returns
    -------
    counts : ndarray of int64, shape (n_inputs, n_classes)
        Each row sums to ``n_draws * k_prime``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(4, 3)
    >>> X = torch.zeros(2, 4)
    >>> counts = sample_label_counts(net, X, n_classes=3, sigma=0.5, k_prime=1,
    ...                              n_draws=100, batch_size=64, random_state=0)
    >>> counts.shape, counts.sum(axis=1).tolist()
    ((2, 3), [100, 100])
    """
    if k_prime > n_classes:
        raise ValueError(f"k_prime={k_prime} exceeds the number of labels {n_classes}.")
    if seed is None:
        seed = draw_seed(random_state)
    if not torch.is_tensor(X):
        X = np.asarray(X)
    n_inputs = len(X)
    if n_inputs == 0:
        return np.zeros((0, n_classes), dtype=np.int64)
    with _progress(n_inputs * n_draws, verbose) as bar:
        if is_torch_model(model):
            runner = (models or SamplingModels()).runner(model, device, sampling_dtype, compile)
            return _torch_counts(
                runner,
                X,
                n_classes,
                sigma,
                k_prime,
                n_draws,
                batch_size,
                seed,
                first_draw,
                bar,
                input_offset,
                overlap,
            )
        check_sampling_options(model, sampling_dtype, compile)
        return _numpy_counts(
            model,
            X,
            n_classes,
            sigma,
            k_prime,
            n_draws,
            batch_size,
            seed,
            first_draw,
            bar,
            input_offset,
        )


def _batches(n_copies: int, batch_size: int):
    """``(start, stop)`` of consecutive batches over ``n_copies`` flat copy indices."""
    for start in range(0, n_copies, batch_size):
        yield start, min(start + batch_size, n_copies)


# --------------------------------------------------------------------------- torch path
def _torch_counts(
    runner,
    X,
    n_classes,
    sigma,
    k_prime,
    n_draws,
    batch_size,
    seed,
    first_draw,
    bar,
    input_offset=0,
    overlap=None,
):
    device = runner.device
    # the noise dtype comes from the module as given, never from its cast
    dtype = _sampling_dtype(X, runner.source_dtype)
    if overlap is None:
        overlap = device.type == "cpu" and _spare_cores()
    chunk = chunk_inputs(batch_size, n_draws)
    counts = np.empty((len(X), n_classes), dtype=np.int64)
    ones = torch.ones(batch_size * k_prime, dtype=torch.int64, device=device)
    # row of each flat copy's input in the flattened count table, made once per call
    cell_base = torch.arange(chunk * n_draws, device=device) // n_draws * n_classes
    # the next chunk's inputs are hashed on a thread while the device samples this one
    with _eval_mode(runner.module), torch.inference_mode(), ThreadPoolExecutor(1) as hashing:
        next_keys = hashing.submit(input_keys, X[:chunk])
        for first in range(0, len(X), chunk):
            keys = next_keys.result()
            next_keys = hashing.submit(input_keys, X[first + chunk : first + 2 * chunk])
            x = runner.model_input(X[first : first + chunk], dtype)
            dev_counts = torch.zeros((len(x), n_classes), dtype=torch.int64, device=device)
            flat_counts = dev_counts.view(-1)
            nan_seen = torch.zeros((), dtype=torch.bool, device=device)
            stream = (keys, seed, first_draw, sigma, n_draws, batch_size, dtype)
            # closed at once on an error, so a noise thread stops with it
            with closing(_noisy_inputs(x, *stream, overlap=overlap)) as inputs:
                for start, stop, noisy in inputs:
                    scores = runner.scores(noisy, n_classes)
                    nan_seen |= scores.isnan().any()
                    labels = _torch_top_k(scores, k_prime)
                    cells = (cell_base[start:stop, None] + labels).reshape(-1)
                    flat_counts.index_add_(0, cells, ones[: len(cells)])
                    bar.update(stop - start)
            if nan_seen.item():  # one check per chunk; replay the chunk to say where
                raise _locate_nan_scores(
                    (
                        (start, stop, runner.scores(noisy, n_classes))
                        for start, stop, noisy in _noisy_inputs(x, *stream, overlap=False)
                    ),
                    n_draws,
                    input_offset + first,
                )
            counts[first : first + len(x)] = dev_counts.cpu().numpy()
    return counts


def chunk_inputs(batch_size: int, n_draws: int) -> int:
    """Inputs moved to the device at a time: about ``_BATCHES_PER_CHUNK`` batches' worth
    of draws, and never more inputs than ``batch_size``, so the clean inputs held on the
    device take no more memory than one batch of noisy copies."""
    return max(1, min(batch_size, (batch_size * _BATCHES_PER_CHUNK) // n_draws))


def _segments(start: int, stop: int, n_draws: int):
    """``(i, a, b)``: flat copies ``[a, b)`` of batch ``[start, stop)`` belong to input i."""
    for i in range(start // n_draws, (stop - 1) // n_draws + 1):
        yield i, max(start, i * n_draws), min(stop, (i + 1) * n_draws)


def _noisy_inputs(
    x, keys, seed, first_draw, sigma, n_draws, batch_size, dtype, *, overlap: bool = False
):
    """``(start, stop, noisy)`` of each batch of noisy copies of the chunk ``x`` (input
    ``i`` has key ``keys[i]``); each input's noise comes from its own stream.

    With ``overlap``, the batches are made on a second thread, one batch ahead of the
    caller: the next batch's noise is drawn while the model runs on this one (torch
    releases the GIL while it computes). Same values either way.
    """
    batches = _make_noisy_inputs(x, keys, seed, first_draw, sigma, n_draws, batch_size, dtype)
    return _ahead(batches) if overlap else batches


def _make_noisy_inputs(x, keys, seed, first_draw, sigma, n_draws, batch_size, dtype):
    generator = BlockGenerator(x.device)  # one per pass: the pass owns it (not thread-safe)
    blocks = {}  # a block split across batches is generated once
    with torch.inference_mode():
        for start, stop in _batches(len(x) * n_draws, batch_size):
            noisy = torch.empty((stop - start, *x.shape[1:]), device=x.device, dtype=dtype)
            for i, a, b in _segments(start, stop, n_draws):
                torch_noise_(
                    noisy[a - start : b - start],
                    keys[i],
                    seed,
                    first_draw + a - i * n_draws,
                    generator,
                    blocks,
                )
            noisy.mul_(sigma)
            _add_inputs_(noisy, x, start, n_draws)
            yield start, stop, noisy


def _ahead(batches):
    """The items of the iterator ``batches``, each one made on a worker thread while
    the caller works on the previous one (at most one item made ahead)."""
    with ThreadPoolExecutor(1) as worker:
        pending = worker.submit(next, batches, None)
        try:
            while True:
                item = pending.result()
                if item is None:
                    return
                pending = worker.submit(next, batches, None)
                yield item
        finally:  # stopped early (an error downstream): let the worker finish its item
            pending.cancel()
            try:
                pending.result()
            except Exception:  # noqa: BLE001 - the caller's error is the one to report
                pass
            # closed on the thread that ran it: its inference_mode guard is that thread's
            worker.submit(batches.close).result()


def _locate_nan_scores(batches, n_draws: int, first: int) -> ValueError:
    """The error naming the inputs and labels whose noisy copies got NaN scores."""
    inputs, labels = set(), set()
    for start, _, scores in batches:
        rows, columns = torch.nonzero(scores.isnan(), as_tuple=True)
        inputs.update((first + (start + rows) // n_draws).tolist())
        labels.update(columns.tolist())
    return nan_scores_error(sorted(inputs), sorted(labels))


def _add_inputs_(noisy: torch.Tensor, x: torch.Tensor, start: int, n_draws: int) -> None:
    """``noisy[j] += x[(start + j) // n_draws]`` in place.

    A batch usually spans one or two inputs: each run of copies of one input gets it
    added by broadcasting, without materialising ``x[owner]`` (a batch-sized gather
    and two more batch-sized temporaries). Batches spanning many inputs (n_draws much
    smaller than batch_size) use the gather. Same float operations as
    ``x[owner] + sigma * noise``, so the same counts.
    """
    stop = start + len(noisy)
    first, last = start // n_draws, (stop - 1) // n_draws
    if last - first < 8:
        for i in range(first, last + 1):
            a = max(start, i * n_draws) - start
            b = min(stop, (i + 1) * n_draws) - start
            noisy[a:b].add_(x[i])
    else:
        owner = torch.arange(start, stop, device=noisy.device) // n_draws
        noisy.add_(x[owner])


def _sampling_dtype(X, module_dtype: torch.dtype) -> torch.dtype:
    """The dtype inputs and noise are added in: X's own float dtype, the module's, and
    at least float32, whichever is widest.

    The noise must be added to the input the radius refers to, before any rounding to
    the module's dtype: the base classifier is then "round, then the module", a fixed
    function of ``x + noise``. Rounding ``x`` first (to float16, say) would let a
    perturbation of norm R move the rounded input by more than R.
    """
    x_dtype = torch.as_tensor(X[:0]).dtype
    if not x_dtype.is_floating_point:
        x_dtype = torch.float32
    return torch.promote_types(torch.promote_types(x_dtype, module_dtype), torch.float32)


def _torch_top_k(scores: torch.Tensor, k_prime: int) -> torch.Tensor:
    """Indices (b, k') of each row's k' highest scores, ties to the lower index.

    ``argmax`` returns the first maximal index; for k' > 1 a stable descending sort
    keeps equal scores in index order.
    """
    if k_prime == 1:
        return scores.argmax(dim=1, keepdim=True)
    return torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k_prime]


# ------------------------------------------------------------------------- generic path
def _numpy_counts(
    model, X, n_classes, sigma, k_prime, n_draws, batch_size, seed, first_draw, bar, input_offset=0
):
    X = np.asarray(X)
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    keys = input_keys(X)
    blocks = {}  # a block split across batches is generated once
    counts = np.zeros((len(X), n_classes), dtype=np.int64)
    for start, stop in _batches(len(X) * n_draws, batch_size):
        owner = np.arange(start, stop) // n_draws
        noise = np.concatenate(
            [
                numpy_noise(
                    keys[i],
                    seed,
                    first_draw + a - i * n_draws,
                    first_draw + b - i * n_draws,
                    X.shape[1:],
                    dtype,
                    blocks,
                )
                for i, a, b in _segments(start, stop, n_draws)
            ]
        )
        scores = _estimator_scores(
            model, X[owner].astype(dtype, copy=False) + sigma * noise, n_classes
        )
        check_no_nan_scores(scores, input_offset + owner)
        hits = top_k_indicator(scores, k_prime)
        # owner is sorted: sum the hits of each run of equal owners in one call
        heads = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        counts[owner[heads]] += np.add.reduceat(hits, heads, axis=0, dtype=np.int64)
        bar.update(stop - start)
    return counts


def _estimator_scores(model, X, n_classes):
    scores = label_scores(model, X)
    if scores.shape[1] == 1 and n_classes == 2:
        # sklearn's binary decision_function: one column, positive for classes_[1]
        scores = np.column_stack([-scores[:, 0], scores[:, 0]])
    _check_width(scores.shape[1], n_classes)
    return scores


# ----------------------------------------------------------------------------- progress
_SILENT_BAR = nullcontext(SimpleNamespace(update=lambda n: None))  # reusable, does nothing


def _progress(total: int, verbose: int):
    """A progress bar over the draws, a silent one unless ``verbose > 0``."""
    if verbose <= 0:
        return _SILENT_BAR
    from tqdm.auto import tqdm

    return tqdm(
        total=total, unit="draw", unit_scale=True, desc="sampling", mininterval=0.5, smoothing=0.1
    )


def check_scores_width(model, X_head, n_classes: int) -> None:
    """Score one input and check the model gives one score per label."""
    if is_torch_model(model):
        module, device = torch_module_and_device(model)
        x = module_input(model, X_head, device, module_dtype(module))
        with _eval_mode(module), torch.inference_mode():
            _module_scores(module, x, n_classes)
    else:
        _estimator_scores(model, np.asarray(X_head), n_classes)
