"""Ensembles certified against training-data poisoning (PoisoningGuard).

* :class:`BaggingCertifiedClassifier` -- base models on random subsamples drawn with
  replacement; probabilistic certificate (Theorem 1, Eq. 4).
* :class:`DPACertifiedClassifier` -- base models on disjoint hash partitions;
  deterministic certificate (Theorem 2, Eq. 9).

Base models are trained through joblib, so any joblib backend (loky, threading, Dask)
spreads the training over local cores or a cluster. With ``vectorize="auto"`` (the
default) and a :class:`~sklearn_certify.heads.LinearHead` base (a linear or
one-hidden-layer head, the PoisoningGuard protocol over frozen features), or a
:class:`~sklearn_certify.nets.MultiLabelNet` with an MLP or linear module, the bagging
ensemble instead trains all base models at once as one batched torch program, on the
model's device: the same models as training them one by one, up to float rounding (see
``BaggingCertifiedClassifier``'s Notes for the exact conditions). DPA trains its models
one by one (its guarantee needs each model to depend on its own partition only, bit
for bit), such ``MultiLabelNet`` bases by the same replica of skorch's training.
"""

from .._utils._lazy import lazy_attributes

# Loaded on first use, so that the vectorised trainers (sklearn_certify._stacked) can
# import the base-model wrapper (._base_model) without loading the estimators first.
_LAZY = {
    "BaggingCertifiedClassifier": "sklearn_certify.ensembles._bagging",
    "DPACertifiedClassifier": "sklearn_certify.ensembles._dpa",
}

__all__ = ["BaggingCertifiedClassifier", "DPACertifiedClassifier"]

__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
