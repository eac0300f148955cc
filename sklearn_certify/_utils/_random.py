"""Seeds and random streams shared by the estimators (numpy only)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["SEED_HIGH", "is_int", "model_random_state", "spawn_seeds"]

#: Exclusive upper bound of the integer seeds drawn with ``RandomState.randint``
#: (``2**31 - 1``, as scikit-learn draws them).
SEED_HIGH = int(np.iinfo(np.int32).max)


def is_int(value) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def spawn_seeds(random_state: np.random.RandomState, n: int) -> np.ndarray:
    """``n`` independent 64-bit seeds, one per model, reproducible from ``random_state``.

    ``random_state`` draws the 124-bit entropy of one ``numpy.random.SeedSequence``,
    whose ``n`` spawned children give one 64-bit seed each. Two models share a seed
    with probability about ``n**2 / 2**65`` (about ``3e-10`` for 100,000 models), where
    31-bit seeds drawn by ``randint`` would collide a few times at that size.
    """
    entropy = [int(word) for word in random_state.randint(SEED_HIGH, size=4)]
    children = np.random.SeedSequence(entropy).spawn(int(n))
    return np.array([child.generate_state(1, np.uint64)[0] for child in children], dtype=np.uint64)


def model_random_state(seed: int) -> np.random.RandomState:
    """The generator of one base model's own randomness, from its seed (any int >= 0).

    A ``RandomState`` (scikit-learn draws ``random_state`` parameters from one) on the
    Mersenne Twister seeded through ``numpy.random.SeedSequence(seed)``, so that every
    bit of a 64-bit seed counts.
    """
    return np.random.RandomState(np.random.MT19937(np.random.SeedSequence(int(seed))))
