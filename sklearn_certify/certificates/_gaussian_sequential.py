"""Sequential certification of Gaussian smoothing: draws in stages, each input stopping
once it is decided.

The math and the loop only: the caller gives a ``sample(rows, start, stop)`` callable
(the estimator's sampling engine); only numpy and scipy are used here.

Schedule
--------
Stage ``s`` ends at ``stops[s]`` draws per input (growing geometrically, the last stage
ending at the maximum ``max_draws``) and owns a fixed share ``shares[s]`` of alpha (shares sum to 1,
most of it on the last stage, :func:`stage_schedule`). Both depend only on ``n_draws``
and ``max_draws``, never on the data.

Soundness
---------
At stage ``s`` an input's Clopper-Pearson bounds are computed from its first
``stops[s]`` draws at ``alpha * shares[s]`` (Bonferroni over the labels as usual). For
each stage, the event "the bounds of this stage hold" fails with probability at most
``alpha * shares[s]`` (whether or not the input reaches that stage: the bounds are
defined on the first ``stops[s]`` draws of its stream, drawn or not). By the union bound
all stages' bounds hold together with probability at least ``1 - alpha``. On that event
the bounds of whichever stage the input stops at hold, however the stopping rule used
the data, so every certificate computed from them (at any radius, k or method) holds.
Only the bounds of the stopping stage are reported.

Stopping rule
-------------
After each stage but the last, an input stops when nothing better is still within reach:
when, at every requested radius, its certificate is already at the cap ``min(k, |L|)``,
or an optimistic projection of its final certificate is no larger than the current one.
The projection takes every label's probability at the favourable end of a two-sided
Clopper-Pearson interval at level ``futility`` (true labels high, others low), imagines
the last stage's counts at exactly those frequencies and certifies from their bounds at
the last stage's alpha share. The rule only decides when to stop; it never enters a
reported bound, so it cannot affect soundness, only the draws spent and the size of the
certificates.

Budget as a mean
----------------
With ``mean_budget`` the schedule runs past ``n_draws`` (to ``max_draws``) while the
total number of draws stays within ``mean_budget * n_inputs``: before each stage the
undecided inputs that fit are allowed on, those with the largest optimistic gain first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from ._clopper_pearson import clopper_pearson_bounds
from ._common import finalize_sizes
from ._gaussian import gaussian_sizes_at

__all__ = ["stage_schedule", "sequential_gaussian_certify", "SequentialOutcome"]

#: Draws of the first stage (fewer when n_draws is smaller).
FIRST_STAGE = 64
#: Ratio of consecutive stage ends up to n_draws (beyond it, with a mean budget: 2).
GROWTH = 1.5
#: Share of alpha given to the last stage; the rest is split over the earlier stages,
#: halving from one stage to the one before.
LAST_SHARE = 0.9
#: Level of the optimistic projection of the stopping rule.
FUTILITY_LEVEL = 0.2


def stage_schedule(
    n_draws: int, max_draws: int | None = None, *, first: int = FIRST_STAGE, growth: float = GROWTH
) -> tuple[np.ndarray, np.ndarray]:
    """Stage ends (draws per input) and alpha shares.

    Stage ends grow by ``growth`` from ``min(first, n_draws)`` to ``n_draws``, then
    double up to ``max_draws`` (default ``n_draws``), the last stage end. The last stage
    gets ``LAST_SHARE`` of alpha, earlier stages the rest, halving from each stage to
    the one before.

    >>> stops, shares = stage_schedule(1000)
    >>> stops.tolist(), round(float(shares.sum()), 12), float(shares[-1])
    ([64, 96, 144, 216, 324, 486, 729, 1000], 1.0, 0.9)
    >>> stage_schedule(1000, 3000)[0].tolist()[-3:]
    [1000, 2000, 3000]
    """
    max_draws = n_draws if max_draws is None else max_draws
    if max_draws < n_draws:
        raise ValueError(f"max_draws={max_draws} must be at least n_draws={n_draws}.")
    stops = []
    stop = min(first, n_draws)
    while stop < n_draws:
        stops.append(stop)
        stop = max(stop + 1, int(round(stop * growth)))
    stops.append(n_draws)
    stop = 2 * n_draws
    while stop < max_draws:
        stops.append(stop)
        stop *= 2
    if max_draws > n_draws:
        stops.append(max_draws)
    stops = np.asarray(stops, dtype=np.int64)
    if stops.size == 1:
        return stops, np.ones(1)
    earlier = 0.5 ** np.arange(stops.size - 1, 0, -1)  # ..., 1/4, 1/2
    shares = np.append((1 - LAST_SHARE) * earlier / earlier.sum(), LAST_SHARE)
    return stops, shares


@dataclass(frozen=True)
class SequentialOutcome:
    """What a sequential run leaves, per input (as a CertificationResult needs it)."""

    counts: np.ndarray  #: (n_inputs, n_classes) label counts over the draws used
    n_draws_used: np.ndarray  #: (n_inputs,) draws taken
    alpha_share: np.ndarray  #: (n_inputs,) share of alpha of the stopping stage
    lower: np.ndarray  #: (n_inputs, n_classes) bounds of the stopping stage
    upper: np.ndarray
    sizes: np.ndarray  #: (n_inputs, n_radii) certified sizes from those bounds


def staged_bounds(counts, n_draws_used, alpha, alpha_share):
    """Clopper-Pearson bounds of each input at its own alpha share (and draws).

    Inputs that drew nothing get the vacuous bounds 0 and 1.
    """
    counts = np.asarray(counts)
    lower = np.zeros(counts.shape)
    upper = np.ones(counts.shape)
    for share in np.unique(alpha_share[n_draws_used > 0]):
        rows = np.flatnonzero((alpha_share == share) & (n_draws_used > 0))
        lower[rows], upper[rows] = clopper_pearson_bounds(
            counts[rows], n_draws_used[rows], alpha * share
        )
    return lower, upper


def sequential_gaussian_certify(
    sample: Callable,
    Y: np.ndarray,
    radii: np.ndarray,
    *,
    k: int,
    k_prime: int,
    sigma: float,
    alpha: float,
    method: str,
    n_draws: int,
    max_draws: int | None = None,
    mean_budget: float | None = None,
    futility: float = FUTILITY_LEVEL,
    first: int = FIRST_STAGE,
    growth: float = GROWTH,
) -> SequentialOutcome:
    """Certify in stages (see the module docstring).

    Parameters
    ----------
    sample : callable
        ``sample(rows, start, stop)`` returns the label counts, shape
        ``(len(rows), n_classes)``, of draws ``[start, stop)`` of the inputs ``rows``
        (every input of ``rows`` has drawn exactly ``start`` before).
    Y : ndarray of {0, 1}, shape (n_inputs, n_classes)
    radii : ndarray of float, shape (n_radii,)
        The radii whose certificates decide when an input stops.
    k, k_prime, sigma, method
        As for :func:`~sklearn_certify.certificates.gaussian_certified_size`.
    alpha : float
        Failure probability per input of the bounds (already halved for "jia").
    n_draws : int
        Draws per input; the maximum unless ``mean_budget`` is given.
    max_draws : int, optional
        Last stage end; defaults to ``n_draws``.
    mean_budget : float, optional
        Mean draws per input not to exceed (the whole call's draws are at most
        ``mean_budget * n_inputs``); only useful with ``max_draws > n_draws``.
    futility : float
        Level of the optimistic projection in the stopping rule.
    first, growth : int, float
        Draws of the first stage and ratio of consecutive stage ends.

    Returns
    -------
    SequentialOutcome
    """
    stops, shares = stage_schedule(n_draws, max_draws, first=first, growth=growth)
    n_inputs, n_classes = Y.shape
    n_true = Y.sum(axis=1)
    cap = np.minimum(k, n_true)
    floor = np.maximum(0, k - (n_classes - n_true))
    shift = (np.asarray(radii, dtype=np.float64) / sigma)[None, :]

    def certify(lower, upper, rows):
        raw = gaussian_sizes_at(lower, upper, Y[rows], k, k_prime, shift, method)
        return finalize_sizes(raw, n_true[rows], k, n_classes, False)

    counts = np.zeros((n_inputs, n_classes), dtype=np.int64)
    used = np.zeros(n_inputs, dtype=np.int64)
    share_used = np.ones(n_inputs)
    lower, upper = np.zeros((n_inputs, n_classes)), np.ones((n_inputs, n_classes))
    sizes = np.broadcast_to(floor[:, None], (n_inputs, shift.size)).astype(np.int64)
    # inputs whose trivial bound is already the cap need no draws
    active = np.flatnonzero(floor < cap)
    budget = np.inf if mean_budget is None else mean_budget * n_inputs
    spent = 0
    gain = np.zeros(n_inputs)
    for s, (stop, share) in enumerate(zip(stops, shares)):
        if active.size == 0:
            break
        start = used[active[0]] if s else 0
        cost = (stop - start) * active.size
        if spent + cost > budget:  # the most promising inputs that fit go on
            fit = int((budget - spent) // (stop - start))
            order = np.argsort(-gain[active], kind="stable")
            active = np.sort(active[order[:fit]])
            if active.size == 0:
                break
        counts[active] += sample(active, start, stop)
        spent += (stop - start) * active.size
        used[active] = stop
        share_used[active] = share
        lo, up = clopper_pearson_bounds(counts[active], stop, alpha * share)
        lower[active], upper[active] = lo, up
        current = certify(lo, up, active)
        sizes[active] = current
        if s == stops.size - 1:
            break
        best = certify(
            *_projected_bounds(counts[active], stop, stops[-1], alpha * shares[-1], futility),
            active,
        )
        decided = np.all(best <= current, axis=1) | np.all(current >= cap[active, None], axis=1)
        gain[active] = (best - current).sum(axis=1)
        active = active[~decided]
    return SequentialOutcome(counts, used, share_used, lower, upper, sizes)


def _projected_bounds(counts, n, n_final, alpha_final, level):
    """Bounds the last stage would give if every label's frequency sat at the
    favourable end of its two-sided level-``level`` interval: true labels at the
    upper end, the others at the lower end (the caller certifies with the true
    labels' lower and the others' upper bounds, so both are returned for all)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        high = beta.ppf(1 - level / 2, counts + 1, n - counts)
        low = beta.ppf(level / 2, counts, n - counts + 1)
    high = np.where(counts == n, 1.0, high)
    low = np.where(counts == 0, 0.0, low)
    lower, _ = clopper_pearson_bounds(
        np.round(high * n_final).astype(np.int64), n_final, alpha_final
    )
    _, upper = clopper_pearson_bounds(
        np.round(low * n_final).astype(np.int64), n_final, alpha_final
    )
    return lower, upper
