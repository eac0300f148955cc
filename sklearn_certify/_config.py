"""Process settings of sklearn-certify, switched in scikit-learn's style.

:func:`get_config`, :func:`set_config` and :func:`config_context` work like
scikit-learn's functions of the same names: the settings are per thread, start from
the process-wide defaults, and ``config_context`` restores them on exit.

Settings
--------
counts_cache : bool, default=False
    Keep the label counts of the most recent sampling calls of
    :class:`~sklearn_certify.SmoothedMultiLabelClassifier` in this process (up to
    256 MiB), so that ``predict``, ``predict_proba``, ``certify`` and ``score`` on the
    same inputs, and several certified scorers of one fold, sample once. Only calls
    with an int ``random_state`` are cached, keyed on the fitted model's content (see
    ``docs/model_selection.md``: a cached model must be a pure function of what the
    key holds); a model the key cannot cover (hooks, attributes holding other objects)
    is sampled every time, with a warning. Off by default: every call samples anew,
    so a model changed in place between calls is never served the counts of its former
    self. Switching it off drops what was kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["get_config", "set_config", "config_context"]

_DEFAULTS = {"counts_cache": False}
_local = threading.local()


def _thread_config() -> dict:
    if not hasattr(_local, "config"):
        _local.config = dict(_DEFAULTS)
    return _local.config


def get_config() -> dict:
    """The settings in force in this thread.

    Returns
    -------
    dict
        A copy: ``{"counts_cache": bool}``.

    Examples
    --------
    >>> import sklearn_certify
    >>> sklearn_certify.get_config()["counts_cache"]
    False
    """
    return dict(_thread_config())


def set_config(counts_cache: bool | None = None) -> None:
    """Change settings in this thread (``None`` leaves a setting as it is).

    Parameters
    ----------
    counts_cache : bool, optional
        Keep the most recent label counts in memory (see the module docstring).
        Switching it off drops what was kept.

    Raises
    ------
    TypeError
        When ``counts_cache`` is not a bool.
    """
    if counts_cache is not None:
        if not isinstance(counts_cache, bool):
            raise TypeError(
                f"counts_cache must be True or False, got {type(counts_cache).__name__} "
                f"{counts_cache!r}."
            )
        _thread_config()["counts_cache"] = counts_cache
        if not counts_cache:
            from ._utils._memory import recent_counts

            recent_counts.clear()


@contextmanager
def config_context(*, counts_cache: bool | None = None) -> Iterator[None]:
    """Settings for the duration of a ``with`` block, restored on exit.

    Parameters
    ----------
    counts_cache : bool, optional
        See :func:`set_config`.

    Examples
    --------
    >>> import sklearn_certify
    >>> with sklearn_certify.config_context(counts_cache=True):
    ...     sklearn_certify.get_config()["counts_cache"]
    True
    >>> sklearn_certify.get_config()["counts_cache"]
    False
    """
    old = get_config()
    set_config(counts_cache=counts_cache)
    try:
        yield
    finally:
        set_config(**old)
