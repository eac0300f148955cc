"""What each estimator parameter changes: training, the label counts, or neither.

The table below is the contract of the ``memory`` caches and of model selection:

* **training**: the fitted base model(s) depend on it; a new value trains again. These
  (with the training data's content) make the key of a cached fit.
* **counts**: the label counts depend on it (for smoothing: the sampled counts over
  noisy copies; for the ensembles: the votes of the base models); a new value samples
  or votes again. These (with the fitted model's and the input's content) make the key
  of cached counts.
* **free**: neither; a new value only recertifies the same counts
  (:meth:`CertificationResult.recertify`), so a search over them costs no training
  and no sampling.

A parameter that changes training also changes the counts (another model votes
differently). ``docs/model_selection.md`` shows this table: the docs build generates it
from :data:`PARAMETER_ROLES` and :data:`ROLE_NOTES` (``docs/sphinxext/parameter_table.py``).
"""

from __future__ import annotations

__all__ = ["PARAMETER_ROLES", "ROLE_NOTES", "counts_key_parameters", "parameter_role"]

PARAMETER_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "SmoothedMultiLabelClassifier": {
        # sigma enters training only with train_noise (or a GaussianDenoiser); the
        # denoiser is trained at fit and is part of the sampled model (counts key)
        "training": ("estimator", "sigma", "train_noise", "denoiser", "random_state"),
        # sampling_dtype, compile: another base model runs (rounded differently)
        "counts": ("k_prime", "n_draws", "sampling_dtype", "compile"),
        # devices: a device of another kind (CPU, CUDA) resamples, through the key's
        # device type
        "free": ("k", "alpha", "method", "batch_size", "n_jobs", "devices", "memory", "verbose"),
    },
    # vectorize: the stacked program's models equal one-by-one fits up to float
    # rounding, and its vote counting may break exact score ties differently
    "BaggingCertifiedClassifier": {
        "training": ("estimator", "n_estimators", "max_samples", "random_state", "vectorize"),
        "counts": ("k_base",),
        "free": ("k", "alpha", "method", "n_jobs", "memory", "verbose"),
    },
    "DPACertifiedClassifier": {
        "training": ("estimator", "n_partitions", "spread", "vectorize"),
        "counts": ("k_base",),
        "free": ("k", "method", "n_jobs", "memory", "verbose"),
    },
}


#: What the docs table adds to a parameter's role, where the role alone does not say it
#: (Markdown, shown after the role: "refit (with ...) and resample").
ROLE_NOTES: dict[str, dict[str, str]] = {
    "SmoothedMultiLabelClassifier": {
        "sigma": "(with `train_noise=True`) and resample",
        "denoiser": "(the denoiser; the base model's cached fit is reused) and resample",
        "random_state": "and resample",
        "sampling_dtype": "(another base model runs: rounded differently)",
        "compile": "(another base model runs: rounded differently)",
        "devices": "(a device of another kind, CPU or CUDA, resamples)",
    },
    "BaggingCertifiedClassifier": {
        "vectorize": "(the stacked program's models equal one-by-one fits up to float "
        "rounding; exact ties break the same way in both)"
    },
    "DPACertifiedClassifier": {
        "n_partitions": "(with `memory`, only models whose buckets changed)",
        "spread": "(with `memory`, only models whose buckets changed)",
        "vectorize": "(as for bagging)",
    },
}


def parameter_role(estimator: str, parameter: str) -> str:
    """``"training"``, ``"counts"`` or ``"free"`` for a parameter of ``estimator``."""
    for role, names in PARAMETER_ROLES[estimator].items():
        if parameter in names:
            return role
    raise KeyError(f"{estimator} has no parameter {parameter!r}.")


#: Training parameters whose values also enter the counts directly, not only through
#: the fitted model's content: smoothing's ``sigma`` is the noise level of every draw.
#: (``estimator``, ``train_noise`` and ``denoiser`` enter the counts key through the
#: fitted model's content, ``random_state`` through the seed.)
SAMPLED_TRAINING_PARAMETERS: dict[str, tuple[str, ...]] = {
    "SmoothedMultiLabelClassifier": ("sigma",)
}


def counts_key_parameters(estimator: str) -> tuple[str, ...]:
    """The parameters whose values make the key of cached counts (with the fitted
    model's content, the seed, the device type and the inputs' content)."""
    return SAMPLED_TRAINING_PARAMETERS.get(estimator, ()) + PARAMETER_ROLES[estimator]["counts"]
