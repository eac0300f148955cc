"""sklearn-certify: provably robust multi-label classification for scikit-learn.

Two families of certified classifiers are provided:

* :class:`SmoothedMultiLabelClassifier` -- Gaussian randomized smoothing (MultiGuard),
  certified against l2-bounded evasion attacks;
* :class:`BaggingCertifiedClassifier` and :class:`DPACertifiedClassifier` -- ensembles
  over subsamples / hash partitions of the training set (PoisoningGuard), certified
  against added, deleted or modified training examples.

The certificate math lives in :mod:`sklearn_certify.bounds` and
:mod:`sklearn_certify.certificates` and only needs numpy and scipy; estimators that
need torch are imported lazily on first use.
"""

from ._config import config_context, get_config, set_config
from ._utils._lazy import lazy_attributes
from ._version import __version__

_LAZY = {
    "SmoothedMultiLabelClassifier": "sklearn_certify.smoothing",
    "BaggingCertifiedClassifier": "sklearn_certify.ensembles",
    "DPACertifiedClassifier": "sklearn_certify.ensembles",
    "CertificationResult": "sklearn_certify.results",
}

__all__ = sorted(_LAZY) + ["__version__", "config_context", "get_config", "set_config"]

__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
