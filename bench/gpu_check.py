"""What only a GPU can show: one script, one table, a few minutes on a CUDA machine.

    python bench/gpu_check.py                     # on a machine with a CUDA device
    python bench/gpu_check.py --device cpu        # dry run of the logic, tiny sizes
    python bench/gpu_check.py --out gpu_check.md  # also write the table to a file

Checks, each a row of the markdown table printed at the end:

1. **CUDA-only tests**: the tests in ``tests/`` skipped without CUDA (found by their
   ``skipif(not torch.cuda.is_available())`` marker), run with pytest.
2. **Sampling engine against its floor**: ``SmoothedMultiLabelClassifier.certify`` for a
   skorch MLP and the small CNN against the bare torch loop of ``bench/run_all.py``
   (noise + forward + top-k' + counts), on the device, at a reduced size.
3. **Counts on an explicit device list**: ``devices=["cuda:0"]`` against the default,
   identical counts (only when the classifier has a ``devices`` parameter).
4. **GPU-trained models on a CPU-only machine**: a ``LinearHead``, a bagging ensemble of
   ``LinearHead`` s and a DPA ensemble of ``MultiLabelNet`` heads, fitted on the
   device, saved with joblib and loaded in a subprocess with ``CUDA_VISIBLE_DEVICES=""``;
   their predictions must match.
5. **DPA determinism across loky workers**: with deterministic algorithms and cuDNN
   (``benchmark=False``), a DPA ensemble of CNNs fitted with ``n_jobs=2`` twice and
   with ``n_jobs=1``: bitwise identical weights and votes.
6. **Large-head block sizing**: 1024-wide hidden heads on 2048 features (the blocks that
   ran out of memory before they were sized by memory) trained to completion, and a
   forced out-of-memory error (per-process memory fraction) that the trainer survives
   by halving its blocks.
7. **Reduced precision and compiled sampling** (section g of ``bench/run_all.py`` on the
   device): the quickstart CNN and a 512-wide MLP, plain-torch floors in float32 eager,
   bfloat16 (autocast and a cast copy), compiled, and compiled + bfloat16; ``certify`` at
   each ``sampling_dtype`` / ``compile`` setting; the noise's share; the certified f1 at
   R in {0, 0.25, 0.5}. Goals: the fastest setting >= 3.0x (CNN) / 2.5x (MLP) faster
   than the float32 floor, <= 1.15x the best floor, f1 within 0.005 of float32.
8. **Kernel launches per input**: ``torch.profiler`` counts the CUDA kernels and copies
   of ``certify`` (a linear model, n = 1000 in one batch, k' = 1) on 9 inputs and on 1;
   the difference over 8 is the launches per input, less the model's own (counted on its
   forward pass alone). ``docs/performance.md`` reads 16 from the code; goal <= 20. The
   CPU dry run counts aten operators instead.

Without a CUDA device (and without ``--device cpu``) it prints why and exits with
status 0, having checked nothing. ``CUBLAS_WORKSPACE_CONFIG`` is set to ``:4096:8``
before torch starts CUDA (older torch releases need it for deterministic cuBLAS).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # run_all's floor
sys.path.insert(0, str(ROOT))  # the package, when run from a checkout

SIGMA = 0.25

# Sizes: the GPU run, and the CPU dry run (logic only, seconds).
SIZES = {
    "cuda": dict(
        engine_inputs=100,
        n_draws=1000,
        train_epochs=3,
        repeat=3,
        save_models=50,
        speed_inputs=200,
        speed_train=2000,
        dpa_partitions=8,
        big_models=400,
        big_d=2048,
        big_hidden=1024,
        big_rows=50,
        net_models=512,
        net_features=2048,
        memory_fraction_gib=4,
    ),
    "cpu": dict(
        engine_inputs=4,
        n_draws=64,
        train_epochs=1,
        repeat=1,
        save_models=4,
        speed_inputs=3,
        speed_train=100,
        dpa_partitions=3,
        big_models=6,
        big_d=64,
        big_hidden=32,
        big_rows=10,
        net_models=6,
        net_features=64,
        memory_fraction_gib=None,
    ),
}


# ----------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, repeat: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def digits(n_train: int, n_test: int, image: bool = False):
    from sklearn_certify.datasets import make_multidigit

    return make_multidigit(n_train, n_test, image_shape=image, random_state=0)


def net(module, device, **params):
    from sklearn_certify.nets import MultiLabelNet

    return MultiLabelNet(
        module, device=str(device), **{"max_epochs": 2, "batch_size": 64, "lr": 2e-3, **params}
    )


# ---------------------------------------------------------------- 1. CUDA-only tests
_CUDA_SKIP = re.compile(
    r"@pytest\.mark\.skipif\(\s*not\s+torch\.cuda\.is_available\(\)[^\n]*\n"
    r"(?:\s*@[^\n]*\n)*\s*def\s+(test_\w+)"
)


def cuda_test_ids(tests_dir: Path = ROOT / "tests") -> list[str]:
    """Node ids of the tests skipped without CUDA."""
    ids = []
    for path in sorted(tests_dir.glob("test_*.py")):
        for name in _CUDA_SKIP.findall(path.read_text()):
            ids.append(f"{path.relative_to(ROOT)}::{name}")
    return ids


def check_cuda_tests(cfg, device) -> dict:
    ids = cuda_test_ids()
    if not ids:
        return dict(ok=False, result="no CUDA-only tests found", detail="")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", *ids],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    skipped_only = proc.returncode == 0 and "passed" not in summary
    return dict(
        ok=proc.returncode == 0 and (device.type != "cuda" or not skipped_only),
        result=summary.strip("= "),
        detail=", ".join(i.split("::")[1] for i in ids),
    )


# ---------------------------------------------------------- 2. engine against floor
def check_engine(cfg, device) -> dict:
    from run_all import floor_counts

    from sklearn_certify import SmoothedMultiLabelClassifier
    from sklearn_certify.nets import SmallCNN

    ratios, details = {}, []
    for name, image in (("mlp", False), ("cnn", True)):
        X_tr, X_te, Y_tr, Y_te = digits(
            2000 if device.type == "cuda" else 200, cfg["engine_inputs"], image
        )
        torch.manual_seed(0)
        model = net(
            SmallCNN if image else None, device, max_epochs=cfg["train_epochs"], noise_sigma=SIGMA
        ).fit(X_tr, Y_tr)
        clf = SmoothedMultiLabelClassifier(
            model.module_,
            sigma=SIGMA,
            k=3,
            n_draws=cfg["n_draws"],
            batch_size=1000,
            train_noise=False,
            random_state=0,
        ).fit(X_tr, Y_tr)
        X_dev = torch.as_tensor(X_te, device=device)
        n_classes = Y_tr.shape[1]

        def certify(clf=clf, X_te=X_te, Y_te=Y_te):
            clf.certify(X_te, Y_te, radius=0.5)

        def floor(model=model, X_dev=X_dev, n_classes=n_classes):
            floor_counts(
                model.module_,
                X_dev,
                n_classes=n_classes,
                sigma=SIGMA,
                k_prime=1,
                n_draws=cfg["n_draws"],
                batch_size=1000,
                seed=0,
            )

        floor()  # warm-up (CUDA context, kernels)
        certify()
        t_certify = best_time(certify, cfg["repeat"], device)
        t_floor = best_time(floor, cfg["repeat"], device)
        ratios[name] = t_certify / t_floor
        draws = cfg["engine_inputs"] * cfg["n_draws"]
        details.append(
            f"{name}: {t_certify:.3f}s vs floor {t_floor:.3f}s, {draws / t_certify:,.0f} draws/s"
        )
    # a dry run's tiny sizes time fixed overheads: its ratios check the code, not a goal
    return dict(
        ok=all(r <= 1.15 for r in ratios.values()) if device.type == "cuda" else None,
        result=" / ".join(f"{k} {v:.2f}x the floor" for k, v in ratios.items()),
        detail="; ".join(details) + f" ({cfg['engine_inputs']} inputs, "
        f"n={cfg['n_draws']}, goal <= 1.15x)",
    )


# ------------------------------------------------------- 3. counts on a device list
def check_devices(cfg, device) -> dict:
    from sklearn_certify import SmoothedMultiLabelClassifier

    if "devices" not in SmoothedMultiLabelClassifier().get_params():
        return dict(ok=None, result="skipped: no `devices` parameter in this version", detail="")
    X_tr, X_te, Y_tr, Y_te = digits(200, cfg["engine_inputs"])
    torch.manual_seed(0)
    model = net(None, device, max_epochs=1).fit(X_tr, Y_tr)
    kwargs = dict(sigma=SIGMA, k=3, n_draws=cfg["n_draws"], train_noise=False, random_state=0)
    default = SmoothedMultiLabelClassifier(model.module_, **kwargs).fit(X_tr, Y_tr)
    listed = SmoothedMultiLabelClassifier(model.module_, devices=[str(device)], **kwargs).fit(
        X_tr, Y_tr
    )
    a = default.certify(X_te, Y_te, radius=0.5).counts
    b = listed.certify(X_te, Y_te, radius=0.5).counts
    same = a is not None and b is not None and np.array_equal(a, b)
    return dict(
        ok=same,
        result="identical counts" if same else "counts differ",
        detail=f"devices=[{str(device)!r}] vs default, {len(X_te)} inputs, n={cfg['n_draws']}",
    )


# ------------------------------------------- 4. saved on the device, loaded on a CPU
_LOAD_ON_CPU = """
import sys, warnings, joblib, numpy as np, torch
assert not torch.cuda.is_available(), "CUDA_VISIBLE_DEVICES did not hide the GPU"
folder = sys.argv[1]
X = np.load(folder + "/X.npy")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    models = {name: joblib.load(f"{folder}/{name}.joblib")
              for name in ("linear_head", "bagging", "dpa_nets")}
out = {"linear_head": models["linear_head"].decision_function(X)}
for name in ("bagging", "dpa_nets"):
    out[name] = models[name].predict_proba(X)
    assert models[name].stacked_models_.device_.type == "cpu", name
np.savez(folder + "/loaded.npz", **out)
print(sum("DeviceWarning" in type(w.message).__name__ for w in caught))
"""


def check_saved_on_device(cfg, device) -> dict:
    import joblib

    from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
    from sklearn_certify.heads import LinearHead
    from sklearn_certify.nets import MLPModule

    X_tr, X_te, Y_tr, _ = digits(600, 50)
    models = {
        "linear_head": LinearHead(16, epochs=20, device=str(device), random_state=0),
        "bagging": BaggingCertifiedClassifier(
            LinearHead(epochs=20, device=str(device)),
            n_estimators=cfg["save_models"],
            max_samples=100,
            random_state=0,
        ),
        "dpa_nets": DPACertifiedClassifier(
            net(MLPModule, device, module__hidden=(), batch_size=16), n_partitions=10
        ),
    }
    expected = {}
    with tempfile.TemporaryDirectory() as folder:
        np.save(f"{folder}/X.npy", X_te)
        for name, model in models.items():
            model.fit(X_tr, Y_tr)
            expected[name] = (
                model.decision_function(X_te)
                if name == "linear_head"
                else model.predict_proba(X_te)
            )
            joblib.dump(model, f"{folder}/{name}.joblib")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_ON_CPU, folder],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode:
            return dict(
                ok=False, result="loading failed", detail=proc.stderr.strip().splitlines()[-1][:200]
            )
        loaded = dict(np.load(f"{folder}/loaded.npz"))
    head_diff = float(np.abs(loaded["linear_head"] - expected["linear_head"]).max())
    same_votes = all(np.array_equal(loaded[n], expected[n]) for n in ("bagging", "dpa_nets"))
    warned = int(proc.stdout.strip().splitlines()[-1])
    return dict(
        ok=same_votes and head_diff < 1e-4 and (device.type == "cpu" or warned > 0),
        result=("loads with CUDA hidden; " + ("identical votes" if same_votes else "votes differ")),
        detail=f"LinearHead logits max abs diff {head_diff:.1e}; {warned} "
        "DeviceWarning(s); LinearHead, bagging of LinearHead, DPA of "
        "MultiLabelNet heads",
    )


# ------------------------------------------------- 5. DPA determinism, loky workers
def check_dpa_determinism(cfg, device) -> dict:
    from sklearn_certify import DPACertifiedClassifier
    from sklearn_certify.nets import SmallCNN

    X_tr, X_te, Y_tr, _ = digits(400, 50, image=True)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        fits = [
            DPACertifiedClassifier(
                net(SmallCNN, device, max_epochs=cfg["train_epochs"]),
                n_partitions=cfg["dpa_partitions"],
                n_jobs=n_jobs,
            ).fit(X_tr, Y_tr)
            for n_jobs in (2, 2, 1)
        ]
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]

    def weights(clf):
        return [
            [t.detach().cpu() for t in m.estimator_.module_.state_dict().values()]
            if m.estimator_ is not None
            else []
            for m in clf.estimators_
        ]

    reference = weights(fits[0])
    same_weights = [
        all(torch.equal(a, b) for wa, wb in zip(reference, weights(other)) for a, b in zip(wa, wb))
        for other in fits[1:]
    ]
    votes = [clf.predict_proba(X_te) for clf in fits]
    same_votes = [np.array_equal(votes[0], v) for v in votes[1:]]
    # On the CPU the parent (n_jobs=1) may run torch with more threads than a loky worker,
    # which changes float rounding: only the two loky fits must agree there.
    needed = 2 if device.type == "cuda" else 1
    ok = all(same_weights[:needed]) and all(same_votes[:needed])
    return dict(
        ok=ok,
        result=f"identical weights / votes: loky vs loky {same_weights[0]} / "
        f"{same_votes[0]}, loky vs n_jobs=1 {same_weights[1]} / "
        f"{same_votes[1]}",
        detail=f"SmallCNN, {cfg['dpa_partitions']} partitions, n_jobs=2 twice and 1, "
        "deterministic algorithms, cuDNN deterministic, benchmark=False",
    )


# ------------------------------------------------------------ 6. large-head blocks
def check_large_heads(cfg, device) -> dict:
    from sklearn_certify import BaggingCertifiedClassifier
    from sklearn_certify import heads as _heads
    from sklearn_certify._stacked._engine import _model_bytes
    from sklearn_certify._stacked._heads import fit_linear_heads
    from sklearn_certify.nets import MLPModule

    rng = np.random.default_rng(0)
    n, d, c = 2000, cfg["big_d"], 20
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (rng.random((n, c)) < 0.2).astype(np.int64)
    rows = rng.integers(0, n, size=(cfg["big_models"], cfg["big_rows"]))
    blocks = []
    train_block = _heads._train_block
    # The dry run has no device memory to exhaust: it fakes the out-of-memory error for
    # blocks above 2 models, to run the same fallback path.
    fake_limit = None if device.type == "cuda" else 2

    def recording(X_, Y_, rows_, sizes, *args, **kwargs):
        blocks.append(len(sizes))
        if fake_limit is not None and len(sizes) > fake_limit and capping:
            raise torch.OutOfMemoryError("simulated out of memory (dry run)")
        return train_block(X_, Y_, rows_, sizes, *args, **kwargs)

    capping = False
    _heads._train_block = recording
    try:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        heads = fit_linear_heads(
            X, Y, rows, hidden=cfg["big_hidden"], epochs=2, device=device, random_state=0
        )
        heads.vote_counts(X[:200], 3)
        some = np.r_[0:5, cfg["big_models"] - 5 : cfg["big_models"]]  # models to compare
        reference = [p[some].cpu() for p in heads.params_]
        del heads  # its parameters would fill the capped memory below
        sync(device)
        seconds = time.perf_counter() - start
        peak = (
            f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            if device.type == "cuda"
            else "n/a"
        )
        auto_blocks = list(blocks)
        # all models in one block, under a memory cap that cannot hold it
        blocks.clear()
        capping = True
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.empty_cache()
            torch.cuda.set_per_process_memory_fraction(
                cfg["memory_fraction_gib"] * 2**30 / total, device
            )
            cap = f"{cfg['memory_fraction_gib']} GiB"
        else:
            cap = f"a simulated limit of {fake_limit} models"
        try:
            capped = fit_linear_heads(
                X,
                Y,
                rows,
                hidden=cfg["big_hidden"],
                epochs=2,
                device=device,
                random_state=0,
                models_per_batch=cfg["big_models"],
            )
            # the same models up to float rounding (block sizes change kernels)
            fallback_ok = all(
                torch.allclose(p[some].cpu(), q, rtol=1e-3, atol=1e-5)
                for p, q in zip(capped.params_, reference)
            )
            del capped
            forced = (
                f"one block of {cfg['big_models']} under {cap} -> blocks "
                f"{blocks[:6]}..., same weights (allclose): {fallback_ok}"
            )
        finally:
            if device.type == "cuda":
                torch.cuda.set_per_process_memory_fraction(1.0, device)
                torch.cuda.empty_cache()
    finally:
        _heads._train_block = train_block
    # skorch MLP heads of 512, batches of 16: the vectorised net trainer's blocks
    from sklearn_certify._stacked import _nets as _stacked_nets

    recipe = _stacked_nets.net_recipe(
        net(MLPModule, device, module__hidden=(512,), batch_size=16, max_epochs=1), X
    )
    per_block = _stacked_nets._models_per_block(recipe, 64, d, c)
    start = time.perf_counter()
    BaggingCertifiedClassifier(
        net(MLPModule, device, module__hidden=(512,), batch_size=16, max_epochs=1),
        n_estimators=cfg["net_models"],
        max_samples=64,
        random_state=0,
    ).fit(X, Y)
    sync(device)
    net_seconds = time.perf_counter() - start
    per_model = _model_bytes([d, cfg["big_hidden"], c], cfg["big_rows"])
    shrank = bool(blocks) and min(blocks) < blocks[0]  # the out-of-memory path ran
    return dict(
        ok=fallback_ok and shrank,
        result=f"trained: {cfg['big_models']} heads in blocks of "
        f"{max(auto_blocks)}, {seconds:.1f}s, peak {peak}",
        detail=f"hidden {cfg['big_hidden']}, d={d}, {per_model / 2**20:.0f} MiB per "
        f"model by the estimate; {forced}; MultiLabelNet 512-wide heads, "
        f"batch 16: blocks of {per_block}, {cfg['net_models']} nets in "
        f"{net_seconds:.1f}s",
    )


# ------------------------------------------- 7. reduced precision, compiled sampling
def check_speed(cfg, device) -> dict:
    """Section g of run_all on the device: floors, certify per setting, noise, f1."""
    from run_all import bench_speed_model, speed_models

    sizes = {
        "speed_inputs": cfg["speed_inputs"],
        "speed_train": cfg["speed_train"],
        "train_epochs": cfg["train_epochs"],
        "speed_repeat": cfg["repeat"],
    }
    rows, ok = [], True
    for name, data in speed_models(sizes, str(device)).items():
        m = bench_speed_model(name, *data, cfg=sizes, n_draws=cfg["n_draws"], batch=1000, sigma=0.5)
        gap = max(m["max_f1_gap_vs_float32"].values())
        goal = 3.0 if name == "cnn" else 2.5
        ok &= (
            m["speedup_vs_float32_floor"] >= goal
            and m["ratio_vs_best_floor"] <= 1.15
            and gap <= 0.005
        )
        t = m["times_s"]
        rows.append(
            f"{name}: fastest {m['fastest_setting']} {m['speedup_vs_float32_floor']:.2f}x "
            f"the float32 floor, {m['ratio_vs_best_floor']:.2f}x the best floor "
            f"({m['best_floor']}); certify "
            + ", ".join(f"{k} {t['certify ' + k]:.3f}s" for k in m["certified_f1"])
            + f"; noise alone {m['noise_s']:.3f}s; max f1 gap {gap:.4f}"
        )
    return dict(
        ok=ok if device.type == "cuda" else None,
        result=" / ".join(r.split(";")[0] for r in rows),
        detail="; ".join(rows),
    )


# ------------------------------------------------------ 8. kernel launches per input
def _launches(fn, device) -> int:
    """CUDA kernels and copies (on CUDA) or aten operators (on CPU) that ``fn`` runs."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    sync(device)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    if device.type == "cuda":
        return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    # top-level aten operators only (those not called from inside another operator)
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def check_launches(cfg, device) -> dict:
    from sklearn_certify import SmoothedMultiLabelClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16)).astype(np.float32)
    Y = (rng.random((40, 5)) < 0.4).astype(int)
    Y[:, 0] = 1
    model = torch.nn.Linear(16, 5).to(device).eval()
    clf = SmoothedMultiLabelClassifier(
        model, sigma=SIGMA, k=2, n_draws=1000, batch_size=1000, train_noise=False, random_state=0
    ).fit(X, Y)
    clf.certify(X[:2], Y[:2], radius=0.5)  # warm-up

    def run(n):
        return _launches(lambda: clf.certify(X[:n], Y[:n], radius=0.5), device)

    per_input = (run(9) - run(1)) / 8
    noisy = torch.zeros((1000, 16), device=device)
    with torch.inference_mode():
        model_own = _launches(lambda: model(noisy), device)
    overhead = per_input - model_own
    unit = "kernels and copies" if device.type == "cuda" else "aten operators"
    return dict(
        ok=overhead <= 20 if device.type == "cuda" else None,
        result=f"{overhead:.1f} {unit} per input besides the model's {model_own}",
        detail=f"{per_input:.1f} per input in all (n = 1000 in one batch, k' = 1); "
        "the code reads 16 (docs/performance.md), goal <= 20",
    )


CHECKS = [
    ("CUDA-only tests", check_cuda_tests),
    ("certify vs torch floor", check_engine),
    ("devices=[device] vs default", check_devices),
    ("saved on device, loaded with CUDA hidden", check_saved_on_device),
    ("DPA determinism across loky workers", check_dpa_determinism),
    ("large-head block sizing / OOM fallback", check_large_heads),
    ("reduced precision and compiled sampling", check_speed),
    ("kernel launches per input", check_launches),
]


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| check | ok | result | detail | s |", "|---|---|---|---|---|"]
    for row in rows:
        ok = {True: "yes", False: "**NO**", None: "--"}[row["ok"]]
        cells = [row["name"], ok, row["result"], row["detail"], f"{row['seconds']:.0f}"]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cuda", help="'cuda' (default) or 'cuda:N'; 'cpu' for a tiny dry run"
    )
    parser.add_argument("--only", default="12345678", help="checks to run, e.g. '145'")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is available, so nothing was checked. Run it on "
            "a machine with a GPU, or use --device cpu for a dry run of its logic at "
            "tiny sizes."
        )
        return 0
    from run_all import disable_recent_counts

    disable_recent_counts()
    cfg = SIZES["cuda" if device.type == "cuda" else "cpu"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    header = (
        f"GPU check on {name}: torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    )
    rows = []
    for number, (title, check) in enumerate(CHECKS, start=1):
        if str(number) not in args.only:
            continue
        log(f"{number}. {title}")
        start = time.perf_counter()
        try:
            row = check(cfg, device)
        except Exception as exc:  # a failed check is a row of the table, not the end
            traceback.print_exc()
            row = dict(
                ok=False,
                result=f"error: {type(exc).__name__}",
                detail=str(exc).splitlines()[0][:200] if str(exc) else "",
            )
        row.update(name=f"{number}. {title}", seconds=time.perf_counter() - start)
        log(f"   {row['result']}")
        rows.append(row)
    text = table(rows, header)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if all(row["ok"] is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
