"""SmoothedMultiLabelClassifier: MultiGuard's Gaussian smoothing as a meta-estimator."""

from __future__ import annotations

from numbers import Integral, Real
from os import PathLike

import numpy as np
import torch
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from .._base import CertifiedClassifierMixin
from .._utils._devices import check_devices
from .._utils._docstring import CERTIFY_K_AND_LABEL, CERTIFY_MULTICLASS_NOTE, Substitution
from .._utils._memory import check_cache_memory
from .._utils._validation import check_alpha, check_inputs, check_tensor_inputs
from ..certificates._gaussian import GAUSSIAN, GAUSSIAN_METHODS, check_jia
from ..certificates._gaussian_sequential import LAST_SHARE
from ..results import CertificationResult
from ._certify_sequential import certify_sequential
from ._counts_cache import cached_counts
from ._denoised import fit_denoiser, fitted_sampling_model
from ._models import SAMPLING_DTYPES, is_torch_model
from ._parallel import sharded_label_counts
from ._planner_warnings import warn_unreachable
from ._runners import SamplingModels, check_sampling_options, sampling_options
from ._sampling import check_scores_width, draw_seed
from ._training import TRAIN_NOISE_MODES, check_train_noise, fit_base_estimator, train_noise_mode

__all__ = ["SmoothedMultiLabelClassifier"]

#: Noisy copies per forward pass when ``batch_size=None``.
DEFAULT_BATCH_SIZE = 1000


class SmoothedMultiLabelClassifier(CertifiedClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Certified multi-label classifier by Gaussian randomized smoothing (MultiGuard).

    The smoothed classifier adds isotropic Gaussian noise ``N(0, sigma^2 I)`` to an
    input, lets the base model predict its top-``k_prime`` labels on each of
    ``n_draws`` noisy copies, and predicts the ``k`` labels found most often. Its
    certificate (:meth:`certify`) is a certified intersection size: how many of an
    input's true labels provably stay in the predicted top-k under any perturbation of
    l2 norm at most R (MultiGuard, Theorem 1), with probability at least ``1 - alpha``
    over the sampling.

    Parameters
    ----------
    estimator : estimator, skorch net, torch.nn.Module or None, default=None
        The base multi-label model.

        * ``None``: a :class:`~sklearn_certify.nets.MultiLabelNet` (an MLP for flat
          inputs, a small CNN for images ``(n, C, H, W)``, asymmetric loss), on CUDA
          when available.
        * A skorch net (e.g. ``MultiLabelNet(device="cuda")``): a clone is trained;
          sampling runs its ``module_`` on its ``device``.
        * A ``torch.nn.Module``: an already trained model, mapping a batch shaped
          like ``X`` to one score per label. ``fit`` does not train it; it only
          checks that it scores ``n_classes`` labels. It is used as is (not copied).
        * Any other scikit-learn estimator with ``fit`` and ``decision_function`` or
          ``predict_proba`` (multi-output classifiers' list of probability arrays
          included): a clone is trained.
        * A fitted estimator or skorch net wrapped in ``sklearn.frozen.FrozenEstimator``:
          a pretrained model, used as is (``fit`` does not train it again).
    sigma : float, default=0.5
        Standard deviation of the Gaussian noise (for training and for smoothing).
    k_prime : int, default=1
        Number of labels each base prediction contributes (``k'``).
    k : int, default=3
        Number of labels the smoothed classifier predicts.
    n_draws : int, default=1000
        Noisy copies per input at prediction and certification.
    alpha : float, default=0.001
        Failure probability of the certificate per input (Clopper-Pearson bounds,
        Bonferroni over the labels).
    train_noise : {"gaussian", "consistency"} or bool, default=True
        How ``fit`` trains the base model for smoothing (``docs/training.md``).
        ``"consistency"``: consistency regularisation, for skorch nets: every training
        batch is seen under several fresh noise draws per example and the loss adds a
        term that keeps the copies' predicted labels together; a
        :class:`~sklearn_certify.nets.MultiLabelNet` gets its recommended
        ``noise_copies`` and ``consistency`` unless it sets them (a grid search reaches
        them as ``estimator__consistency``), any other skorch net a
        :class:`~sklearn_certify.nets.TrainingNoise` callback; other estimators, frozen
        ones and torch modules cannot take it (``fit`` raises). ``"gaussian"``
        (``True`` is an alias) trains on Gaussian-noised inputs at ``sigma``:

        * an estimator with a ``noise_sigma`` parameter (``MultiLabelNet``) gets
          ``noise_sigma=sigma``: fresh noise on every training batch of every epoch;
        * any other skorch net gets a callback that adds fresh noise, in place, to the
          inputs of every training batch;
        * any other estimator is fitted once on one noisy copy of the training set
          (``X + N(0, sigma^2 I)``, one copy per example, drawn once): a one-time
          augmentation, the only option for estimators trained in one call. Augment
          further yourself (several noisy copies) if the estimator can take it.
        * a ``torch.nn.Module`` or a ``sklearn.frozen.FrozenEstimator`` is not
          trained, so the flag does not apply (``fit`` warns when it is True).

        With ``train_noise=False`` the base estimator is trained as configured.
    denoiser : None, GaussianDenoiser or torch.nn.Module, default=None
        Denoised smoothing (Salman et al., 2020): the base classifier under noise is
        ``estimator(denoiser(x + noise))`` in every sampling path. A
        :class:`~sklearn_certify.nets.GaussianDenoiser` (``objective="mse"`` or
        ``"stability"``) is cloned and trained by ``fit`` at ``sigma`` on the training
        inputs, after the base model (the stability objective trains through it,
        frozen); a ``torch.nn.Module`` is an already trained denoiser, used as is. It
        needs a torch base model (a skorch net, frozen or not, or a module) and lets
        a model trained on clean inputs be certified without retraining it
        (``docs/pretrained_models.md``).
    method : {"multiguard", "first-term", "jia"}, default="multiguard"
        Default certificate of :meth:`certify`: MultiGuard's Eq. 8 in full, its first
        terms only (ablation), or Jia et al. (2020), label by label (``k_prime=1``).
    sampling_dtype : {None, "float32", "bfloat16", "float16"}, default=None
        The dtype a torch base model runs in while sampling (``predict``,
        ``predict_proba``, ``certify`` and ``score`` alike). ``None`` runs it as it is.
        ``"bfloat16"`` or ``"float16"`` run a float32 model under ``torch.autocast``
        (matrix products and convolutions in the reduced dtype); other changes run a
        cast copy of the model (the given model is never modified). The noise is drawn
        and added to the input in float32 or wider whatever this is, so the
        certificates hold exactly for the smoothed classifier of the model as it runs:
        a different base model than with ``None``, with its own counts, equally
        certified (``docs/guarantees.md``). Faster where the hardware has fast reduced
        precision (GPUs with tensor cores, CPUs with AVX512-BF16 or AMX), much slower
        where it does not (``docs/performance.md``). Needs a torch base model.
    compile : bool, default=False
        Run the torch base model through ``torch.compile`` while sampling: compiled
        once per fitted model and device, on the first call, and reused. A model that
        cannot be compiled runs eagerly, with one warning; a skorch net with its own
        ``compile=True`` is used as it is, not compiled twice. Pickling keeps no
        compiled code: a loaded estimator (or a joblib worker process) compiles again.
        Compiled code may round differently from eager code, so the counts may differ;
        the certificates hold for the compiled model. Needs a torch base model.
    batch_size : int or None, default=None
        Noisy copies per forward pass (or per call to the estimator's scoring method)
        when sampling; ``None`` means 1000. Bounds the sampling memory: one batch of
        noisy copies (two on a CPU where the next batch's noise is drawn on a second
        thread), at most ``batch_size`` clean inputs on the device, and one block
        of at most 512 draws of an input's noise. The counts do not depend on it.
    n_jobs : int or None, default=None
        Number of joblib workers sampling in parallel for ``predict``,
        ``predict_proba``, ``certify`` and ``score``; the inputs are split into one
        shard per worker. ``None`` means 1 unless in a :func:`joblib.parallel_config`
        context, ``-1`` means all processors. Any joblib backend works, Dask included
        (``with joblib.parallel_backend("dask"): clf.certify(...)``). Each worker
        receives the model once per call and, in a separate process, runs torch on
        its share of the cores (``cpu_count() // n_workers`` threads, at least one).
        The counts do not depend on it. Ignored when ``devices`` is set.
    devices : list of str or torch.device, or None, default=None
        Devices to sample a torch base model on, e.g. ``["cuda:0", "cuda:1"]``: the
        inputs are split into one shard per device, each sampled by a copy of the
        module on its device, on threads of this process. ``None`` samples on the
        model's own device. The counts are those of a single device of the same kind
        and model (see ``random_state``). Checked at ``fit`` (and again before
        sampling): the ``meta`` device, a CUDA index at or beyond
        ``torch.cuda.device_count()`` and any other device torch cannot allocate on
        here (``mps`` where it is not available, ...) are refused, naming ``devices``.
    memory : None, str, path or joblib.Memory, default=None
        Cache on disk (a directory or a ``joblib.Memory``, as sklearn's Pipeline), used
        with an int ``random_state``; results are identical with and without it. It
        holds fitted base models, keyed on what changes training (so search candidates
        that differ only in ``k``, ``alpha``, ``method``, ``n_draws``, ``k_prime`` or
        ``batch_size`` train once), and each input's counts, keyed on the fitted model's
        content, the input's content and what changes counts: an input is never sampled
        twice, and an interrupted call resumes. ``certify(..., sequential=True)``
        neither reads nor stores counts. See ``docs/model_selection.md``.
    random_state : int, RandomState instance or None, default=None
        Controls the sampling noise and, at ``fit``, the training randomness. Each sampling
        call draws one 128-bit seed: from ``check_random_state(random_state)`` for an int or
        a ``RandomState``, from the operating system's entropy for ``None`` (fresh every
        call; use it in deployment, since a known seed lets an attacker search for inputs
        whose noise over-claims). Every input's noise is its own stream, set by that seed
        and the input's content alone, not by its position in X, the other inputs,
        ``batch_size``, ``n_jobs`` or ``devices``: with an int, ``predict`` and ``certify``
        agree, and an input alone gets the row it gets among others. CPU and CUDA
        generators give different counts. The training noise is a stream independent of
        the certification noise, and torch-based estimators train under a forked, seeded
        torch RNG; ``None`` leaves training to the global RNGs. See
        ``docs/guarantees.md``, "Noise streams".
    verbose : int, default=0
        Progress bars over the noisy draws when > 0.

    Attributes
    ----------
    estimator_ : estimator or torch.nn.Module
        The fitted base model (the given module itself for a ``torch.nn.Module``).
    n_classes_ : int
        Number of labels.
    classes_ : ndarray of shape (n_classes,)
        Labels of 1-D targets, or the column indices ``0 .. n_classes_-1`` of a label
        matrix.
    multiclass_ : bool
        Whether ``fit`` saw 1-D multi-class targets.
    input_shape_ : tuple of int
        Shape of one input, ``X.shape[1:]``.
    n_features_in_ : int
        Number of features; only set for 2-D ``X``.

    See Also
    --------
    sklearn_certify.CertificationResult : what :meth:`certify` returns.
    sklearn_certify.certificates.gaussian_certified_size : the certificate itself.

    Notes
    -----
    Every call samples anew, unless a cache was chosen: ``memory`` (on disk), or
    ``sklearn_certify.set_config(counts_cache=True)`` (this process), both with an int
    ``random_state`` and keyed on the fitted model's content and code, the inputs and
    every parameter that changes the counts (``docs/guarantees.md``). To certify
    several radii, methods, ``k`` or ``alpha`` from one sampling pass, call
    :meth:`CertificationResult.recertify`. ``predict_proba`` estimates ``p_i``, the
    probability that label i is in the base model's top-k' (rows sum to ``k_prime``).
    Each input's certificate holds with probability at least ``1 - alpha`` over the
    seed, whatever the other inputs.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.multioutput import MultiOutputClassifier
    >>> from sklearn_certify import SmoothedMultiLabelClassifier
    >>> from sklearn_certify.datasets import make_multidigit
    >>> X_train, X_test, Y_train, Y_test = make_multidigit(300, 20, random_state=0)
    >>> base = MultiOutputClassifier(LogisticRegression(max_iter=200))
    >>> clf = SmoothedMultiLabelClassifier(base, sigma=0.25, k=3, n_draws=100,
    ...                                    random_state=0).fit(X_train, Y_train)
    >>> clf.predict(X_test[:2]).sum(axis=1).tolist()
    [3, 3]
    >>> result = clf.certify(X_test, Y_test, radius=[0.0, 0.25])
    >>> result.sizes.shape
    (20, 2)
    """

    _certificate = "gaussian"  # its name in the certificate registry
    _label_params = ("k_prime", "k")

    _parameter_constraints: dict = {
        "estimator": [
            HasMethods(["fit", "decision_function"]),
            HasMethods(["fit", "predict_proba"]),
            torch.nn.Module,
            None,
        ],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "k_prime": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "n_draws": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "train_noise": ["boolean", StrOptions(set(TRAIN_NOISE_MODES))],
        "method": [StrOptions(set(GAUSSIAN_METHODS))],
        "denoiser": [None, torch.nn.Module, HasMethods(["fit", "initialize"])],
        "sampling_dtype": [StrOptions(set(SAMPLING_DTYPES)), None],
        "compile": ["boolean"],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "n_jobs": [Integral, None],
        "devices": [list, tuple, None],
        "memory": [None, str, PathLike, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        sigma: float = 0.5,
        k_prime: int = 1,
        k: int = 3,
        n_draws: int = 1000,
        alpha: float = 0.001,
        train_noise: bool | str = True,
        method: str = "multiguard",
        denoiser=None,
        sampling_dtype: str | None = None,
        compile: bool = False,
        batch_size: int | None = None,
        n_jobs: int | None = None,
        devices: list | None = None,
        memory=None,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.sigma = sigma
        self.k_prime = k_prime
        self.k = k
        self.n_draws = n_draws
        self.alpha = alpha
        self.train_noise = train_noise
        self.method = method
        self.denoiser = denoiser
        self.sampling_dtype = sampling_dtype
        self.compile = compile
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.devices = devices
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    # ----------------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, Y) -> SmoothedMultiLabelClassifier:
        """Fit a clone of the base estimator (on noisy inputs when ``train_noise``).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_inputs, ...)
            Training inputs, flat ``(n_inputs, n_features)`` or image-shaped.
        Y : array-like of shape (n_inputs, n_classes) or (n_inputs,)
            0/1 label indicator matrix, or 1-D multi-class labels (one-hot encoded;
            ``predict`` then returns labels from ``classes_``).

        Returns
        -------
        self : SmoothedMultiLabelClassifier
            The fitted classifier.
        """
        self._check_y(Y)
        memory = check_cache_memory(self.memory)
        check_train_noise(self.estimator, train_noise_mode(self.train_noise))
        X = self._check_input(X, reset=True)
        Y_matrix, classes = self._fit_targets(X, Y)
        self._check_fit_samples(X)  # a tensor: arrays are checked by check_array
        n_classes = Y_matrix.shape[1]
        self._check_label_params(n_classes)
        self._set_targets(n_classes, classes)
        # the fitted base model, from memory when the same training ran before
        self.estimator_ = fit_base_estimator(self, X, Y, Y_matrix, memory)
        self.denoiser_ = fit_denoiser(self, X, memory)
        check_scores_width(self._sampling_model(), X[:1], n_classes)
        check_sampling_options(self.estimator_, self.sampling_dtype, self.compile)
        self._sampling_models = SamplingModels()  # cast / compiled modules, per device
        self._checked_devices()  # a bad device fails at fit, not at certify
        return self

    def _check_label_params(self, n_classes: int) -> None:
        super()._check_label_params(n_classes)
        check_jia(self.method, self.k_prime)

    # ---------------------------------------------------------------------- sampling
    def _check_input(self, X, *, reset: bool):
        """X checked by ``check_inputs`` (arrays; ``fit`` needs an input) or
        ``check_tensor_inputs`` (tensors, kept on their device), and the shape of its
        inputs (recorded at ``fit``)."""
        if torch.is_tensor(X):
            X = check_tensor_inputs(X)
        else:
            X = check_inputs(X, ensure_min_samples=int(reset))
        self._check_input_shape(X, reset=reset)
        return X

    def _label_counts(self, X) -> tuple[np.ndarray, int]:
        """Label counts of ``X`` over ``n_draws`` noisy copies.

        Sampled anew on every call, unless the caller chose a cache: ``memory`` (on
        disk) or ``sklearn_certify.set_config(counts_cache=True)`` (this process), with
        an int ``random_state`` and a model the key can cover.
        """
        self._check_fitted_params()
        X = self._check_input(X, reset=False)
        devices = self._checked_devices()  # a bad value fails even when counts are cached
        seed = draw_seed(self.random_state)
        return cached_counts(self, X, seed, devices), self.n_draws

    def _sampling_model(self):
        """The base classifier the noisy copies go through: ``estimator_``, behind
        ``denoiser_`` when there is one (:func:`._denoised.fitted_sampling_model`)."""
        return fitted_sampling_model(self)

    def _sample(self, X, seed: int, devices, on_chunk=None, *, options=None, **draws) -> np.ndarray:
        """Counts of ``X`` over ``n_draws`` noisy copies per input (``draws``: the
        ``n_draws`` and ``first_draw`` of a stage of a sequential run instead)."""
        return sharded_label_counts(
            self._sampling_model(),
            X,
            seed=seed,
            n_jobs=self.n_jobs,
            devices=devices,
            on_chunk=on_chunk,
            n_classes=self.n_classes_,
            sigma=self.sigma,
            k_prime=self.k_prime,
            **{"n_draws": self.n_draws, **draws},
            batch_size=self.batch_size or DEFAULT_BATCH_SIZE,
            verbose=self.verbose,
            **(sampling_options(self) if options is None else options),
        )

    @Substitution(k_and_label=CERTIFY_K_AND_LABEL, multiclass_note=CERTIFY_MULTICLASS_NOTE)
    def certify(
        self,
        X,
        Y,
        radius=0.0,
        sequential: bool = False,
        *,
        method: str | None = None,
        alpha: float | None = None,
        k: int | None = None,
        label: str | None = None,
        max_draws: int | None = None,
    ) -> CertificationResult:
        """Certified intersection sizes of ``X``'s true labels at each l2 radius.

        Parameters
        ----------
        X : array-like or tensor of shape (n_inputs, ...)
        Y : array-like of {0, 1}, shape (n_inputs, n_classes), or 1-D labels
            The true labels (1-D labels when ``fit`` saw 1-D targets).
        radius : float or array-like of float, default=0.0
            l2 norms of the perturbations to certify against.
        sequential : bool, default=False
            Draw in stages and stop each input as soon as its certificates at
            ``radius`` are decided: already at ``min(k, |L|)``, or out of reach of any
            further draws. ``n_draws`` is then the maximum per input, and alpha is split
            over the stages so that every certificate still holds with probability at
            least ``1 - alpha`` (``docs/sequential.md``). The result's ``n_draws_used``
            says how many draws each input took; an input's first m draws are those a
            fixed ``n_draws=m`` run would make. Sequential certification does not use
            ``memory``: it neither reads nor stores counts, so an interrupted run
            starts again from the first stage.
        method : {"multiguard", "first-term", "jia"}, optional
            Overrides the ``method`` parameter for this call.
        alpha : float, optional
            Overrides the ``alpha`` parameter for this call.
        {k_and_label}
        max_draws : int, optional
            With ``sequential=True`` only: an int above ``n_draws`` that turns
            ``n_draws`` into a budget of mean draws per input. Undecided inputs may go
            on up to ``max_draws`` draws as long as the whole call's draws stay within
            ``n_draws * n_inputs``. The stage ending at ``n_draws`` then gets at most
            5 % of alpha (2.5 % for ``max_draws = 3 n_draws``), so inputs that stop
            there are certified less than by a fixed run: it helps only when many
            inputs are decided early and the undecided ones gain from draws beyond
            ``n_draws`` (``docs/sequential.md``, "The budget as a mean").

        Returns
        -------
        CertificationResult

        Warns
        -----
        UserWarning
            Once, when a radius lies at or beyond
            :func:`~sklearn_certify.bounds.max_certifiable_radius` for ``n_draws`` (or
            ``max_draws``) and ``alpha``: no input can be certified there, however
            good the model.

        Notes
        -----
        {multiclass_note}
        """
        if not isinstance(sequential, bool | np.bool_):
            raise TypeError(
                f"sequential must be a bool (True or False), got {sequential!r} "
                f"({type(sequential).__name__})."
            )
        if not sequential and max_draws is not None:
            raise TypeError("max_draws is an option of sequential=True certification.")
        warn_unreachable(
            self,
            radius,
            method,
            alpha,
            k,
            max_draws or self.n_draws,
            LAST_SHARE if sequential else 1.0,
        )
        if not sequential:
            return self._certify(X, Y, radius, k=k, label=label, method=method, alpha=alpha)
        return certify_sequential(
            self, X, Y, radius, max_draws, k=k, label=label, method=method, alpha=alpha
        )

    def _checked_devices(self) -> list[torch.device] | None:
        """``devices`` as torch devices; a clear error for a bad entry, a device this
        machine lacks or a non-torch base model."""
        return check_devices(
            self.devices, is_torch_model(self._sampling_model()), type(self.estimator_).__name__
        )

    def _certificate_options(self, *, method=None, alpha=None) -> dict:
        method = GAUSSIAN.check_method(
            self.method if method is None else method, {"k_prime": self.k_prime}
        )
        alpha = check_alpha(self.alpha if alpha is None else alpha)
        return dict(
            certificate=self._certificate,
            method=method,
            alpha=alpha,
            k_prime=self.k_prime,
            sigma=float(self.sigma),
        )
