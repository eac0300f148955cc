"""Finite Aggregation (Wang, Levine & Feizi, ICML 2022) for multi-label top-k.

The ensemble
------------
The training set is hashed into ``n_buckets = N * d`` buckets (``d`` = spread). Bucket
``b`` feeds the ``d`` base models ``(b + s) % n_buckets`` for ``s`` in a fixed set of
``d`` distinct shifts (:func:`spread_shifts`, 0 first), so every model is trained on
``d`` buckets and every bucket feeds ``d`` models; ``d = 1`` is DPA (model j on bucket
j). For an input, model j votes for its top-k_b set ``h_j``, ``n_l`` models vote for
label l, and the ensemble predicts the k labels with the most votes.

What a certificate needs per input
----------------------------------
Every model's top-k_b labels, shape (n_inputs, n_models, k_b). From them
``a_b(l)``, the number of the ``d`` models fed by bucket ``b`` that vote for ``l``
(:class:`FAStatistics` keeps the histograms of ``a_b(l)`` and, for every true label
u and other label v, of ``a_b(u) + d - a_b(v)``, over the buckets).

The certificate (proof: ``docs/poisoningguard.md``)
---------------------------------------------------
T poisoned examples change at most T~ buckets (T~ = 2T for modification, T for
addition and deletion) and so at most the models those buckets feed, at most
``m = min(n_models, d T~)`` models. ``top(x, T~)`` is the sum of the T~ largest
values of ``x_b`` over the buckets. Size r is certified if either bound holds.

*Label bound* (PoisoningGuard's Eq. (9) with per-bucket budgets).
``D_l = min(n_l, top(a(l), T~))`` bounds the votes label l can lose,
``I_l = min(n_models - n_l, top(d - a(l), T~))`` those it can gain, and
``B_t = min(k_b, t) m`` those a set of t labels can lose or gain together. With the
true labels sorted by ``n - D`` (first term) and by ``n`` (second term), the other
labels by ``n + I`` and by ``n``, each descending, positions counted from 1:

    max_{t=1..M-r+1} (1/t) max( sum_{i=r}^{r+t-1} (n - D)_(i), sum_{i=r}^{r+t-1} n_(i) - B_t )
  > min_{t=1..k-r+1} (1/t) min( sum_{i=k-r+2-t}^{k-r+1} (n + I)_(i),
                                sum_{i=k-r+2-t}^{k-r+1} n_(i) + B_t ).

*Pair bound* (FA's joint vote-gap bound, per pair of labels). An attack can raise
``n_v - n_u`` by at most ``c(u, v) = min(top(a(u) + d - a(v), T~), D_u + I_v, 2 m)``.
Other label v *reaches* true label u unless ``n_u - n_v + [u < v] > c(u, v)`` (ties
go to the lower label index). Size r is certified if no set of ``M - r + 1`` true
labels is reached, every one of them, by ``k - r + 1`` other labels (checked over the
sets of ``r - 1`` excluded true labels; where there are more than
``_MAX_EXCLUDED_SETS`` of them, by the sound relaxation: fewer than ``k - r + 1``
other labels reach ``M - r + 1`` true labels each).

With ``D_l = I_l = d T~``, ``B_t = min(k_b, t) d T~`` and no pair bound (no per-model
information), the label bound is Eq. (9) with T~ replaced by ``d T~``, the number of
models T~ buckets can change: at ``d = 1``, Eq. (9) itself. The per-model bounds are
never weaker, so the certificate is never below that one.

Only numpy: importing this module loads neither sklearn nor torch.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math

import numpy as np

__all__ = [
    "FAStatistics",
    "bucket_votes",
    "fa_sizes_at",
    "fa_statistics",
    "model_buckets",
    "spread_shifts",
    "top_sum_from_histogram",
    "vote_indicator",
]


def spread_shifts(n_buckets: int, spread: int) -> np.ndarray:
    """The ``spread`` distinct shifts of Finite Aggregation's assignment, 0 first.

    Bucket ``b`` feeds models ``(b + s) % n_buckets``. FA's code draws the shifts with
    Python's ``random.sample`` under a fixed seed; here they are a fixed function of
    ``(n_buckets, spread)`` that no library version can change: 0, then the
    ``spread - 1`` values ``c`` in ``1 .. n_buckets - 1`` with the smallest
    ``sha256(b"sklearn-certify finite aggregation shift" || n_buckets || c)`` (as
    8-byte little-endian integers), in that order. Pseudo-random shifts make the
    ``d`` models of one bucket share few other buckets, as in FA.

    Examples
    --------
    >>> spread_shifts(10, 1).tolist()
    [0]
    >>> s = spread_shifts(40, 4); int(s[0]), len(set(s.tolist()))
    (0, 4)
    """
    n_buckets, spread = int(n_buckets), int(spread)
    if not 1 <= spread <= n_buckets:
        raise ValueError(f"spread must be in [1, {n_buckets}], got {spread}.")
    return np.array(_shifts(n_buckets, spread), dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _shifts(n_buckets: int, spread: int) -> tuple[int, ...]:
    """:func:`spread_shifts` as a tuple, computed once per sizes (a pure function)."""
    prefix = b"sklearn-certify finite aggregation shift" + n_buckets.to_bytes(8, "little")

    def rank(c: int) -> bytes:
        return hashlib.sha256(prefix + c.to_bytes(8, "little")).digest()

    return (0, *sorted(range(1, n_buckets), key=rank)[: spread - 1])


def model_buckets(n_buckets: int, spread: int) -> np.ndarray:
    """Buckets of every model, shape (n_buckets, spread): model j uses ``(j - s) % n``.

    Row j lists the buckets model j is trained on, in the order of the shifts; at
    ``spread = 1`` model j uses bucket j.
    """
    shifts = spread_shifts(n_buckets, spread)
    return (np.arange(n_buckets)[:, None] - shifts[None, :]) % n_buckets


def top_sum_from_histogram(hist: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Sum of the ``budget`` largest values, from a histogram of values ``0 .. d``.

    ``hist[..., v]`` counts the values equal to v. The sum of the T largest values is
    ``sum_{v=1}^{d} min(T, #{values >= v})`` (each value v is the number of levels
    ``1 .. v`` it reaches; the T largest values reach level v exactly
    ``min(T, #{values >= v})`` times).

    Parameters
    ----------
    hist : ndarray, shape (..., d + 1)
    budget : ndarray broadcastable to ``hist.shape[:-1] + (n_radii,)``

    Returns
    -------
    ndarray of float64, shape ``hist.shape[:-1] + (n_radii,)``
    """
    at_least = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1][..., 1:]  # v = 1 .. d
    at_least = at_least.astype(np.float64)
    out = np.zeros(np.broadcast_shapes(hist.shape[:-1] + (1,), np.shape(budget)))
    for v in range(at_least.shape[-1]):
        out += np.minimum(budget, at_least[..., v, None])
    return out


def vote_indicator(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Boolean (n_inputs, n_models, n_classes) from top-k_b label indices (..., k_b)."""
    votes = np.asarray(votes)
    out = np.zeros((*votes.shape[:2], n_classes), dtype=bool)
    np.put_along_axis(out, votes.astype(np.intp), True, axis=2)
    return out


def bucket_votes(indicator: np.ndarray, spread: int) -> np.ndarray:
    """``a[i, b, l]``: how many of the models bucket b feeds vote for l on input i.

    ``indicator`` has shape (n_inputs, n_models, n_classes); bucket b feeds models
    ``(b + s) % n_models`` (:func:`model_buckets`). Returns integers (at most
    ``spread``) of the same shape.
    """
    n_models = indicator.shape[1]
    buckets = np.arange(n_models)
    a = np.zeros(indicator.shape, dtype=np.int16 if spread < 2**15 else np.int32)
    for s in spread_shifts(n_models, spread):
        a += indicator[:, (buckets + s) % n_models]
    return a


class FAStatistics:
    """What the certificate needs per input, computed once for every radius and k.

    Attributes
    ----------
    counts : ndarray of int64, shape (n_inputs, n_classes)
        ``n_l``, the number of models voting for l.
    hist : ndarray of int64, shape (n_inputs, n_classes, d + 1)
        ``hist[i, l, v] = #{b : a_b(l) = v}``.
    true_idx, other_idx : ndarray of int64, shapes (n_inputs, M_max), (n_inputs, O_max)
        Each input's true labels (then its other labels), ascending, padded with -1.
    pair_hist : ndarray of int32, shape (n_inputs, M_max, O_max, 2 d + 1)
        For true label u = ``true_idx[i, p]`` and other label v = ``other_idx[i, q]``,
        ``pair_hist[i, p, q, w] = #{b : a_b(u) + d - a_b(v) = w}`` (0 for padding).
    n_models, spread : int
    """

    def __init__(self, counts, hist, true_idx, other_idx, pair_hist, n_models, spread):
        self.counts = counts
        self.hist = hist
        self.true_idx = true_idx
        self.other_idx = other_idx
        self.pair_hist = pair_hist
        self.n_models = int(n_models)
        self.spread = int(spread)

    def take(self, rows) -> FAStatistics:
        """The statistics of the inputs ``rows``."""
        return FAStatistics(
            self.counts[rows],
            self.hist[rows],
            self.true_idx[rows],
            self.other_idx[rows],
            self.pair_hist[rows],
            self.n_models,
            self.spread,
        )


# Sets of r - 1 excluded true labels the pair bound enumerates at most; beyond, it
# counts, for each other label, the true labels it reaches (a sound relaxation).
_MAX_EXCLUDED_SETS = 256

# Elements of the (inputs, buckets, true labels, other labels) block built at once.
_BLOCK = 2**23


def fa_statistics(votes: np.ndarray, Y: np.ndarray, spread: int) -> FAStatistics:
    """:class:`FAStatistics` from every model's top-k_b labels.

    Parameters
    ----------
    votes : ndarray of int, shape (n_inputs, n_models, k_b)
        ``votes[i, j]``: the labels model j votes for on input i.
    Y : ndarray of {0, 1}, shape (n_inputs, n_classes)
    spread : int
    """
    Y = np.asarray(Y).astype(bool)
    n_inputs, n_classes = Y.shape
    n_models = np.shape(votes)[1]
    d = int(spread)
    M = Y.sum(axis=1)
    m_max = int(M.max(initial=0))
    o_max = int((n_classes - M).max(initial=0))
    true_idx = np.argsort(~Y, axis=1, kind="stable")[:, :m_max]
    other_idx = np.argsort(Y, axis=1, kind="stable")[:, :o_max]
    true_idx = np.where(np.arange(m_max) < M[:, None], true_idx, -1)
    other_idx = np.where(np.arange(o_max) < (n_classes - M)[:, None], other_idx, -1)

    counts = np.zeros((n_inputs, n_classes), dtype=np.int64)
    hist = np.zeros((n_inputs, n_classes, d + 1), dtype=np.int64)
    pair_hist = np.zeros((n_inputs, m_max, o_max, 2 * d + 1), dtype=np.int32)
    step = max(1, _BLOCK // max(1, n_models * max(n_classes, m_max * o_max)))
    for first in range(0, n_inputs, step):
        rows = slice(first, min(first + step, n_inputs))
        indicator = vote_indicator(np.asarray(votes)[rows], n_classes)
        counts[rows] = indicator.sum(axis=1)
        a = bucket_votes(indicator, d)  # (c, n_buckets, n_classes)
        c = a.shape[0]
        offsets = (np.arange(c)[:, None] * n_classes + np.arange(n_classes)) * (d + 1)
        hist[rows] = np.bincount(
            (a + offsets[:, None, :]).ravel(), minlength=c * n_classes * (d + 1)
        ).reshape(c, n_classes, d + 1)
        if m_max and o_max:
            t_idx, o_idx = true_idx[rows], other_idx[rows]
            a_true = np.take_along_axis(a, np.maximum(t_idx, 0)[:, None, :], axis=2)
            a_other = np.take_along_axis(a, np.maximum(o_idx, 0)[:, None, :], axis=2)
            delta = d + a_true[:, :, :, None].astype(np.int64) - a_other[:, :, None, :]
            cells = (
                np.arange(c)[:, None, None] * m_max + np.arange(m_max)[:, None]
            ) * o_max + np.arange(o_max)
            keys = delta + (cells * (2 * d + 1))[:, None]
            block = np.bincount(keys.ravel(), minlength=c * m_max * o_max * (2 * d + 1))
            block = block.reshape(c, m_max, o_max, 2 * d + 1)
            valid = (t_idx >= 0)[:, :, None] & (o_idx >= 0)[:, None, :]
            pair_hist[rows] = np.where(valid[..., None], block, 0)
    return FAStatistics(counts, hist, true_idx, other_idx, pair_hist, n_models, d)


def _sorted_desc(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Sort ``values`` (n, c, R) over axis 1 where ``mask`` (n, c), descending; the
    masked-out entries go last as 0 (their positions are never read as labels)."""
    filled = np.where(mask[:, :, None], values, -np.inf)
    out = -np.sort(-filled, axis=1)
    out[~np.isfinite(out)] = 0.0
    return out


def _prefix(values: np.ndarray) -> np.ndarray:
    """Prefix sums over axis 1 with a leading zero: ``P[:, j] - P[:, i]`` sums i..j-1."""
    out = np.zeros((values.shape[0], values.shape[1] + 1, values.shape[2]))
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def fa_sizes_at(stats: FAStatistics, Y, k, k_base, budget, *, per_model=True, t_fixed=False):
    """Certified sizes before clipping, for validated arguments.

    Parameters
    ----------
    stats : FAStatistics
    Y : ndarray of {0, 1}, shape (n_inputs, n_classes)
    k, k_base : int
    budget : ndarray of float, shape (1, n_radii) or (n_inputs, n_radii)
        T~, the number of buckets the attack changes.
    per_model : bool
        True: the larger of the label bound and the pair bound (module docstring).
        False: no per-model information, ``D = I = d T~`` and
        ``B_t = min(k_b, t) d T~``: Eq. (9) with T~ replaced by ``d T~``.
    t_fixed : bool
        Fix t to 1 (the "dpa" method); only without per-model information.

    Returns
    -------
    ndarray of int64, shape (n_inputs, n_radii)
    """
    Y = np.asarray(Y).astype(bool)
    n_inputs, n_classes = Y.shape
    budget = np.asarray(budget, dtype=np.float64)
    budget = np.broadcast_to(budget, (n_inputs, budget.shape[1]))
    d, n_models = stats.spread, stats.n_models
    n = np.broadcast_to(
        stats.counts[:, :, None].astype(np.float64), (n_inputs, n_classes, budget.shape[1])
    )
    if not per_model:
        moved = d * budget
        D = I = np.broadcast_to(moved[:, None, :], n.shape)
        return _label_bound(n, D, I, Y, k, k_base, moved, t_fixed=t_fixed)
    moved = np.minimum(d * budget, n_models)  # models the changed buckets feed
    D = np.minimum(n, top_sum_from_histogram(stats.hist, budget[:, None, :]))
    I = np.minimum(n_models - n, top_sum_from_histogram(stats.hist[..., ::-1], budget[:, None, :]))
    labels = _label_bound(n, D, I, Y, k, k_base, moved, t_fixed=False)
    pairs = _pair_bound(stats, Y, k, budget, D, I, moved)
    return np.maximum(labels, pairs)


def _label_bound(n, D, I, Y, k, k_base, moved, *, t_fixed):
    """Sizes certified by the per-label bounds D, I and the joint bound B_t."""
    n_inputs, n_classes, n_radii = n.shape
    true_low = _prefix(_sorted_desc(n - D, Y))
    true_n = _prefix(_sorted_desc(n, Y))
    other_high = _prefix(_sorted_desc(n + I, ~Y))
    other_n = _prefix(_sorted_desc(n, ~Y))
    M = Y.sum(axis=1)
    sizes = np.zeros((n_inputs, n_radii), dtype=np.int64)
    for r in range(1, min(k, int(M.max(initial=0))) + 1):
        left = np.full((n_inputs, n_radii), -np.inf)
        for t in range(1, 2 if t_fixed else n_classes - r + 2):
            exists = r - 1 + t <= M  # t <= M - r + 1
            if not exists.any():
                break
            hi = min(r - 1 + t, n_classes)
            first = true_low[:, hi] - true_low[:, r - 1]
            second = true_n[:, hi] - true_n[:, r - 1] - min(k_base, t) * moved
            left = np.where(exists[:, None], np.maximum(left, np.maximum(first, second) / t), left)
        s = k - r + 1
        top = min(s, n_classes)
        right = np.full((n_inputs, n_radii), np.inf)
        for t in range(1, 2 if t_fixed else s + 1):
            lo = min(s - t, n_classes)
            first = other_high[:, top] - other_high[:, lo]
            second = other_n[:, top] - other_n[:, lo] + min(k_base, t) * moved
            right = np.minimum(right, np.minimum(first, second) / t)
        passes = (left > right) & (M >= r)[:, None]
        sizes[passes] = r
    return sizes


def _pair_bound(stats, Y, k, budget, D, I, moved):
    """Sizes certified by the pairwise bound on ``n'_v - n'_u`` (module docstring)."""
    n_inputs, n_classes = Y.shape
    M = Y.sum(axis=1)
    n_radii = budget.shape[1]
    sizes = np.zeros((n_inputs, n_radii), dtype=np.int64)
    t_idx, o_idx = stats.true_idx, stats.other_idx
    if t_idx.shape[1] == 0:
        return sizes
    if o_idx.shape[1] == 0:  # no other label: every true label is in the top-k
        return np.broadcast_to(np.minimum(k, M)[:, None], sizes.shape).copy()
    rows = np.arange(n_inputs)[:, None]
    n_true = stats.counts[rows, np.maximum(t_idx, 0)].astype(np.float64)  # (n, Mx)
    n_other = stats.counts[rows, np.maximum(o_idx, 0)].astype(np.float64)  # (n, Ox)
    D_true = D[rows, np.maximum(t_idx, 0)]  # (n, Mx, R)
    I_other = I[rows, np.maximum(o_idx, 0)]  # (n, Ox, R)
    change = top_sum_from_histogram(stats.pair_hist, budget[:, None, None, :])
    change = np.minimum(change, D_true[:, :, None, :] + I_other[:, None, :, :])
    change = np.minimum(change, 2 * moved[:, None, None, :])
    lower_first = t_idx[:, :, None] < o_idx[:, None, :]  # ties keep u above v
    margin = (n_true[:, :, None] - n_other[:, None, :] + lower_first)[..., None] - change
    valid = (t_idx >= 0)[:, :, None] & (o_idx >= 0)[:, None, :]
    not_robust = (margin <= 0) & valid[..., None]  # (n, Mx, Ox, R): v reaches u
    # A padded true position constrains nothing: it "is reached" by every label.
    reached = not_robust | (t_idx < 0)[:, :, None, None]
    other_ok = (o_idx >= 0)[:, :, None]
    beaten_by = not_robust.sum(axis=1)  # true labels each other label reaches
    m_max = t_idx.shape[1]
    for r in range(1, min(k, int(M.max(initial=0))) + 1):
        if math.comb(m_max, r - 1) <= _MAX_EXCLUDED_SETS:
            # exactly: is there a set U of M - r + 1 true labels (all but r - 1) and
            # k - r + 1 other labels reaching all of U?
            attack = np.zeros((n_inputs, n_radii), dtype=bool)
            for excluded in itertools.combinations(range(m_max), r - 1):
                kept = [p for p in range(m_max) if p not in excluded]
                common = reached[:, kept].all(axis=1) & other_ok  # (n, Ox, R)
                attack |= common.sum(axis=1) >= k - r + 1
        else:  # relaxed (sound): other labels that each reach M - r + 1 true labels
            attack = (beaten_by >= (M - r + 1)[:, None, None]).sum(axis=1) >= k - r + 1
        sizes[~attack & (M >= r)[:, None]] = r
    return sizes
