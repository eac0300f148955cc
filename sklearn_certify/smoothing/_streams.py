"""Per-input noise streams: an input's noisy draws depend on the seed and on the input only.

Draw ``j`` of input ``x`` is a fixed function of the call's seed (one integer drawn from
``random_state``), the content of ``x`` and ``j``. Nothing else matters: not the
position of ``x`` in X, not the other inputs, not ``batch_size``, not the shard, the
process or ``n_jobs``. So an input's counts are the same whether it is sampled alone or
among others, in any order, in one process or across many workers.

Blocks
------
An input's draws are cut into fixed blocks: draws ``[0, 16)``, ``[16, 32)``,
``[32, 64)``, ... doubling up to :data:`BLOCK_MAX` draws, then blocks of
:data:`BLOCK_MAX` draws (:func:`block_bounds`). Block ``b`` of input ``x`` is generated
whole, by one call of the random number generator, from the 128-bit block seed

    ``blake2b(seed, key(x), b)``  (:func:`block_seed`, a 16-byte digest)

where ``seed`` is the call's 128-bit seed and ``key(x)`` a blake2b digest of the input's
bytes, dtype and shape (:func:`input_keys`, computed once per input). Draws
``[start, stop)`` are then cut out of the blocks they fall in. Generating blocks whole
(never a prefix of one) is what makes the stream prefix-stable: torch's ``randn`` of n
values is not the first n values of a larger ``randn``, so a draw must never depend on
how many draws were asked for. In particular the first ``m`` draws of an input are the
same whatever ``n_draws`` is, so a run that stops early, or resumes, sees exactly the
draws a run of ``m`` draws would see.

The blocks start small so that a few draws per input cost little extra noise (at most
16 draws for ``n_draws <= 16``, less than twice ``n_draws`` up to ``BLOCK_MAX``); they
stop growing at ``BLOCK_MAX`` so that the noise of one block bounds the memory the
stream needs beyond one batch. A block split across batches is generated once and kept
until the batches have used it. There is one generator call per (input, block), never
one per draw.

Entropy
-------
Every bit of the 128-bit block seed reaches the generator, so two blocks (of one input
or of two) draw identical noise only if their block seeds collide: probability about
``m**2 / 2**129`` among ``m`` blocks (below ``1e-25`` for ``10**6`` inputs of ``10**6``
draws). Seeding a generator with an integer is not enough: torch's CPU generator
(MT19937) keeps only the low 32 bits of ``manual_seed``, so 63-bit block seeds gave
identical blocks after about ``2**16`` blocks. Instead (:class:`BlockGenerator`):

* **CPU** (torch): the MT19937 state itself, all 624 words, is filled with
  ``shake_128(block seed)`` (an extendable-output hash) and installed with
  ``Generator.set_state``; torch's ``normal_`` then draws from it as usual. The state
  layout is checked once per process against torch's own seeding.
* **CUDA** (torch, Philox4x32-10): the first 64 bits of the block seed are the Philox
  key (``manual_seed``, all 64 bits used) and the next 62 bits set the counter offset
  (``set_offset``, a multiple of 4), so the stream position is also drawn from the seed.
* **Other torch devices** (MPS, XPU, ...): the block is drawn on the CPU as above and
  copied to the device.
* **numpy** (estimators without a torch module): ``numpy.random.Generator(PCG64)``
  seeded through ``SeedSequence`` with all 128 bits.

Devices and generators
----------------------
Torch noise is drawn on the model's device; numpy noise (estimators without a torch
module) on the host. The values depend on the generator: CPU and CUDA generators give
different draws, and so may two CUDA GPUs of different models (CUDA's ``randn`` lays
its work out by the number of multiprocessors). The draws also depend on the dtype the
noise is drawn in (float32 or float64, see
:func:`~sklearn_certify.smoothing._sampling.sample_label_counts`). Counts are then
different but follow the same distribution. For bitwise equal counts on one GPU model,
also keep cuDNN deterministic (``torch.backends.cudnn.deterministic = True``,
``torch.backends.cudnn.benchmark = False``), since the forward pass must not change
with the batch it runs in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = [
    "BLOCK_MAX",
    "BLOCK_MIN",
    "SEED_BITS",
    "BlockGenerator",
    "block_bounds",
    "input_keys",
    "block_seed",
    "torch_noise_",
    "numpy_noise",
]

#: Size of the first two blocks of an input's draws.
BLOCK_MIN = 16
#: Size of every block from draw ``BLOCK_MAX`` on.
BLOCK_MAX = 512
#: Bits of a call's seed and of every block seed.
SEED_BITS = 128
# input_keys hashes on one more thread per this many bytes of X
_BYTES_PER_THREAD = 4 << 20


def block_bounds(start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """The blocks overlapping draws ``[start, stop)``: ``(b, block_start, block_stop)``.

    Block 0 holds draws ``[0, BLOCK_MIN)``; block ``b >= 1`` holds
    ``[BLOCK_MIN * 2**(b-1), BLOCK_MIN * 2**b)`` until the size reaches ``BLOCK_MAX``;
    from draw ``BLOCK_MAX`` on, every block holds ``BLOCK_MAX`` draws.

    >>> list(block_bounds(0, 40))
    [(0, 0, 16), (1, 16, 32), (2, 32, 64)]
    >>> list(block_bounds(1000, 1100))
    [(6, 512, 1024), (7, 1024, 1536)]
    """
    if start >= stop:
        return
    n_small = (BLOCK_MAX // BLOCK_MIN).bit_length()  # blocks below draw BLOCK_MAX
    if start < BLOCK_MAX:
        b = (start // BLOCK_MIN).bit_length()
    else:
        b = n_small + (start - BLOCK_MAX) // BLOCK_MAX
    while True:
        if b < n_small:
            lo = 0 if b == 0 else BLOCK_MIN << (b - 1)
            hi = BLOCK_MIN << b
        else:
            lo = BLOCK_MAX * (b - n_small + 1)
            hi = lo + BLOCK_MAX
        if lo >= stop:
            return
        yield b, lo, hi
        b += 1


def input_keys(X) -> list[bytes]:
    """One 16-byte blake2b digest per input: its dtype, shape and bytes.

    ``X`` is an array or a tensor (on any device; a tensor is hashed from a host copy).
    Equal inputs (same values, dtype and shape) get equal keys wherever they sit. Large
    inputs are hashed on several threads (hashlib releases the GIL).
    """
    if torch.is_tensor(X):
        X = X.detach()
        if X.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bit pattern
            header = f"bfloat16{tuple(X.shape[1:])}".encode()
            X = X.cpu().view(torch.int16).numpy()
        else:
            X = X.cpu().numpy()
            header = None
    else:
        X = np.asarray(X)
        header = None
    X = np.ascontiguousarray(X)
    if header is None:
        header = f"{X.dtype.str}{tuple(X.shape[1:])}".encode()

    def digest(row: np.ndarray) -> bytes:
        h = hashlib.blake2b(header, digest_size=16)
        h.update(row.data if row.ndim else row.tobytes())
        return h.digest()

    threads = min(len(X), os.cpu_count() or 1, X.nbytes // _BYTES_PER_THREAD)
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(digest, X))
    return [digest(row) for row in X]


def block_seed(seed: int, key: bytes, block: int) -> bytes:
    """The 128-bit seed (16 bytes) of block ``block`` of the input with key ``key``.

    ``seed`` is the call's seed, an int in ``[0, 2**128)``.
    """
    h = hashlib.blake2b(seed.to_bytes(SEED_BITS // 8, "little"), digest_size=SEED_BITS // 8)
    h.update(key)
    h.update(block.to_bytes(8, "little"))
    return h.digest()


# --- MT19937 state of torch's CPU generator (at::CPUGeneratorImplState, 5056 bytes):
# int64 initial seed, int32 left, int32 seeded, uint64 next, uint64 state[624], then the
# cached normal samples and their validity flags (zero: none cached).
_MT_WORDS = 624
_MT_HEAD = 24


class _MersenneState:
    """Builds full MT19937 states for torch's CPU generator from 16-byte seeds."""

    def __init__(self):
        reference = torch.Generator()
        reference.manual_seed(5)
        expected = reference.get_state().numpy()
        self.buffer = np.zeros_like(expected)
        self.buffer[8] = 1  # left = 1: the next draw regenerates the state first
        self.buffer[12] = 1  # seeded
        self.words = self.buffer[_MT_HEAD : _MT_HEAD + 8 * _MT_WORDS].view("<u8")
        # the layout must be torch's: rebuild the state manual_seed(5) makes from its words
        self.words[:] = expected[_MT_HEAD : _MT_HEAD + 8 * _MT_WORDS].view("<u8")
        rebuilt = self.buffer.copy()
        rebuilt[:8] = expected[:8]  # the initial seed is only reported, never used
        if rebuilt.shape != expected.shape or not np.array_equal(rebuilt, expected):
            raise RuntimeError(
                "this torch release lays out its CPU generator state differently; "
                "sklearn_certify cannot seed its noise streams with full entropy. Please "
                f"report it with torch {torch.__version__}."
            )

    def state(self, seed: bytes) -> torch.Tensor:
        words = np.frombuffer(hashlib.shake_128(seed).digest(4 * _MT_WORDS), dtype="<u4")
        self.words[:] = words
        return torch.from_numpy(self.buffer)  # copied by set_state


class BlockGenerator:
    """Draws the standard normal noise of one block from its 128-bit block seed.

    One per sampling pass and device (not thread-safe). See the module docstring,
    "Entropy", for how each kind of device uses all 128 bits.

    Parameters
    ----------
    device : str or torch.device
        Where the noise is needed.
    """

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            self._generator = torch.Generator(device=self.device)
            self._mersenne = None
        else:
            self._generator = torch.Generator()
            self._mersenne = _MersenneState()

    def normal_(self, out: torch.Tensor, seed: bytes) -> torch.Tensor:
        """Fill ``out`` (on this generator's device) with the block's draws."""
        if self._mersenne is None:
            self._generator.manual_seed(int.from_bytes(seed[:8], "little"))
            self._generator.set_offset(4 * (int.from_bytes(seed[8:16], "little") >> 2))
            return out.normal_(generator=self._generator)
        self._generator.set_state(self._mersenne.state(seed))
        if out.device.type == "cpu":
            return out.normal_(generator=self._generator)
        host = torch.empty(out.shape, dtype=out.dtype).normal_(generator=self._generator)
        return out.copy_(host)


def torch_noise_(
    out: torch.Tensor,
    key: bytes,
    seed: int,
    start: int,
    generator: BlockGenerator,
    cache: dict | None = None,
) -> torch.Tensor:
    """Fill ``out`` with standard normal draws ``[start, start + len(out))`` of an input.

    Parameters
    ----------
    out : torch.Tensor of shape (n, ...)
        Contiguous tensor on the generator's device, in the dtype of the noise; one row
        per draw.
    key : bytes
        The input's key (:func:`input_keys`).
    seed : int
        The call's seed.
    start : int
        Index of the first draw to produce.
    generator : BlockGenerator
        A generator for ``out``'s device; it is reseeded for every block.
    cache : dict or None
        Keeps the last block of which only a part was used, so that consecutive
        calls (batches smaller than a block) generate each block once. Pass the same
        empty dict to the calls of one sampling pass.

    Returns
    -------
    out : torch.Tensor
    """
    stop = start + len(out)
    for b, lo, hi in block_bounds(start, stop):
        a, z = max(lo, start), min(hi, stop)
        if a == lo and z == hi:  # the whole block: generate it in place
            generator.normal_(out[a - start : z - start], block_seed(seed, key, b))
            continue
        block = _recall(cache, (seed, key, b))
        if block is None:
            block = generator.normal_(
                torch.empty((hi - lo, *out.shape[1:]), dtype=out.dtype, device=out.device),
                block_seed(seed, key, b),
            )
            _remember(cache, (seed, key, b), block)
        out[a - start : z - start].copy_(block[a - lo : z - lo])
    return out


def numpy_noise(
    key: bytes, seed: int, start: int, stop: int, shape: tuple, dtype, cache: dict | None = None
) -> np.ndarray:
    """Standard normal draws ``[start, stop)`` of an input, shape ``(stop - start, *shape)``.

    The numpy twin of :func:`torch_noise_` (one ``numpy.random.Generator(PCG64)`` per block,
    seeded with all 128 bits of the block seed through ``numpy.random.SeedSequence``).
    """
    out = np.empty((stop - start, *shape), dtype=dtype)
    for b, lo, hi in block_bounds(start, stop):
        block = _recall(cache, (seed, key, b))
        if block is None:
            entropy = int.from_bytes(block_seed(seed, key, b), "little")
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
            block = rng.standard_normal((hi - lo, *shape), dtype=dtype)
            _remember(cache, (seed, key, b), block)
        a, z = max(lo, start), min(hi, stop)
        out[a - start : z - start] = block[a - lo : z - lo]
    return out


def _recall(cache: dict | None, name: tuple):
    return None if cache is None else cache.get(name)


def _remember(cache: dict | None, name: tuple, block) -> None:
    """Keep ``block`` as the cache's only entry."""
    if cache is not None:
        cache.clear()
        cache[name] = block
