"""Gaussian randomized smoothing for multi-label classifiers (MultiGuard).

:class:`SmoothedMultiLabelClassifier` turns any multi-label model -- a skorch net, a
torch module or a scikit-learn estimator -- into a smoothed classifier whose top-k
labels come with a certified intersection size under l2-bounded evasion attacks.
"""

from ._classifier import SmoothedMultiLabelClassifier

__all__ = ["SmoothedMultiLabelClassifier"]
