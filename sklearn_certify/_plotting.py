"""Matplotlib panels of certified metrics against the radius (matplotlib is imported
on first use only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plot_certified_curves", "plot_result"]


def plot_result(result, ax=None, *, label: str | None = None, **line_kwargs):
    """Precision, recall and f1 of ``result`` in three panels (see
    :meth:`~sklearn_certify.CertificationResult.plot`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    axes = np.asarray(ax, dtype=object).ravel()
    if axes.size != 3:
        raise ValueError(f"ax must hold 3 Axes (precision, recall, f1), got {axes.size}.")
    _, xlabel, integer = result._radius_display()
    drawstyle = "steps-post" if integer else "default"
    for panel, metric in zip(axes, ("precision", "recall", "f1")):
        panel.plot(
            result.radius,
            getattr(result, metric)(),
            label=label or result.name,
            drawstyle=drawstyle,
            **line_kwargs,
        )
        panel.set_xlabel(xlabel)
        panel.set_ylabel(f"certified top-{result.k} {metric}")
        panel.set_ylim(-0.02, 1.02)
        panel.grid(True, alpha=0.3)
        panel.legend(loc="best", fontsize="small")
    return axes


def plot_certified_curves(results: Sequence, labels: Sequence[str] | None = None, ax=None):
    """Overlay several results (methods, sigmas, ...) in one three-panel figure.

    Parameters
    ----------
    results : sequence of CertificationResult
    labels : sequence of str, optional
        Legend entries; default to each result's label or method.
    ax : sequence of 3 Axes, optional

    Returns
    -------
    ndarray of 3 Axes
    """
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"got {len(labels)} labels for {len(results)} results.")
    for i, result in enumerate(results):
        ax = result.plot(ax=ax, label=None if labels is None else labels[i])
    return ax
