"""Ensembles certified against training-data poisoning (PoisoningGuard).

* :class:`BaggingCertifiedClassifier` -- base models on random subsamples drawn with
  replacement; probabilistic certificate (Theorem 1, Eq. 4).
* :class:`DPACertifiedClassifier` -- base models on disjoint hash partitions;
  deterministic certificate (Theorem 2, Eq. 9).

Base models are trained through joblib, so any joblib backend (loky, threading, Dask)
spreads the training over local cores or a cluster.
"""

from ._bagging import BaggingCertifiedClassifier
from ._dpa import DPACertifiedClassifier

__all__ = ["BaggingCertifiedClassifier", "DPACertifiedClassifier"]
