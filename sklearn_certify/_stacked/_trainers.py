"""The choice between training an ensemble's base models at once or one by one.

Both ensembles ask :func:`select_trainer` which trainer fits their base estimator:

* ``"heads"``: a :class:`~sklearn_certify.heads.LinearHead`, trained as stacked heads
  by full-batch Adam;
* ``"nets"``: a :class:`~sklearn_certify.nets.MultiLabelNet` that the skorch replica
  can reproduce (see :func:`~sklearn_certify._stacked._skorch_replica.net_blocker`);
* None: one base model at a time, through joblib
  (:func:`~sklearn_certify.ensembles._base_model.fit_base_model`).

Bagging trains "heads" and "nets" stacked; DPA trains "nets" one partition at a time
by the replica and everything else through ``fit_base_model``.
"""

from __future__ import annotations

from ._heads import is_vectorizable
from ._nets import check_replication
from ._skorch_replica import net_blocker

__all__ = ["select_trainer"]


def select_trainer(estimator, X, vectorize) -> str | None:
    """Which vectorised trainer fits ``estimator`` on ``X``: "heads", "nets" or None.

    ``vectorize=False`` always gives None (one by one). With ``"auto"`` a
    ``MultiLabelNet`` is vectorised only when :func:`net_blocker` finds nothing and the
    one-time replication probe passes (a warning says when it does not).
    """
    if vectorize is False:
        return None
    if is_vectorizable(estimator):
        return "heads"
    if net_blocker(estimator, X) is None and check_replication():
        return "nets"
    return None
