"""The N fitted models of an ensemble, stacked on one device: votes and the per-model view.

:class:`StackedModels` holds N fitted heads stacked on one device (linear or MLP,
from :func:`~sklearn_certify._stacked._heads.fit_linear_heads` for
:class:`~sklearn_certify.heads.LinearHead` base models, or from the skorch replica for
``MultiLabelNet`` base models) and counts their votes in one pass, scoring inputs in
fixed blocks of rows so that an input's votes never depend on the batch.
:meth:`StackedModels.model_parameters` is the one adapter from the stacked weights to
one model's own weights (restricted to its trained columns).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import clone

from .._utils._devices import loadable_device, tensors_to
from ..ensembles._base_model import _ConstantAwareMultiLabel
from ..heads import LinearHead
from ._engine import SCORE_ROWS, as_features, first_layer_matrix, forward_blocks, top_indices

__all__ = ["StackedModels"]


class StackedModels:
    """N fitted heads, stored stacked on one device.

    Made by :func:`fit_linear_heads` (``LinearHead`` models) and by the vectorised
    training of ``MultiLabelNet`` base models
    (:mod:`sklearn_certify._stacked._nets`).

    Attributes
    ----------
    params_ : list of torch.Tensor
        ``[W, b]`` with W (N, d, c), b (N, 1, c) for linear heads, or
        ``[W1, b1, W2, b2, ...]`` (W1 (N, d, h1), b1 (N, 1, h1), ..., the last layer
        (N, h, c) and (N, 1, c)) for MLP heads, ReLU between layers; on ``device_``.
    constant_scores_ : torch.Tensor of shape (N, c)
        NaN for trained label columns, ``+inf``/``-inf`` for fixed ones (constant in
        the model's rows, or every column of a model without rows).
    tied_to_ : torch.Tensor of int64, shape (N, c)
        For each model and label, the first label with the same column in the model's
        training labels (:func:`~sklearn_certify.ensembles._base_model.tied_columns`): the
        label is scored by that label's score, so such labels tie exactly (see
        :meth:`vote_counts`).
    seeds_ : ndarray of int64, shape (N,)
        Initialisation seed of each model (``LinearHead(random_state=seeds_[i])``, or
        the torch seed of a ``MultiLabelNet``).
    sizes_ : ndarray of int64, shape (N,)
        Number of training rows of each model.
    n_features_in_, n_classes_ : int
    hidden : int, tuple of int or None
        Hidden width of ``LinearHead`` models; the hidden widths of nets.
    device_ : torch.device
    """

    def __init__(
        self,
        params,
        constant_scores,
        seeds,
        sizes,
        *,
        hidden,
        n_features,
        n_classes,
        device,
        tied_to=None,
    ):
        self.params_ = params
        self.constant_scores_ = constant_scores
        if tied_to is None:
            tied_to = np.broadcast_to(np.arange(n_classes), (len(seeds), n_classes))
        self.tied_to_ = torch.as_tensor(np.asarray(tied_to, dtype=np.int64), device=device)
        self.seeds_ = seeds
        self.sizes_ = sizes
        self.hidden = hidden
        self.n_features_in_ = n_features
        self.n_classes_ = n_classes
        self.device_ = device

    def __len__(self) -> int:
        return len(self.seeds_)

    def __getstate__(self):
        # CPU tensors in the pickle: loadable without the device (see _devices).
        state = {
            **self.__dict__,
            "params_": tensors_to(self.params_, "cpu"),
            "constant_scores_": tensors_to(self.constant_scores_, "cpu"),
            "tied_to_": tensors_to(self.__dict__.get("tied_to_"), "cpu"),
        }
        state.pop("_first_layer", None)
        return state

    def __setstate__(self, state):
        device = loadable_device(state["device_"])
        self.__dict__.update(
            state,
            device_=device,
            params_=tensors_to(state["params_"], device),
            constant_scores_=tensors_to(state["constant_scores_"], device),
            tied_to_=tensors_to(state.get("tied_to_"), device),
        )

    def _first_layer_of_all(self) -> torch.Tensor:
        """The first-layer matrix of every model, built once per ``params_[0]``: the
        per-chunk copy would otherwise dominate vote counting on a GPU."""
        W = self.params_[0]
        cached = self.__dict__.get("_first_layer")
        if cached is None or cached[0] is not W:
            with torch.no_grad():
                cached = self._first_layer = (W, first_layer_matrix(W.detach()))
        return cached[1]

    def _scores(self, X: torch.Tensor, models=slice(None)) -> torch.Tensor:
        params = [p[models] for p in self.params_]
        constant = self.constant_scores_[models]
        every = models == slice(None)
        logits = forward_blocks(params, X, self._first_layer_of_all() if every else None)
        scores = torch.where(torch.isnan(constant)[:, None, :], logits, constant[:, None, :])
        tied_to = self.tied_to_
        if tied_to is None:  # pickled before tied_to_ existed
            return scores
        # Labels with identical training columns take the score of the first of them:
        # exact ties, whatever the rounding of the batched product.
        return torch.gather(scores, 2, tied_to[models][:, None, :].expand_as(scores))

    def _input_chunk(self, n_inputs: int, batch_size) -> int:
        if batch_size is not None:
            return max(1, int(batch_size))
        width = max(p.shape[-1] for p in self.params_[0::2])
        step = max(1, min(n_inputs, (2**23) // max(1, len(self) * width)))
        return -(-step // SCORE_ROWS) * SCORE_ROWS  # whole blocks of forward_blocks

    def decision_function(self, X, *, as_tensor: bool = False):
        """Scores of every model, shape (N, n_inputs, c); fixed columns are +-inf.

        Returns a float64 ndarray, or the float32 tensor on ``device_`` when
        ``as_tensor``.
        """
        X = as_features(X, self.device_)
        self._check_width(X)
        with torch.inference_mode():
            scores = self._scores(X)
        return scores if as_tensor else scores.cpu().numpy().astype(np.float64)

    def _check_width(self, X: torch.Tensor) -> None:
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but the heads were fitted on {self.n_features_in_}."
            )

    def vote_counts(
        self, X, k_base: int, *, batch_size: int | None = None, as_tensor: bool = False
    ):
        """Label counts over the N heads: how many put each label in their top-k_base.

        Ties break towards the lower label index; NaN scores raise (as in the
        ensembles). The work runs on ``device_``, ``batch_size`` inputs at a time
        (default: a block of about 8 million scores). An input's counts do not depend
        on the other inputs, their order or ``batch_size``: labels tied in a model's
        training labels (``tied_to_``) get exactly the same score, and every input is
        scored in products of one fixed shape
        (:func:`~sklearn_certify._stacked._engine.forward_blocks`), so its scores are the same
        bits in any batch.

        Returns
        -------
        counts : ndarray of int64 (or a tensor on ``device_``), shape (n_inputs, c)
            Every row sums to ``N * k_base``.
        """
        k_base = int(k_base)
        if not 1 <= k_base <= self.n_classes_:
            raise ValueError(f"k_base must be in [1, {self.n_classes_}], got {k_base}.")
        X = as_features(X, self.device_)
        self._check_width(X)
        n_inputs = len(X)
        counts = torch.zeros((n_inputs, self.n_classes_), dtype=torch.int64, device=self.device_)
        step = self._input_chunk(n_inputs, batch_size)
        with torch.inference_mode():
            for first in range(0, n_inputs, step):
                top = top_indices(self._scores(X[first : first + step]), k_base, first)  # (N, b, k)
                top = top.permute(1, 0, 2).reshape(top.shape[1], -1)
                counts[first : first + step].scatter_add_(1, top, torch.ones_like(top))
        return counts if as_tensor else counts.cpu().numpy()

    def model_parameters(self, i: int):
        """Model ``i``'s own weights: the one adapter from the stacked heads to one model.

        Returns ``(params, constant, columns)``: natural-layout parameters on the CPU
        (``[W1 (d, h1), b1 (1, h1), ..., Wk (h, len(columns)), bk]``, the output layer
        restricted to the trained ``columns``; None when no column is trained), the
        float64 constant scores (c,) and the trained columns (NaN constant scores).
        """
        constant = self.constant_scores_[i].cpu().numpy().astype(np.float64)
        columns = np.flatnonzero(np.isnan(constant))
        if not columns.size:
            return None, constant, columns
        own = [p[i].detach().cpu().clone() for p in self.params_]
        own[-2] = own[-2][:, columns].contiguous()
        own[-1] = own[-1][:, columns].contiguous()
        return own, constant, columns

    def model_ties(self, i: int) -> np.ndarray | None:
        """Model ``i``'s ``tied_to_`` row as an ndarray (None for heads pickled before it)."""
        return None if self.tied_to_ is None else self.tied_to_[i].cpu().numpy()

    def base_models(self, estimator=None, *, seeds=None, empty_labels=None) -> list:
        """The N heads as the ensembles' fitted base models, one per model.

        Each is a fitted :class:`~sklearn_certify.ensembles._base_model._ConstantAwareMultiLabel`
        around a fitted :class:`~sklearn_certify.heads.LinearHead` restricted to the
        model's trained label columns (its ``estimator_``; None when every column is
        fixed), with the same ``constant_scores_`` and ``columns_`` as one-by-one
        training builds. Parameters are copied to the CPU.

        Parameters
        ----------
        estimator : LinearHead or None
            The template; each wrapper's ``estimator`` is a clone of it with
            ``random_state`` set to the model's seed. None: ``LinearHead()`` with this
            ensemble's ``hidden``.
        seeds, empty_labels : sequences of length N or None
            Stored as each wrapper's ``seed`` and ``empty_labels`` (bookkeeping only).
        """
        template = LinearHead(self.hidden) if estimator is None else estimator
        models = []
        for i in range(len(self)):
            head = clone(template).set_params(random_state=int(self.seeds_[i]))
            wrapper = _ConstantAwareMultiLabel(
                head,
                empty_labels=() if empty_labels is None else empty_labels[i],
                seed=None if seeds is None else int(seeds[i]),
            )
            own, constant, _ = self.model_parameters(i)
            fitted = None
            if own is not None:
                fitted = clone(head)
                fitted._set_fitted(own, n_features=self.n_features_in_)
            models.append(
                wrapper._set_fitted(constant, self.sizes_[i], fitted, tied_to=self.model_ties(i))
            )
        return models

    def top_labels(self, X, k_base: int, model: int) -> np.ndarray:
        """Boolean (n_inputs, c): model ``model``'s top-k_base labels."""
        X = as_features(X, self.device_)
        self._check_width(X)
        with torch.inference_mode():
            top = top_indices(self._scores(X, slice(model, model + 1))[0], int(k_base))
        out = torch.zeros((len(X), self.n_classes_), dtype=torch.bool, device=self.device_)
        out.scatter_(1, top, True)
        return out.cpu().numpy()
