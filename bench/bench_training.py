"""Training for certification, side by side: Gaussian augmentation, consistency
regularisation, a clean-trained net alone and behind each denoiser objective.

    python bench/bench_training.py                # writes bench/results_training.{md,json}
    python bench/bench_training.py --n-test 100   # quicker

Two problems, both at sigma = 0.5, k' = 1, k = 3, n = 1000, alpha = 0.001 (the
quickstart's certification setting), certified f1 at R in {0, 0.25, 0.5, 0.75, 1} and
its mean over that grid (the area under the certified-f1 curve):

* multidigit: ``make_multidigit`` flattened to 256 features with
  :class:`~sklearn_certify.nets.MultiLabelNet`'s MLP (256 hidden units), the scaled-down
  quickstart of ``examples/plot_certified_curves.py`` (the quickstart's CNN on 10,000
  images trains for minutes per variant on a 2-core CPU);
* tabular: ``sklearn.datasets.make_multilabel_classification`` (10 labels), standardised.

Every variant trains ``--epochs`` epochs; "gaussian, equal compute" trains twice as many
(consistency sees two noisy copies of every example, so twice the forward passes).
Torch runs on one thread. Timings are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_multilabel_classification
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import StandardScaler

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import GaussianDenoiser, MultiLabelNet
from sklearn_certify.smoothing._training import DEFAULT_CONSISTENCY, DEFAULT_COPIES

RADII = [0.0, 0.25, 0.5, 0.75, 1.0]
HERE = Path(__file__).resolve().parent


def datasets(n_train: int, n_test: int):
    X, X_test, Y, Y_test = make_multidigit(n_train, n_test, random_state=0)
    yield "multidigit", (X.astype(np.float32), X_test.astype(np.float32), Y, Y_test)
    Xa, Ya = make_multilabel_classification(
        n_samples=n_train + n_test, n_features=40, n_classes=10, n_labels=3, random_state=0
    )
    scaler = StandardScaler().fit(Xa[:n_train])
    Xa = scaler.transform(Xa).astype(np.float32)
    keep = Ya.sum(axis=1) > 0
    Xa, Ya = Xa[keep], Ya[keep]
    n_fit = int(keep[:n_train].sum())
    yield "tabular", (Xa[:n_fit], Xa[n_fit:], Ya[:n_fit], Ya[n_fit:])


def net(epochs: int, **kwargs) -> MultiLabelNet:
    return MultiLabelNet(max_epochs=epochs, batch_size=128, lr=2e-3, **kwargs)


def variants(epochs: int, den_epochs: int):
    """(name, how to build the classifier, needs the clean net)"""
    common = dict(sigma=0.5, k_prime=1, k=3, n_draws=1000, alpha=0.001, random_state=0)
    yield (
        "gaussian",
        lambda clean: SmoothedMultiLabelClassifier(net(epochs), train_noise="gaussian", **common),
    )
    yield (
        "gaussian, equal compute (2x epochs)",
        lambda clean: SmoothedMultiLabelClassifier(
            net(DEFAULT_COPIES * epochs), train_noise="gaussian", **common
        ),
    )
    yield (
        "consistency",
        lambda clean: SmoothedMultiLabelClassifier(
            net(epochs), train_noise="consistency", **common
        ),
    )
    yield (
        "clean-trained net alone",
        lambda clean: SmoothedMultiLabelClassifier(
            FrozenEstimator(clean), train_noise=False, **common
        ),
    )
    for objective in ("mse", "stability"):
        yield (
            f"clean net + {objective} denoiser",
            lambda clean, o=objective: SmoothedMultiLabelClassifier(
                FrozenEstimator(clean),
                train_noise=False,
                denoiser=GaussianDenoiser(
                    objective=o, max_epochs=den_epochs, batch_size=128, lr=2e-3
                ),
                **common,
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--denoiser-epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results_training")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite the .md from the .json of an earlier run",
    )
    args = parser.parse_args()
    if args.markdown_only:
        results = json.loads(args.out.with_suffix(".json").read_text())
        write_markdown(results, args.out.with_suffix(".md"))
        return
    torch.set_num_threads(1)
    results = {}
    for data_name, (X, X_test, Y, Y_test) in datasets(args.n_train, args.n_test):
        torch.manual_seed(0)
        tic = time.perf_counter()
        clean = net(args.epochs).fit(X, Y)
        clean_time = time.perf_counter() - tic
        rows = {}
        for name, build in variants(args.epochs, args.denoiser_epochs):
            clf = build(clean)
            tic = time.perf_counter()
            clf.fit(X, Y)
            fit_time = time.perf_counter() - tic + (clean_time if "clean" in name else 0.0)
            tic = time.perf_counter()
            f1 = 100 * clf.certify(X_test, Y_test, RADII).f1()
            rows[name] = dict(
                f1=[round(float(v), 1) for v in f1],
                mean=round(float(f1.mean()), 1),
                train_s=round(fit_time, 1),
                certify_s=round(time.perf_counter() - tic, 1),
            )
            print(
                f"{data_name:10s} {name:38s} mean {f1.mean():5.1f} | "
                + " ".join(f"{v:5.1f}" for v in f1)
                + f" | train {fit_time:6.1f}s",
                flush=True,
            )
        results[data_name] = dict(n_train=len(X), n_test=len(X_test), rows=rows)
    results["settings"] = dict(
        vars(args),
        out=str(args.out),
        sigma=0.5,
        k_prime=1,
        k=3,
        n_draws=1000,
        alpha=0.001,
        radii=RADII,
        consistency=dict(noise_copies=DEFAULT_COPIES, consistency=DEFAULT_CONSISTENCY),
    )
    previous = args.out.with_suffix(".json")
    if previous.exists():  # keep the separately measured quickstart (CNN) numbers
        kept = json.loads(previous.read_text()).get("quickstart_cnn")
        if kept:
            results["quickstart_cnn"] = kept
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out.with_suffix(".md"))


def write_markdown(results: dict, path: Path) -> None:
    lines = [
        "# Training for certification: measured",
        "",
        "`python bench/bench_training.py` (sigma = 0.5, k' = 1, k = 3, n = 1000, "
        "alpha = 0.001; certified f1 in % at each radius; mean over R in {0, 0.25, "
        "0.5, 0.75, 1}; training time in seconds, one torch thread on a shared "
        "2-core CPU).",
        "",
        f"Every variant trains {results['settings']['epochs']} epochs (the "
        "denoisers as many; the clean net's training is counted in the denoised "
        'rows\' time); "gaussian, equal compute" trains twice as many. '
        "multidigit: `make_multidigit` flattened, the MLP of MultiLabelNet (the "
        "scaled-down quickstart of `examples/plot_certified_curves.py`; the "
        "quickstart's CNN trains for minutes per variant on this CPU), "
        f"{results['settings']['n_test']} test images instead of the quickstart's "
        "500 to keep the bench to about three minutes. tabular: "
        "`make_multilabel_classification` (40 features, 10 labels), standardised: "
        "at sigma = 0.5 its noise is small against the spread of 40 standardised "
        "features, so even a clean-trained net certifies about as much as a "
        "noise-trained one there. Training times are wall-clock on a CPU shared "
        "with other work: differences under about 30 % are noise.",
        "",
    ]
    for data_name in ("multidigit", "tabular"):
        block = results[data_name]
        rows = block["rows"]
        lines += [
            f"## {data_name} ({block['n_train']} training, {block['n_test']} test inputs)",
            "",
            "| training | R=0 | R=0.25 | R=0.5 | R=0.75 | R=1 | mean | train (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{v:.1f}" for v in row["f1"])
                + f" | {row['mean']:.1f} | {row['train_s']:.1f} |"
            )
        gauss, cons = rows["gaussian"], rows["consistency"]
        equal = rows["gaussian, equal compute (2x epochs)"]
        stab = rows["clean net + stability denoiser"]
        lines += [
            "",
            "Goals:",
            "",
            f"* consistency / gaussian, mean certified f1: "
            f"{cons['mean'] / gauss['mean']:.2f}x (goal 1.25x); against gaussian at "
            f"equal compute: {cons['mean'] / equal['mean']:.2f}x",
            f"* consistency - gaussian at R = 0: {cons['f1'][0] - gauss['f1'][0]:+.1f} "
            "points (goal: at most 3 lower)",
            f"* training time, consistency / gaussian: "
            f"{cons['train_s'] / gauss['train_s']:.2f}x (goal at most 2.5x)",
            f"* clean net + stability denoiser / gaussian-trained net at R = 0.5: "
            f"{stab['f1'][2] / max(gauss['f1'][2], 1e-9):.2f}x (goal 0.6x); the clean "
            f"net alone: {rows['clean-trained net alone']['f1'][2]:.1f}",
            "",
        ]
    quick = results.get("quickstart_cnn")
    if quick:  # measured separately with examples/quickstart.py (minutes per variant)
        gauss, cons = quick["rows"]["gaussian"], quick["rows"]["consistency"]
        lines += [
            "## The quickstart itself (CNN), measured separately",
            "",
            f"`{quick['command']}`: {quick['setting']}.",
            "",
            "| training | R=0 | R=0.25 | R=0.5 | R=0.75 | R=1 | mean | train (s) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in quick["rows"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(f"{v:.1f}" for v in row["f1"])
                + f" | {row['mean']:.1f} | {row['train_s']:.1f} |"
            )
        lines += [
            "",
            f"Consistency / gaussian, mean certified f1: "
            f"{cons['mean'] / gauss['mean']:.2f}x (goal 1.25x); at R = 0: "
            f"{cons['f1'][0] - gauss['f1'][0]:+.1f} points (goal: at most 3 lower). "
            f"Note: {quick['note']}.",
            "",
        ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
