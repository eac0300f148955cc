"""The sklearn-certify benchmark suite: one command, every figure a ratio.

    python bench/run_all.py            # sections a-f (about 10 minutes on 2 AVX2 cores)
    python bench/run_all.py --quick    # smaller sizes, a couple of minutes
    python bench/run_all.py --only g   # reduced precision and compilation, alone

Writes ``bench/results.json`` (every timing and setting) and ``bench/results.md`` (the
table for the README). Each ratio is measured side by side in the same process: the
two sides run alternately, ``--repeat`` times, and the best time of each is kept.

Sections
--------
a. Certify engine against its floor: ``SmoothedMultiLabelClassifier.certify`` (and the
   sampling engine alone) for a skorch MLP and the small CNN on ``make_multidigit``,
   against the bare minimum written plainly in torch below (noise + forward + top-k' +
   counts, same batch size, same device). Goal: ratio <= 1.15.
b. Against the Adversarial Robustness Toolbox (``pip install
   adversarial-robustness-toolbox statsmodels``): ART's
   ``PyTorchRandomizedSmoothing.certify`` and ours on the same torch model, 10-class
   digits, k = k' = 1, n = 1000. Goal: ours at least 4x faster. The certified accuracy
   curves of both are reported side by side as a sanity check.
c. The certificate-math grid of ``bench/bench_certificates.py``.
d. Ensembles: fitting N = 1000 bagging base models on 5,000 x 64 features, the generic
   joblib path of ``BaggingCertifiedClassifier`` (one model at a time) against the
   vectorised path it takes automatically, on the same subsamples and seeds: skorch
   ``MultiLabelNet`` heads (linear and one hidden layer of 32, mini-batch Adam;
   ``sklearn_certify._stacked._nets``; goal: 20x), and ``LinearHead`` heads
   (full-batch Adam; ``sklearn_certify._stacked._heads``); also vote counting, and
   the agreement of the two paths' votes.
e. Scaling: certify time against the number of inputs and n_draws (log-log slope, 1 =
   linear) and peak memory against batch_size (fresh subprocess per point).
f. Sharding: ``SmoothedMultiLabelClassifier.certify`` throughput with ``n_jobs=2`` (two
   loky worker processes, one torch thread each) against ``n_jobs=1`` (one thread), on
   the small CNN; the counts of both are checked to be identical. Goal: >= 1.6x on 2
   cores.
g. Reduced precision and compilation (``sampling_dtype``, ``compile``): the quickstart
   CNN and a 512-wide MLP, 200 inputs at n = 1000 (``--speed-inputs``), sigma = 0.5.
   Plain-torch floors (``floor_counts``) with the model in float32 eager, bfloat16
   (autocast, and a bfloat16 copy), compiled, and compiled under bfloat16 autocast;
   ``certify`` at each setting; the noise's share of the time; the certified f1 at
   R in {0, 0.25, 0.5} at each setting. Goals: the fastest setting >= 3.0x (CNN) /
   2.5x (MLP) faster than the float32 eager floor, <= 1.15x the best plain-torch
   variant, certified f1 within 0.005 of float32 at every radius. It runs only when
   named: ``--only g`` runs it alone (results in ``results_speed.json`` / ``.md``).
   On a CPU without native bfloat16 (AVX2 only) its emulated bfloat16 settings take
   tens of minutes.

Threads: ``--threads 1`` (default) pins torch to one thread, so the ratios compare
single-core work and stay stable on a shared machine; ``--threads 0`` keeps torch's
default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_certificates
sys.path.insert(0, str(HERE.parent))  # the package, when run from a checkout

from sklearn_certify import BaggingCertifiedClassifier, SmoothedMultiLabelClassifier  # noqa: E402
from sklearn_certify.datasets import make_multidigit  # noqa: E402
from sklearn_certify.nets import MLPModule, MultiLabelNet, SmallCNN  # noqa: E402
from sklearn_certify.smoothing._sampling import sample_label_counts  # noqa: E402

SIGMA = 0.25


# ----------------------------------------------------------------------------- helpers
def hardware(threads: int) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            mem_gib = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem_gib = float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "torch_threads": torch.get_num_threads(),
        "threads_flag": threads,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def race(fns: dict, repeat: int) -> dict:
    """Best wall time of each callable, the callables run alternately ``repeat`` times."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_net(module, X, Y, epochs: int, seed: int = 0) -> MultiLabelNet:
    torch.manual_seed(seed)
    net = MultiLabelNet(module, max_epochs=epochs, batch_size=128, lr=2e-3, noise_sigma=SIGMA)
    return net.fit(X, Y)


# --------------------------------------------------------------------------- the floor
def floor_counts(
    module: torch.nn.Module,
    X: torch.Tensor,
    *,
    n_classes: int,
    sigma: float,
    k_prime: int,
    n_draws: int,
    batch_size: int,
    seed: int,
) -> torch.Tensor:
    """The bare minimum, plainly in torch: noise + forward + top-k' + counts.

    One input at a time, its draws in batches of ``batch_size``; everything on X's
    device. No validation, no progress, no chunked transfers; argmax for k' = 1 (the
    cheapest top-1), in-place noise scaling.
    """
    device = X.device
    generator = torch.Generator(device=device).manual_seed(seed)
    counts = torch.zeros((len(X), n_classes), dtype=torch.int64, device=device)
    module.eval()
    with torch.inference_mode():
        for i in range(len(X)):
            for start in range(0, n_draws, batch_size):
                b = min(batch_size, n_draws - start)
                noisy = torch.randn((b, *X.shape[1:]), generator=generator, device=device)
                scores = module(noisy.mul_(sigma).add_(X[i]))
                top = scores.argmax(dim=1) if k_prime == 1 else scores.topk(k_prime, dim=1)[1]
                counts[i] += torch.bincount(top.reshape(-1), minlength=n_classes)
    return counts


# ------------------------------------------------------------------------ a. the engine
def bench_engine(cfg: dict) -> dict:
    out = {}
    n_inputs, n_draws, batch = cfg["engine_inputs"], 1000, 1000
    for name, image in (("mlp", False), ("cnn", True)):
        X_tr, X_te, Y_tr, Y_te = make_multidigit(2000, n_inputs, image_shape=image, random_state=0)
        module = None if not image else SmallCNN
        net = train_net(module, X_tr, Y_tr, cfg["train_epochs"])
        clf = SmoothedMultiLabelClassifier(
            net.module_,
            sigma=SIGMA,
            k_prime=1,
            k=3,
            n_draws=n_draws,
            batch_size=batch,
            train_noise=False,
            random_state=0,
        ).fit(X_tr, Y_tr)
        X_t = torch.as_tensor(X_te)
        n_classes = Y_tr.shape[1]

        def certify(clf=clf, X_te=X_te, Y_te=Y_te):
            clf.certify(X_te, Y_te, radius=0.5)

        def engine(net=net, X_te=X_te, n_classes=n_classes):
            sample_label_counts(
                net.module_,
                X_te,
                n_classes=n_classes,
                sigma=SIGMA,
                k_prime=1,
                n_draws=n_draws,
                batch_size=batch,
                random_state=0,
            )

        def floor(net=net, X_t=X_t, n_classes=n_classes):
            floor_counts(
                net.module_,
                X_t,
                n_classes=n_classes,
                sigma=SIGMA,
                k_prime=1,
                n_draws=n_draws,
                batch_size=batch,
                seed=0,
            )

        floor()  # warm-up
        # the MLP runs are short (well under a second): more repeats against noise
        repeat = cfg["repeat"] * (3 if name == "mlp" else 1)
        t = race({"certify": certify, "floor": floor}, repeat)
        t.update(race({"engine": engine}, 2 if name == "mlp" else 1))
        out[name] = {
            "n_inputs": n_inputs,
            "n_draws": n_draws,
            "batch_size": batch,
            "certify_s": t["certify"],
            "engine_s": t["engine"],
            "floor_s": t["floor"],
            "ratio_certify_vs_floor": t["certify"] / t["floor"],
            "ratio_engine_vs_floor": t["engine"] / t["floor"],
            "draws_per_s_certify": n_inputs * n_draws / t["certify"],
        }
        log(
            f"a. {name}: certify {t['certify']:.2f}s, engine {t['engine']:.2f}s, floor "
            f"{t['floor']:.2f}s -> {t['certify'] / t['floor']:.3f}x the floor"
        )
    return out


# ----------------------------------------------------------------------------- b. ART
def bench_art(cfg: dict) -> dict:
    try:
        import statsmodels  # noqa: F401  (ART's certify needs it)
        from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
    except ImportError as exc:
        log(f"b. skipped: {exc}")
        return {"skipped": str(exc)}
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=cfg["art_inputs"], random_state=0, stratify=y
    )
    n, n0, batch = 1000, 100, 1000
    torch.manual_seed(0)
    net = MultiLabelNet(
        MLPModule, max_epochs=cfg["train_epochs"] * 3, batch_size=64, lr=2e-3, noise_sigma=SIGMA
    )
    net.fit(X_tr, np.eye(10, dtype=np.float32)[y_tr])
    module = net.module_.eval()
    ours = SmoothedMultiLabelClassifier(
        module,
        sigma=SIGMA,
        k=1,
        k_prime=1,
        n_draws=n,
        alpha=0.001,
        batch_size=batch,
        train_noise=False,
        random_state=0,
    ).fit(X_tr, y_tr)
    art = PyTorchRandomizedSmoothing(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(64,),
        nb_classes=10,
        device_type="cpu",
        sample_size=n0,
        scale=SIGMA,
        alpha=0.001,
    )
    radii = np.round(np.arange(0, 1.01, 0.125), 3)
    holder = {}

    def run_ours():
        holder["ours"] = ours.certify(X_te, y_te, radius=radii)

    def run_art():
        np.random.seed(0)  # noqa: NPY002 - ART draws its noise from numpy's global generator
        holder["art"] = art.certify(X_te, n=n, batch_size=batch)

    t = race({"ours": run_ours, "art": run_art}, cfg["repeat"])
    ours_acc = (holder["ours"].sizes >= 1).mean(axis=0)
    pred, radius = holder["art"]
    art_acc = np.array([np.mean((pred == y_te) & (radius >= r)) for r in radii])
    out = {
        "n_inputs": len(X_te),
        "n": n,
        "art_n0": n0,
        "batch_size": batch,
        "sigma": SIGMA,
        "ours_s": t["ours"],
        "art_s": t["art"],
        "speedup": t["art"] / t["ours"],
        "speedup_per_draw": (t["art"] / (n + n0)) / (t["ours"] / n),
        "radii": radii.tolist(),
        "certified_accuracy_ours": ours_acc.round(4).tolist(),
        "certified_accuracy_art": art_acc.round(4).tolist(),
        "max_abs_accuracy_gap": float(np.max(np.abs(ours_acc - art_acc))),
        "art_version": __import__("art").__version__,
    }
    log(
        f"b. ART {t['art']:.2f}s vs ours {t['ours']:.2f}s -> {out['speedup']:.1f}x faster; "
        f"certified accuracy gap <= {out['max_abs_accuracy_gap']:.3f}"
    )
    return out


# -------------------------------------------------------------------- c. certificates
def bench_certificate_grid(cfg: dict) -> dict:
    import bench_certificates

    start = time.perf_counter()
    result = bench_certificates.main()
    result["total_s"] = time.perf_counter() - start
    result["cells"] = 500 * 301
    return result


# ----------------------------------------------------------------------- d. ensembles
def digit_features(n_train: int, n_test: int, dim: int = 64):
    """Frozen features: PCA of make_multidigit to ``dim`` dimensions, standardised."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X_tr, X_te, Y_tr, Y_te = make_multidigit(n_train, n_test, random_state=0)
    pca = PCA(dim, random_state=0).fit(X_tr)
    scaler = StandardScaler().fit(pca.transform(X_tr))
    F_tr = scaler.transform(pca.transform(X_tr)).astype(np.float32)
    F_te = scaler.transform(pca.transform(X_te)).astype(np.float32)
    return F_tr, F_te, Y_tr, Y_te


def net_heads(cfg: dict) -> dict:
    """The MultiLabelNet heads of section d: a linear head and a small MLP head, trained
    by skorch's defaults (mini-batches of 64, Adam, ASL)."""
    common = dict(max_epochs=cfg["net_epochs"], batch_size=64, lr=1e-3)
    return {
        "linear": MultiLabelNet(MLPModule, module__hidden=(), **common),
        "mlp32": MultiLabelNet(MLPModule, module__hidden=(32,), **common),
    }


def bench_net_fit(name: str, net, F_tr, F_te, Y_tr, cfg: dict) -> dict:
    """Fit N MultiLabelNet bagging heads: vectorised (automatic) against one by one.

    The one-by-one (generic) path is timed on the first ``n_generic`` base models --
    the ensembles draw one seed per model up front, so an ensemble of ``n_generic``
    models has exactly the first ``n_generic`` models of the N-model one -- and its
    time per model is scaled to N (each model is an independent fit of the same size).
    Both paths also fit the ``n_generic``-model ensemble, whose votes are compared.
    """
    N, n_generic, m = cfg["n_models"], cfg["n_generic_nets"], 500
    params = dict(max_samples=m, k_base=1, k=3, random_state=0, n_jobs=1)
    start = time.perf_counter()
    generic = BaggingCertifiedClassifier(net, n_estimators=n_generic, vectorize=False, **params)
    generic.fit(F_tr, Y_tr)
    generic_s = time.perf_counter() - start
    assert generic.stacked_models_ is None
    small = BaggingCertifiedClassifier(net, n_estimators=n_generic, **params).fit(F_tr, Y_tr)
    assert small.stacked_models_ is not None
    start = time.perf_counter()
    full = BaggingCertifiedClassifier(net, n_estimators=N, **params).fit(F_tr, Y_tr)
    vectorised_s = time.perf_counter() - start
    counts_g, counts_v = generic._label_counts(F_te)[0], small._label_counts(F_te)[0]
    top_g = np.argsort(-counts_g, axis=1, kind="stable")[:, :3]
    top_v = np.argsort(-counts_v, axis=1, kind="stable")[:, :3]
    generic_per_model = generic_s / n_generic
    out = {
        "n_models": N,
        "n_generic_timed": n_generic,
        "max_samples": m,
        "hidden": list(net.module__hidden),
        "epochs": net.max_epochs,
        "batch_size": net.batch_size,
        "generic_per_model_s": generic_per_model,
        "generic_fit_s_scaled": generic_per_model * N,
        "vectorised_fit_s": vectorised_s,
        "fit_speedup": generic_per_model * N / vectorised_s,
        "vectorised_models_per_s": N / vectorised_s,
        "generic_models_per_s": 1 / generic_per_model,
        "max_abs_vote_difference": int(np.abs(counts_g - counts_v).max()),
        "same_top3_fraction": float(np.mean(np.all(top_g == top_v, axis=1))),
        "vectorised_used": full.stacked_models_ is not None,
    }
    log(
        f"d. {N} MultiLabelNet {name} heads: one by one {generic_per_model * 1e3:.0f} ms "
        f"per model, vectorised {vectorised_s:.1f}s -> {out['fit_speedup']:.0f}x; "
        f"max vote difference {out['max_abs_vote_difference']}"
    )
    return out


def bench_dpa_nets(net, F_tr, F_te, Y_tr, cfg: dict) -> dict:
    """DPA with MultiLabelNet heads: one net at a time without skorch (the path DPA
    takes automatically) against skorch's fits (the generic path), all partitions."""
    from sklearn_certify import DPACertifiedClassifier

    params = dict(n_partitions=cfg["n_partitions"], k_base=1, k=3, n_jobs=1)
    start = time.perf_counter()
    generic = DPACertifiedClassifier(net, vectorize=False, **params).fit(F_tr, Y_tr)
    generic_s = time.perf_counter() - start
    start = time.perf_counter()
    lean = DPACertifiedClassifier(net, **params).fit(F_tr, Y_tr)
    lean_s = time.perf_counter() - start
    assert generic.stacked_models_ is None and lean.stacked_models_ is not None
    counts_g, counts_l = generic._label_counts(F_te)[0], lean._label_counts(F_te)[0]
    out = {
        "n_partitions": params["n_partitions"],
        "n_train": len(F_tr),
        "generic_fit_s": generic_s,
        "lean_fit_s": lean_s,
        "fit_speedup": generic_s / lean_s,
        "max_abs_vote_difference": int(np.abs(counts_g - counts_l).max()),
    }
    log(
        f"d. DPA, {params['n_partitions']} MultiLabelNet linear heads: skorch {generic_s:.1f}s, "
        f"without skorch {lean_s:.1f}s -> {out['fit_speedup']:.1f}x; max vote difference "
        f"{out['max_abs_vote_difference']}"
    )
    return out


def bench_ensembles(cfg: dict) -> dict:
    from sklearn_certify._stacked._heads import fit_linear_heads
    from sklearn_certify._utils._random import SEED_HIGH
    from sklearn_certify.ensembles._bagging import subsample_indices
    from sklearn_certify.heads import LinearHead

    class SequentialLinearHead(LinearHead):
        """LinearHead under another class name: the ensembles train it one model at a
        time through joblib (the generic path), the same computation per model."""

    N, m, epochs, k_base = cfg["n_models"], 500, cfg["head_epochs"], 1
    F_tr, F_te, Y_tr, Y_te = digit_features(5000, 500)
    n_classes = Y_tr.shape[1]
    params = dict(epochs=epochs, lr=0.01)
    generic = BaggingCertifiedClassifier(
        SequentialLinearHead(**params),
        n_estimators=N,
        max_samples=m,
        k_base=k_base,
        k=3,
        random_state=0,
        n_jobs=1,
    )
    vectorised = BaggingCertifiedClassifier(
        LinearHead(**params),
        n_estimators=N,
        max_samples=m,
        k_base=k_base,
        k=3,
        random_state=0,
        n_jobs=1,
    )
    seeds = np.random.RandomState(0).randint(SEED_HIGH, size=N)
    holder = {}

    def fit_generic():
        holder["generic"] = generic.fit(F_tr, Y_tr)

    def fit_vectorised():
        vectorised.fit(F_tr, Y_tr)
        holder["heads"] = vectorised.stacked_models_

    fit_linear_heads(F_tr, Y_tr, np.zeros((20, m), dtype=int), epochs=2)  # warm-up
    t_fit = race({"generic": fit_generic, "vectorised": fit_vectorised}, 1)
    counts = {}
    t_votes = race(
        {
            "generic": lambda: counts.__setitem__("generic", generic._label_counts(F_te)[0]),
            "vectorised": lambda: counts.__setitem__(
                "vectorised", holder["heads"].vote_counts(F_te, k_base)
            ),
        },
        cfg["repeat"],
    )
    top_g = np.argsort(-counts["generic"], axis=1, kind="stable")[:, :3]
    top_v = np.argsort(-counts["vectorised"], axis=1, kind="stable")[:, :3]
    # engine-level: the same single-model engine in a plain loop (no ensemble machinery)
    n_loop = max(10, N // 20)
    rows = [subsample_indices(s, len(F_tr), m) for s in seeds[:n_loop]]
    start = time.perf_counter()
    for r in rows:
        LinearHead(epochs=epochs, lr=0.01).fit(F_tr[r], Y_tr[r])
    loop_per_model = (time.perf_counter() - start) / n_loop
    # the same heads as the package's skorch net, fitted one by one: a linear MLPModule,
    # ASL, full-batch Adam (batch_size = m), the same epochs and learning rate
    n_skorch = max(5, N // 50)
    start = time.perf_counter()
    for r in rows[:n_skorch]:
        MultiLabelNet(
            MLPModule,
            module__hidden=(),
            max_epochs=epochs,
            batch_size=m,
            lr=0.01,
            optimizer__weight_decay=1e-4,
        ).fit(F_tr[r], Y_tr[r])
    skorch_per_model = (time.perf_counter() - start) / n_skorch
    out = {
        "skorch_linear_net_per_model_s": skorch_per_model,
        "fit_speedup_vs_skorch_loop": skorch_per_model * N / t_fit["vectorised"],
        "n_models": N,
        "max_samples": m,
        "n_train": len(F_tr),
        "n_features": F_tr.shape[1],
        "n_classes": n_classes,
        "epochs": epochs,
        "k_base": k_base,
        "generic_fit_s": t_fit["generic"],
        "vectorised_fit_s": t_fit["vectorised"],
        "fit_speedup": t_fit["generic"] / t_fit["vectorised"],
        "generic_models_per_s": N / t_fit["generic"],
        "vectorised_models_per_s": N / t_fit["vectorised"],
        "loop_of_linearhead_fits_per_model_s": loop_per_model,
        "fit_speedup_vs_plain_loop": loop_per_model * N / t_fit["vectorised"],
        "generic_votes_s": t_votes["generic"],
        "vectorised_votes_s": t_votes["vectorised"],
        "votes_speedup": t_votes["generic"] / t_votes["vectorised"],
        "max_abs_vote_difference": int(np.abs(counts["generic"] - counts["vectorised"]).max()),
        "same_top3_fraction": float(np.mean(np.all(top_g == top_v, axis=1))),
        "nets": {
            name: bench_net_fit(name, net, F_tr, F_te, Y_tr, cfg)
            for name, net in net_heads(cfg).items()
        },
        "dpa_nets": bench_dpa_nets(net_heads(cfg)["linear"], F_tr, F_te, Y_tr, cfg),
    }
    log(
        f"d. fit {N} heads: generic {t_fit['generic']:.1f}s, vectorised "
        f"{t_fit['vectorised']:.1f}s -> {out['fit_speedup']:.1f}x; votes "
        f"{out['votes_speedup']:.1f}x; max vote difference {out['max_abs_vote_difference']}"
    )
    return out


# ------------------------------------------------------------------------- e. scaling
def _slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _peak_memory_child(
    state: dict, n_inputs: int, n_draws: int, batch_size: int, threads: int
) -> dict:
    """In a fresh process: peak RSS growth of one sampling run (VmHWM after a reset,
    minus RSS before; ``ru_maxrss`` growth where the reset is not available)."""
    if threads:
        torch.set_num_threads(threads)
    module = MLPModule(state["n_features"], state["n_classes"])
    module.load_state_dict(state["weights"])
    X = state["X"][:n_inputs]
    sample_label_counts(
        module,
        X[:1],
        n_classes=state["n_classes"],
        sigma=SIGMA,
        k_prime=1,
        n_draws=8,
        batch_size=8,
        random_state=0,
    )  # warm-up
    exact = _reset_peak_rss()
    before = _status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sample_label_counts(
        module,
        X,
        n_classes=state["n_classes"],
        sigma=SIGMA,
        k_prime=1,
        n_draws=n_draws,
        batch_size=batch_size,
        random_state=0,
    )
    after = (
        _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    )  # KiB on Linux
    return {
        "peak_growth_mib": (after - before) / 1024.0,
        "method": "VmHWM reset" if exact else "ru_maxrss",
    }


def bench_scaling(cfg: dict, threads: int) -> dict:
    X_tr, X_te, Y_tr, _ = make_multidigit(2000, max(cfg["scale_inputs"]), random_state=0)
    net = train_net(None, X_tr, Y_tr, cfg["train_epochs"])
    module, n_classes = net.module_, Y_tr.shape[1]

    def run(n_inputs, n_draws, batch_size=1000):
        return lambda: sample_label_counts(
            module,
            X_te[:n_inputs],
            n_classes=n_classes,
            sigma=SIGMA,
            k_prime=1,
            n_draws=n_draws,
            batch_size=batch_size,
            random_state=0,
        )

    inputs = cfg["scale_inputs"]
    t_in = race({n: run(n, 1000) for n in inputs}, cfg["repeat"])
    draws = cfg["scale_draws"]
    t_dr = race({d: run(inputs[0], d) for d in draws}, cfg["repeat"])
    out = {
        "inputs": {
            "n_inputs": inputs,
            "n_draws": 1000,
            "seconds": [t_in[n] for n in inputs],
            "loglog_slope": _slope(inputs, [t_in[n] for n in inputs]),
            "time_ratio_last_vs_first": t_in[inputs[-1]] / t_in[inputs[0]],
            "size_ratio": inputs[-1] / inputs[0],
        },
        "draws": {
            "n_draws": draws,
            "n_inputs": inputs[0],
            "seconds": [t_dr[d] for d in draws],
            "loglog_slope": _slope(draws, [t_dr[d] for d in draws]),
            "time_ratio_last_vs_first": t_dr[draws[-1]] / t_dr[draws[0]],
            "size_ratio": draws[-1] / draws[0],
        },
    }
    log(
        f"e. slope vs inputs {out['inputs']['loglog_slope']:.3f}, vs draws "
        f"{out['draws']['loglog_slope']:.3f}"
    )
    state = {
        "weights": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "n_features": X_tr.shape[1],
        "n_classes": n_classes,
        "X": X_te[: max(cfg["mem_inputs"])],
    }
    memory = []
    ctx = get_context("spawn")
    points = [(cfg["mem_inputs"][0], b) for b in cfg["mem_batches"]]
    points += [(n, 1000) for n in cfg["mem_inputs"][1:]]
    for n_inputs, batch in points:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            res = pool.submit(_peak_memory_child, state, n_inputs, 1000, batch, threads).result()
        memory.append(
            {
                "n_inputs": n_inputs,
                "n_draws": 1000,
                "batch_size": batch,
                "noise_block_mib": batch * X_tr.shape[1] * 4 / 2**20,
                **res,
            }
        )
        log(f"e. memory: {n_inputs} inputs, batch {batch}: +{res['peak_growth_mib']:.1f} MiB")
    out["memory"] = memory
    by_batch = [m for m in memory if m["n_inputs"] == cfg["mem_inputs"][0]]
    by_inputs = [m for m in memory if m["batch_size"] == 1000]
    out["memory_ratio_largest_vs_smallest_batch"] = max(by_batch[-1]["peak_growth_mib"], 0.1) / max(
        by_batch[0]["peak_growth_mib"], 0.1
    )
    out["memory_ratio_most_vs_fewest_inputs"] = max(by_inputs[-1]["peak_growth_mib"], 0.1) / max(
        by_inputs[0]["peak_growth_mib"], 0.1
    )
    return out


# -------------------------------------------------------------------------- f. sharding
def bench_sharding(cfg: dict) -> dict:
    n_inputs, n_draws = cfg["shard_inputs"], 1000
    X_tr, X_te, Y_tr, Y_te = make_multidigit(2000, n_inputs, image_shape=True, random_state=0)
    net = train_net(SmallCNN, X_tr, Y_tr, cfg["train_epochs"])
    clfs = {
        n_jobs: SmoothedMultiLabelClassifier(
            net.module_,
            sigma=SIGMA,
            k=3,
            n_draws=n_draws,
            batch_size=1000,
            n_jobs=n_jobs,
            train_noise=False,
            random_state=0,
        ).fit(X_tr, Y_tr)
        for n_jobs in (1, 2)
    }
    counts = {n: clf.certify(X_te, Y_te, 0.5).counts for n, clf in clfs.items()}  # warm-up
    t = race(
        {n: (lambda clf=clf: clf.certify(X_te, Y_te, radius=0.5)) for n, clf in clfs.items()},
        cfg["repeat"],
    )
    out = {
        "n_inputs": n_inputs,
        "n_draws": n_draws,
        "threads_per_worker": 1,
        "cores": os.cpu_count(),
        "n_jobs_1_s": t[1],
        "n_jobs_2_s": t[2],
        "speedup": t[1] / t[2],
        "identical_counts": bool(np.array_equal(*counts.values())),
    }
    log(
        f"f. certify n_jobs=1 {t[1]:.2f}s, n_jobs=2 {t[2]:.2f}s -> {out['speedup']:.2f}x "
        f"(identical counts: {out['identical_counts']})"
    )
    return out


# ------------------------------------------------- g. reduced precision, compilation
class Autocast(torch.nn.Module):
    """A module run under ``torch.autocast`` (the plain-torch bfloat16 floor)."""

    def __init__(self, module: torch.nn.Module, dtype=torch.bfloat16):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.module(x)


class CastInput(torch.nn.Module):
    """A cast copy of a module, its float32 input cast at entry (the other floor)."""

    def __init__(self, module: torch.nn.Module, dtype=torch.bfloat16):
        super().__init__()
        import copy

        self.module, self.dtype = copy.deepcopy(module).to(dtype), dtype

    def forward(self, x):
        return self.module(x.to(self.dtype))


SPEED_SETTINGS = {  # name: (sampling_dtype, compile)
    "float32": (None, False),
    "bfloat16": ("bfloat16", False),
    "compiled": (None, True),
    "compiled + bfloat16": ("bfloat16", True),
}
SPEED_RADII = [0.0, 0.25, 0.5]


def cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        return "unknown"


def speed_models(cfg: dict, device: str = "cpu") -> dict:
    """The quickstart CNN (``MultiLabelNet`` default SmallCNN on 16x16 digit images) and
    an MLP with two 512-wide hidden layers on the same images, flattened."""
    X_tr, X_te, Y_tr, Y_te = make_multidigit(
        cfg["speed_train"], cfg["speed_inputs"], image_shape=True, random_state=0
    )
    out = {}
    for name, module, params in (
        ("cnn", SmallCNN, {}),
        ("mlp", MLPModule, {"module__hidden": (512, 512)}),
    ):
        torch.manual_seed(0)
        net = MultiLabelNet(
            module,
            max_epochs=cfg["train_epochs"],
            batch_size=128,
            lr=2e-3,
            noise_sigma=0.5,
            device=device,
            **params,
        ).fit(X_tr, Y_tr)
        out[name] = (net, X_tr, X_te, Y_tr, Y_te)
    return out


def noise_alone(X: torch.Tensor, n_draws: int, batch: int, sigma: float) -> None:
    """The engine's noisy inputs of X, nothing else: per-input streams, scaled, added."""
    from sklearn_certify.smoothing._sampling import _noisy_inputs, chunk_inputs
    from sklearn_certify.smoothing._streams import input_keys

    chunk = chunk_inputs(batch, n_draws)
    for first in range(0, len(X), chunk):
        x = X[first : first + chunk]
        for _ in _noisy_inputs(x, input_keys(x), 1234, 0, sigma, n_draws, batch, torch.float32):
            pass


def bench_speed(cfg: dict) -> dict:
    out = {
        "cpu_capability": cpu_capability(),
        "n_draws": 1000,
        "batch_size": 1000,
        "sigma": 0.5,
        "radii": SPEED_RADII,
        "models": {},
    }
    out["float32_path"] = bench_float32_path(cfg)
    for name, data in speed_models(cfg).items():
        out["models"][name] = bench_speed_model(
            name, *data, cfg=cfg, n_draws=1000, batch=1000, sigma=0.5
        )
    return out


def bench_float32_path(cfg: dict, repeat: int = 5) -> dict:
    """certify against the plain-torch floor on a 64-feature MLP with one 512-wide hidden
    layer, 50 inputs, n = 1000, best of ``repeat``, the in-process cache off: the
    per-call and per-input costs of the engine (streams, hashing, certificate) against a
    forward pass that takes about a millisecond per input. Wall time, and CPU time of
    the process (all its threads: the noise thread's work counts)."""
    from sklearn_certify.smoothing import _sampling

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 64)).astype(np.float32)
    Y = (rng.random((50, 10)) < 0.3).astype(int)
    torch.manual_seed(0)
    module = MLPModule(64, 10, hidden=(512,)).eval()
    clf = SmoothedMultiLabelClassifier(
        module, sigma=0.25, n_draws=1000, batch_size=1000, train_noise=False, random_state=0
    ).fit(X, Y)
    X_t = torch.as_tensor(X)
    spare = _sampling._spare_cores

    def serial():
        _sampling._spare_cores = lambda: False
        try:
            clf.certify(X, Y, radius=0.5)
        finally:
            _sampling._spare_cores = spare

    fns = {
        "certify": lambda: clf.certify(X, Y, radius=0.5),
        "certify serial": serial,
        "floor": lambda: floor_counts(
            module, X_t, n_classes=10, sigma=0.25, k_prime=1, n_draws=1000, batch_size=1000, seed=0
        ),
    }
    wall = {k: float("inf") for k in fns}
    cpu = dict(wall)
    for _ in range(repeat):
        for k, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            cpu[k] = min(cpu[k], time.process_time() - c)
            wall[k] = min(wall[k], time.perf_counter() - w)
    out = {
        "wall_s": wall,
        "cpu_s": cpu,
        "ratio_wall": wall["certify"] / wall["floor"],
        "ratio_wall_serial": wall["certify serial"] / wall["floor"],
        "ratio_cpu_serial": cpu["certify serial"] / cpu["floor"],
    }
    log(
        f"g. float32 path, 64-512 MLP, 50 inputs: certify {out['ratio_wall']:.3f}x the floor "
        f"(noise on the same thread {out['ratio_wall_serial']:.3f}x; CPU time "
        f"{out['ratio_cpu_serial']:.3f}x)"
    )
    return out


def bench_speed_model(name, net, X_tr, X_te, Y_tr, Y_te, *, cfg, n_draws, batch, sigma) -> dict:
    """Section g for one trained net, on the net's device (``bench/gpu_check.py`` runs
    it on a GPU)."""
    from sklearn_certify.smoothing import _sampling

    module = net.module_.eval()
    device = torch.device(net.device)
    X_t = torch.as_tensor(X_te, device=device).reshape(len(X_te), *net.input_shape_)
    n_classes = Y_tr.shape[1]
    floors = {
        "float32": module,
        "bfloat16 autocast": Autocast(module),
        "bfloat16 copy": CastInput(module),
    }
    start = time.perf_counter()
    floors["compiled"] = torch.compile(module)
    floors["compiled + bfloat16"] = torch.compile(Autocast(module))
    clfs = {
        setting: SmoothedMultiLabelClassifier(
            module,
            sigma=sigma,
            k_prime=1,
            k=3,
            n_draws=n_draws,
            batch_size=batch,
            sampling_dtype=dtype,
            compile=compiled,
            train_noise=False,
            random_state=0,
        ).fit(X_tr, Y_tr)
        for setting, (dtype, compiled) in SPEED_SETTINGS.items()
    }
    for f in floors.values():  # warm-up: compilation, autocast caches
        with torch.inference_mode():
            f(X_t[:2].repeat_interleave(batch // 2, 0))
    for clf in clfs.values():
        clf.predict_proba(X_te[:1])
    warm_s = time.perf_counter() - start
    results = {}

    def floor(f):
        return lambda: floor_counts(
            f,
            X_t,
            n_classes=n_classes,
            sigma=sigma,
            k_prime=1,
            n_draws=n_draws,
            batch_size=batch,
            seed=0,
        ).cpu()

    def certify(setting):
        return lambda: results.__setitem__(
            setting, clfs[setting].certify(X_te, Y_te, radius=SPEED_RADII)
        )

    fns = {
        **{f"floor {k}": floor(f) for k, f in floors.items()},
        **{f"certify {k}": certify(k) for k in clfs},
    }
    t = race(fns, cfg["speed_repeat"])
    fastest = min(clfs, key=lambda k: t[f"certify {k}"])
    # the noise: drawn alone, and certify at the fastest setting with the noise drawn on
    # the calling thread (no overlap)
    spare = _sampling._spare_cores
    _sampling._spare_cores = lambda: False
    try:
        t.update(
            race(
                {
                    "noise alone": lambda: noise_alone(X_t, n_draws, batch, sigma),
                    "certify serial": certify(fastest),
                },
                cfg["speed_repeat"],
            )
        )
    finally:
        _sampling._spare_cores = spare
    best_floor = min((k for k in t if k.startswith("floor")), key=t.get)
    f1 = {k: r.f1().round(4).tolist() for k, r in results.items()}
    row = {
        "n_inputs": len(X_te),
        "warm_up_s": warm_s,
        "times_s": t,
        "fastest_setting": fastest,
        "best_floor": best_floor,
        "speedup_vs_float32_floor": t["floor float32"] / t[f"certify {fastest}"],
        "ratio_vs_best_floor": t[f"certify {fastest}"] / t[best_floor],
        "ratio_float32_certify_vs_floor": t["certify float32"] / t["floor float32"],
        "noise_s": t["noise alone"],
        "noise_share": {k: t["noise alone"] / t[f"certify {k}"] for k in clfs},
        "certify_serial_noise_s": t["certify serial"],
        "certified_f1": f1,
        "max_f1_gap_vs_float32": {
            k: float(np.max(np.abs(np.subtract(v, f1["float32"])))) for k, v in f1.items()
        },
    }
    log(
        f"g. {name}: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in t.items())
        + f"; fastest {fastest}: {row['speedup_vs_float32_floor']:.2f}x the float32 "
        f"floor, {row['ratio_vs_best_floor']:.2f}x the best floor ({best_floor}); f1 {f1}"
    )
    return row


def speed_markdown(results: dict) -> str:
    g = results["sections"]["speed"]
    hw = results["hardware"]
    lines = [
        "## g. Reduced precision and compiled sampling",
        "",
        f"{hw['cpu']}, {hw['cores']} cores, torch {hw['torch']} with "
        f"{hw['torch_threads']} thread(s), CPU capability **{g['cpu_capability']}**"
        + (f"; GPU {hw['gpu']}" if hw["gpu"] else "; no GPU")
        + f"; load average at start "
        f"{hw['load_average_at_start'][0]:.1f}. n = {g['n_draws']}, batch "
        f"{g['batch_size']}, sigma = {g['sigma']}, best of {results['config']['speed_repeat']}"
        " (all timings of a model in one race).",
        "",
        "| model | setting | plain-torch floor | certify | speed: float32 floor / certify "
        "| noise share | certified f1 at R = " + ", ".join(f"{r:g}" for r in g["radii"]) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    floors_of = {
        "float32": ["float32"],
        "bfloat16": ["bfloat16 autocast", "bfloat16 copy"],
        "compiled": ["compiled"],
        "compiled + bfloat16": ["compiled + bfloat16"],
    }
    for name, m in g["models"].items():
        t = m["times_s"]
        for setting in SPEED_SETTINGS:
            floor = "; ".join(f"{k} {t['floor ' + k]:.2f} s" for k in floors_of[setting])
            c = t[f"certify {setting}"]
            lines.append(
                f"| {name.upper()} ({m['n_inputs']} inputs) | {setting} | {floor} | {c:.2f} s "
                f"| {t['floor float32'] / c:.2f}x | {m['noise_share'][setting]:.0%} "
                f"| {', '.join(f'{v:.3f}' for v in m['certified_f1'][setting])} |"
            )
    f = g.get("float32_path")
    if f:
        lines += [
            "",
            "float32 path, 64-feature MLP with one 512-wide hidden layer, 50 inputs, "
            "n = 1000, best of 5: certify "
            f"**{f['ratio_wall']:.3f}x** the plain-torch floor (wall; "
            f"{f['wall_s']['certify']:.3f} s against {f['wall_s']['floor']:.3f} s), "
            f"{f['ratio_wall_serial']:.3f}x with the noise drawn on the calling "
            f"thread, {f['ratio_cpu_serial']:.3f}x in CPU time (goal <= 1.10).",
        ]
    lines += [
        "",
        "| model | fastest setting | vs float32 eager floor | vs best plain-torch "
        "variant | float32 certify / floor | noise alone | certify, noise on the "
        "same thread | max f1 gap vs float32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in g["models"].items():
        t = m["times_s"]
        gap = max(m["max_f1_gap_vs_float32"].values())
        lines.append(
            f"| {name.upper()} | {m['fastest_setting']} | **{m['speedup_vs_float32_floor']:.2f}x** "
            f"(floor / certify; goal >= {3.0 if name == 'cnn' else 2.5}x) | "
            f"**{m['ratio_vs_best_floor']:.2f}x** {m['best_floor']} (goal <= 1.15) | "
            f"{m['ratio_float32_certify_vs_floor']:.2f}x | {m['noise_s']:.2f} s | "
            f"{m['certify_serial_noise_s']:.2f} s | {gap:.4f} (goal <= 0.005) |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report
def markdown(results: dict) -> str:
    hw = results["hardware"]
    s = results["sections"]
    lines = [
        "# sklearn-certify benchmarks",
        "",
        f"Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB; torch "
        f"{hw['torch']} with {hw['torch_threads']} thread(s)"
        + (f"; GPU {hw['gpu']}" if hw["gpu"] else "; no GPU")
        + f"; Python {hw['python']}.",
        f"Run: `python bench/run_all.py{' --quick' if results['quick'] else ''}` "
        f"({results['total_s'] / 60:.1f} min, load average at start "
        f"{hw['load_average_at_start'][0]:.1f}).",
        "",
        "| Benchmark | Ours | Baseline | Ratio | Goal |",
        "|---|---|---|---|---|",
    ]
    for name in ("mlp", "cnn"):
        e = s["engine"][name]
        lines.append(
            f"| a. certify {e['n_inputs']} inputs x {e['n_draws']} draws, {name.upper()} "
            f"| {e['certify_s']:.2f} s (engine alone {e['engine_s']:.2f} s) "
            f"| plain-torch floor {e['floor_s']:.2f} s "
            f"| **{e['ratio_certify_vs_floor']:.3f}x** the floor "
            f"(engine {e['ratio_engine_vs_floor']:.3f}x) | <= 1.15 |"
        )
    art = s["art"]
    if "skipped" in art:
        lines.append(f"| b. vs ART | - | - | skipped: {art['skipped']} | >= 4x |")
    else:
        lines.append(
            f"| b. certify {art['n_inputs']} digits, n = {art['n']}, k = k' = 1 "
            f"| {art['ours_s']:.2f} s | ART {art['art_version']} {art['art_s']:.2f} s "
            f"(+ n0 = {art['art_n0']} selection draws) "
            f"| **{art['speedup']:.1f}x faster** ({art['speedup_per_draw']:.1f}x per draw) "
            f"| >= 4x |"
        )
    c = s["certificates"]
    lines.append(
        f"| c. certificate math, 500 inputs x 301 radii, c = 80 | MultiGuard "
        f"{c['gaussian_multiguard_s'] * 1e3:.0f} ms, bagging "
        f"{c['bagging_poisoningguard_s'] * 1e3:.0f} ms, DPA "
        f"{c['dpa_poisoningguard_s'] * 1e3:.0f} ms | - | "
        f"{c['gaussian_multiguard_s'] / c['cells'] * 1e6:.2f} us per (input, radius) | - |"
    )
    d = s["ensembles"]
    lines.append(
        f"| d. fit {d['n_models']} bagging heads, `LinearHead` (m = {d['max_samples']}, "
        f"{d['n_train']} x {d['n_features']}, {d['epochs']} epochs) "
        f"| vectorised {d['vectorised_fit_s']:.1f} s "
        f"({d['vectorised_models_per_s']:.0f} models/s) "
        f"| generic joblib path {d['generic_fit_s']:.1f} s "
        f"({d['generic_models_per_s']:.0f} models/s) "
        f"| **{d['fit_speedup']:.1f}x** (vs a plain loop of the same LinearHead fits "
        f"{d['fit_speedup_vs_plain_loop']:.1f}x; vs the same heads as full-batch skorch "
        f"MultiLabelNet fits {d['fit_speedup_vs_skorch_loop']:.0f}x) | - |"
    )
    for net in d.get("nets", {}).values():
        lines.append(
            f"| d. fit {net['n_models']} bagging heads, `MultiLabelNet` "
            f"{'linear' if not net['hidden'] else 'MLP ' + 'x'.join(map(str, net['hidden']))}"
            f" (m = {net['max_samples']}, {d['n_train']} x {d['n_features']}, "
            f"{net['epochs']} epochs, batches of {net['batch_size']}) "
            f"| vectorised {net['vectorised_fit_s']:.1f} s "
            f"({net['vectorised_models_per_s']:.0f} models/s) "
            f"| one by one (generic path) {net['generic_per_model_s'] * 1e3:.0f} ms per model "
            f"({net['generic_fit_s_scaled']:.0f} s for {net['n_models']}) "
            f"| **{net['fit_speedup']:.0f}x** (votes of {net['n_generic_timed']}-model "
            f"ensembles: max difference {net['max_abs_vote_difference']}, same top-3 "
            f"{net['same_top3_fraction']:.1%}) | >= 20x |"
        )
    if "dpa_nets" in d:
        dpa = d["dpa_nets"]
        lines.append(
            f"| d. fit DPA, {dpa['n_partitions']} partitions of {dpa['n_train']}, "
            f"`MultiLabelNet` linear heads (one net at a time in both) "
            f"| without skorch {dpa['lean_fit_s']:.1f} s "
            f"| skorch fits {dpa['generic_fit_s']:.1f} s "
            f"| **{dpa['fit_speedup']:.1f}x** (max vote difference "
            f"{dpa['max_abs_vote_difference']}) | - |"
        )
    lines.append(
        f"| d. vote counts, {d['n_models']} heads | {d['vectorised_votes_s'] * 1e3:.0f} ms "
        f"| generic {d['generic_votes_s'] * 1e3:.0f} ms | **{d['votes_speedup']:.0f}x** "
        f"(max vote difference {d['max_abs_vote_difference']}, same top-3 "
        f"{d['same_top3_fraction']:.1%}) | - |"
    )
    e = s["scaling"]
    lines.append(
        f"| e. certify time vs inputs ({e['inputs']['n_inputs'][0]}..."
        f"{e['inputs']['n_inputs'][-1]}) | slope {e['inputs']['loglog_slope']:.3f} | linear "
        f"= 1 | x{e['inputs']['time_ratio_last_vs_first']:.2f} time for "
        f"x{e['inputs']['size_ratio']:.0f} inputs | linear |"
    )
    lines.append(
        f"| e. certify time vs n_draws ({e['draws']['n_draws'][0]}..."
        f"{e['draws']['n_draws'][-1]}) | slope {e['draws']['loglog_slope']:.3f} | linear = 1 "
        f"| x{e['draws']['time_ratio_last_vs_first']:.2f} time for "
        f"x{e['draws']['size_ratio']:.0f} draws | linear |"
    )
    mem = e["memory"]
    by_batch = ", ".join(
        f"{m['batch_size']}: +{m['peak_growth_mib']:.0f}"
        for m in mem
        if m["n_inputs"] == mem[0]["n_inputs"]
    )
    by_inputs = ", ".join(
        f"{m['n_inputs']}: +{m['peak_growth_mib']:.0f}" for m in mem if m["batch_size"] == 1000
    )
    lines.append(
        f"| e. peak memory (MiB) by batch_size | {by_batch} | by n_inputs at batch 1000: "
        f"{by_inputs} | x{e['memory_ratio_most_vs_fewest_inputs']:.2f} for "
        f"x{mem[-1]['n_inputs'] / mem[0]['n_inputs']:.0f} inputs | bounded by batch_size |"
    )
    if "sharding" in s:
        f = s["sharding"]
        lines.append(
            f"| f. certify {f['n_inputs']} inputs x {f['n_draws']} draws, CNN, `n_jobs=2` "
            f"(loky, 1 torch thread per worker) | {f['n_jobs_2_s']:.2f} s | `n_jobs=1` "
            f"(1 thread) {f['n_jobs_1_s']:.2f} s | **{f['speedup']:.2f}x** throughput "
            f"(identical counts: {'yes' if f['identical_counts'] else 'NO'}) | >= 1.6x |"
        )
    if not art.get("skipped"):
        lines += [
            "",
            "Certified accuracy on digits (sigma = "
            f"{art['sigma']}, n = {art['n']}, alpha = 0.001), ours vs ART:",
            "",
            "| radius | " + " | ".join(f"{r:g}" for r in art["radii"]) + " |",
            "|---" * (len(art["radii"]) + 1) + "|",
            "| ours | " + " | ".join(f"{a:.3f}" for a in art["certified_accuracy_ours"]) + " |",
            "| ART | " + " | ".join(f"{a:.3f}" for a in art["certified_accuracy_art"]) + " |",
        ]
    lines += [
        "",
        "Notes. (a) The floor is `floor_counts` in `bench/run_all.py`: per input, fresh "
        "noise scaled and shifted in place, one forward pass, argmax/top-k', bincount; "
        "the engine times include validation and device transfers, `certify` also the "
        "Clopper-Pearson bounds and the certificate. With a core to spare, `certify` "
        "draws the noise on a second thread (`docs/performance.md`), so with one torch "
        "thread its wall time can fall below the one-thread floor; the same thread "
        "serves `n_jobs=1` in (f), where two workers then add less than a second core. "
        "(b) ART draws n0 = 100 selection samples then n = 1000, in numpy, one input at a "
        "time; ours draws n = 1000 on the model's device; same model, batch size and "
        "alpha. (d) Generic path: `BaggingCertifiedClassifier` fitting its base models "
        "one by one through joblib (`n_jobs=1`); vectorised: the same models (same "
        "subsamples, seeds, initial weights, mini-batches and optimiser steps) as one "
        "batched torch program, which the ensemble uses automatically for these bases. "
        "`MultiLabelNet` heads: the one-by-one time per model is measured on the first "
        "models of the same ensemble and scaled to N; the one-by-one cost is mostly "
        "skorch's per-batch overhead, which the batched program pays once for all "
        "models. `LinearHead` already trains one head without that overhead (full-batch, "
        "hand-written gradient), so batching it only removes torch's per-operation "
        "overhead on a CPU core (about 2x); on a GPU it also runs the models in parallel. "
        "(e) Peak memory: growth of the peak RSS of a fresh process during sampling "
        "(100 inputs x 1000 draws unless stated).",
    ]
    return "\n".join(lines) + "\n"


CONFIGS = {
    "full": dict(
        repeat=3,
        train_epochs=5,
        engine_inputs=200,
        art_inputs=200,
        n_models=1000,
        head_epochs=100,
        net_epochs=20,
        n_generic_nets=50,
        n_partitions=300,
        scale_inputs=[25, 50, 100, 200],
        scale_draws=[250, 500, 1000, 2000],
        mem_batches=[250, 1000, 4000, 16000],
        mem_inputs=[100, 400],
        shard_inputs=200,
        speed_inputs=200,
        speed_train=2000,
        speed_repeat=2,
    ),
    "quick": dict(
        repeat=2,
        train_epochs=2,
        engine_inputs=50,
        art_inputs=50,
        n_models=200,
        head_epochs=50,
        net_epochs=10,
        n_generic_nets=10,
        n_partitions=50,
        scale_inputs=[10, 20, 40],
        scale_draws=[250, 500, 1000],
        mem_batches=[250, 1000, 4000],
        mem_inputs=[50, 200],
        shard_inputs=40,
        speed_inputs=20,
        speed_train=500,
        speed_repeat=1,
    ),
}


def disable_recent_counts() -> None:
    """Sample on every call: with the in-process counts cache on, a repeated certify of
    the same model and inputs would read it, timing nothing and comparing a result with
    itself. The cache is off by default; this makes sure through the public switch."""
    import sklearn_certify

    sklearn_certify.set_config(counts_cache=False)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1; 0 keeps torch's default)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per timing")
    parser.add_argument(
        "--only",
        default="abcdef",
        help="sections to run, e.g. 'ad' (default: a-f; g only when named)",
    )
    parser.add_argument(
        "--speed-inputs",
        type=int,
        default=None,
        help="inputs of section g (default 200; 20 with --quick)",
    )
    parser.add_argument("--out", default=str(HERE), help="directory for results.*")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite results.md from an existing results.json",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        if args.only == "g":
            results = json.loads((Path(args.out) / "results_speed.json").read_text())
            (Path(args.out) / "results_speed.md").write_text(speed_markdown(results))
            return results
        results = json.loads((Path(args.out) / "results.json").read_text())
        (Path(args.out) / "results.md").write_text(markdown(results))
        return results
    if args.threads:
        torch.set_num_threads(args.threads)
    disable_recent_counts()
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    if args.repeat:
        cfg["repeat"] = args.repeat
        cfg["speed_repeat"] = args.repeat
    if args.speed_inputs:
        cfg["speed_inputs"] = args.speed_inputs
    start = time.perf_counter()
    results = {
        "quick": args.quick,
        "config": cfg,
        "hardware": hardware(args.threads),
        "sections": {},
    }
    log(
        f"hardware: {results['hardware']['cpu']}, {results['hardware']['cores']} cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    steps = {
        "a": ("engine", lambda: bench_engine(cfg)),
        "b": ("art", lambda: bench_art(cfg)),
        "c": ("certificates", lambda: bench_certificate_grid(cfg)),
        "d": ("ensembles", lambda: bench_ensembles(cfg)),
        "e": ("scaling", lambda: bench_scaling(cfg, args.threads)),
        "f": ("sharding", lambda: bench_sharding(cfg)),
        "g": ("speed", lambda: bench_speed(cfg)),
    }
    for key, (name, fn) in steps.items():
        if key in args.only:
            section_start = time.perf_counter()
            results["sections"][name] = fn()
            results["sections"][name]["section_s"] = time.perf_counter() - section_start
    results["total_s"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only == "g":  # the speed rows alone: their own files, the others kept
        (out / "results_speed.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
        (out / "results_speed.md").write_text(speed_markdown(results))
        log(f"wrote {out / 'results_speed.md'} in {results['total_s'] / 60:.1f} min")
        return results
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    if set("abcde") <= set(args.only):
        text = markdown(results)
        if "speed" in results["sections"]:
            text += "\n" + speed_markdown(results)
        (out / "results.md").write_text(text)
        log(f"wrote {out / 'results.md'}")
    log(f"wrote {out / 'results.json'} in {results['total_s'] / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
