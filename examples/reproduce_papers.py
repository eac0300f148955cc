#!/usr/bin/env python
"""Reproduce the experiments of the MultiGuard and PoisoningGuard papers
=====================================================================

With ``--data-root`` this runs the papers' protocols on PASCAL VOC 2007, MS-COCO 2014
or NUS-WIDE (ASL release) on a GPU; without it, the same protocols run on the embedded
benchmark :func:`sklearn_certify.datasets.make_multidigit` on a CPU in a few minutes.
It trains the base classifiers, certifies, writes curves and tables (CSV) and plots
(PNG) to ``--out``, and prints the results beside the figures the papers report.

Examples
--------
Embedded benchmark (CPU, about 2 minutes; ``--quick`` for a CI-size run)::

    python examples/reproduce_papers.py --out results/multidigit

VOC 2007 on a GPU, torchvision ResNet-50 with weights you supply (nothing is
downloaded)::

    python examples/reproduce_papers.py --data-root ~/data/VOCdevkit --dataset voc2007 \\
        --device cuda --backbone resnet50 --backbone-weights resnet50.pth --out results/voc

Without torchvision, name a callable that returns the encoder (an ``nn.Module`` mapping
normalised images ``(n, 3, H, W)`` to features)::

    python examples/reproduce_papers.py --data-root ~/data/coco --dataset coco \\
        --device cuda --backbone-module my_models.py:resnet50_encoder \\
        --backbone-weights moco_v2_800ep.pth.tar

Protocols
---------
MultiGuard (Gaussian smoothing, l2 evasion): the base classifier is the whole image
model -- pixels in [0, 1], ImageNet normalisation, encoder, linear head -- trained on
Gaussian-noised images (fresh noise per batch) with the asymmetric loss, Adam, batch
32, as in the paper. By default (``--mg-train full``) the pretrained encoder is
fine-tuned with the head, as the paper fine-tunes its ASL model; ``--mg-train head``
freezes the encoder and trains only the head on features of noisy images (minutes
instead of tens of minutes, but a clean-pretrained encoder sees sigma = 0.5 noise badly,
so certified numbers are much lower). The noise is added in pixel space, so either way
the certificate is about l2 perturbations of the [0, 1] image, as in the paper. On the
embedded benchmark the base classifier is the library's default MultiLabelNet (an MLP
on the pixels) trained on noisy inputs by SmoothedMultiLabelClassifier.

PoisoningGuard (bagging and DPA ensembles, poisoned training examples): a frozen
pretrained encoder (the paper: MoCo-v2 ResNet-50) turns every image into features once
(ImageFeatureExtractor), and each base classifier is a linear layer on those features
trained with the asymmetric loss (``--pg-head asl``, the paper's protocol; ``ridge``
uses closed-form ridge heads instead, the library's default). On the embedded benchmark
there is no encoder pre-trained on independent data (one trained on the training set
would itself be poisonable and void the certificate), so the pixels are the features
(an identity encoder), and the heads default to ridge to keep 1,300 base models within
the CPU time budget.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import RidgeClassifier
from torch import nn

import sklearn_certify
from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.datasets import load_coco, load_nuswide, load_voc2007, make_multidigit
from sklearn_certify.features import ImageFeatureExtractor
from sklearn_certify.heads import LinearHead
from sklearn_certify.losses import AsymmetricLoss
from sklearn_certify.nets import MultiLabelNet
from sklearn_certify.results import plot_certified_curves

# ------------------------------------------------------------------ papers' settings
#: Per data set: loader and splits (train, test) and the papers' dataset-dependent
#: defaults. MultiGuard 4.1: k' = 1, k = 3 on VOC, k' = 3, k = 10 on COCO and NUS-WIDE.
#: PoisoningGuard 4.1: m = 100 on VOC, 1000 on COCO and NUS-WIDE. The embedded
#: benchmark (10 classes, about 2.5 labels an image, like VOC) uses VOC's settings.
DATASETS = {
    "voc2007": dict(
        loader=load_voc2007,
        splits=("trainval", "test"),
        mg_k_prime=1,
        mg_k=3,
        max_samples=100,
        name="PASCAL VOC 2007",
    ),
    "coco": dict(
        loader=load_coco,
        splits=("train", "val"),
        mg_k_prime=3,
        mg_k=10,
        max_samples=1000,
        name="MS-COCO 2014",
    ),
    "nuswide": dict(
        loader=load_nuswide,
        splits=("train", "test"),
        mg_k_prime=3,
        mg_k=10,
        max_samples=1000,
        name="NUS-WIDE",
    ),
    "multidigit": dict(
        loader=None,
        splits=None,
        mg_k_prime=1,
        mg_k=3,
        max_samples=100,
        name="make_multidigit (embedded)",
    ),
}

#: Settings shared by every data set (MultiGuard 4.1, PoisoningGuard 4.1), then the
#: smaller CI-size settings of ``--quick``. ``None`` means "the data set's default".
DEFAULTS = dict(
    sigma=0.5,
    n_draws=1000,
    alpha=0.001,
    mg_n_test=500,
    mg_epochs=None,
    pg_k=3,
    pg_k_base=1,
    n_estimators=1000,
    n_partitions=300,
    pg_epochs=100,
    n_train=None,
    pg_n_test=0,
)
QUICK = dict(
    n_draws=100,
    mg_n_test=100,
    mg_epochs=3,
    n_estimators=100,
    n_partitions=50,
    pg_epochs=30,
    n_train=1000,
    pg_n_test=500,
)
#: Training epochs of the MultiGuard base classifier (the paper does not give them).
MG_EPOCHS = {"multidigit": 20, "real": 10}
#: Training images of the embedded benchmark: as many as VOC 2007's trainval split.
MULTIDIGIT_N_TRAIN = 5011

#: MultiGuard Section 4.2, VOC 2007, default setting, R = 0.5 (certified top-3, %).
MULTIGUARD_PAPER_VOC = pd.DataFrame(
    [
        ("MultiGuard", 31.3, 66.4, 42.6),
        ("MultiGuard (first terms only)", 23.6, 48.8, 31.8),
        ("Jia et al. 2020", 24.3, 51.6, 33.0),
    ],
    columns=["label", "paper_precision", "paper_recall", "paper_f1"],
)
PAPER_RADIUS = 0.5
POISONINGGUARD_PAPER_NOTE = (
    "The PoisoningGuard paper reports its results as curves only (Figure 1; VOC 2007 is "
    "its third row); the one number in its text is on NUS-WIDE: PG-Bagging certifies a "
    "recall of at least 30% at T = 100 where bagging and DPA certify 0%."
)

MG_RADII = np.round(np.arange(41) * 0.05, 10)  # R = 0, 0.05, ..., 2.0
MG_TABLE_RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
PG_TABLE_T = (0, 5, 10, 20, 50, 100, 150, 200)

MG_LABELS = {
    "multiguard": "MultiGuard",
    "first-term": "MultiGuard (first terms only)",
    "jia": "Jia et al. 2020",
}
PG_LABELS = {
    "poisoningguard-bagging": "PG-Bagging",
    "bagging": "Bagging (Jia et al. 2021)",
    "poisoningguard-dpa": "PG-DPA",
    "dpa": "DPA (Levine & Feizi 2021)",
}


# ------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Reproduce the MultiGuard and PoisoningGuard experiments (Section 4.1 "
        "of each paper). Without --data-root, runs on make_multidigit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data and run")
    g.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="root of the data set (see the loaders' docstrings for the layout); "
        "omit to use the embedded make_multidigit benchmark",
    )
    g.add_argument(
        "--dataset",
        choices=["voc2007", "coco", "nuswide"],
        default=None,
        help="which data set --data-root holds (default voc2007)",
    )
    g.add_argument(
        "--papers",
        nargs="+",
        choices=["multiguard", "poisoningguard"],
        default=["multiguard", "poisoningguard"],
        help="which experiments to run",
    )
    g.add_argument(
        "--out",
        type=Path,
        default=Path("reproduce_results"),
        help="folder for CSV tables, PNG plots, counts and run.json",
    )
    g.add_argument("--device", default="cpu", help='torch device, e.g. "cuda"')
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    g.add_argument(
        "--quick",
        action="store_true",
        help="CI-size settings: 100 draws, 100 base models, 50 partitions, "
        "100 MultiGuard test inputs, 1000 training images, few epochs",
    )
    g.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="training images: generated ones for make_multidigit (default 5011, "
        "as VOC), a random subset of the training split otherwise "
        "(default 0 = all)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=4,
        help="DataLoader worker processes decoding images (0 = in the main process)",
    )
    g.add_argument("--verbose", type=int, default=0, help="progress bars when > 0")

    g = p.add_argument_group("encoder (real data sets only; nothing is downloaded)")
    g.add_argument(
        "--backbone",
        default="resnet50",
        help="torchvision model name, built without weights; its classification "
        "layer (fc) is replaced by the identity",
    )
    g.add_argument(
        "--backbone-module",
        default=None,
        metavar="MODULE:CALLABLE",
        help="instead of torchvision: a callable returning the encoder "
        "(nn.Module, images -> features), as 'package.module:name' or "
        "'path/to/file.py:name'",
    )
    g.add_argument(
        "--backbone-weights",
        type=Path,
        default=None,
        help="state_dict file for the encoder (torchvision style; MoCo "
        "checkpoints' encoder_q is picked out); required with --backbone",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="images are resized to this square size (ASL uses 448)",
    )
    g.add_argument(
        "--feature-batch-size",
        type=int,
        default=128,
        help="images per encoder pass when extracting features",
    )
    g.add_argument(
        "--amp",
        action="store_true",
        help="run the encoder under bfloat16 autocast (faster on GPUs)",
    )

    g = p.add_argument_group("MultiGuard (MultiGuard paper, Section 4.1)")
    g.add_argument("--sigma", type=float, default=None, help="noise std (default 0.5)")
    g.add_argument("--n-draws", type=int, default=None, help="n, noisy draws (default 1000)")
    g.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="failure probability, also of PG-Bagging (default 0.001)",
    )
    g.add_argument(
        "--mg-k-prime", type=int, default=None, help="k' (default 1 on VOC, 3 on COCO and NUS-WIDE)"
    )
    g.add_argument(
        "--mg-k", type=int, default=None, help="k (default 3 on VOC, 10 on COCO and NUS-WIDE)"
    )
    g.add_argument(
        "--mg-n-test", type=int, default=None, help="random test images to certify (default 500)"
    )
    g.add_argument(
        "--mg-train",
        choices=["full", "head"],
        default="full",
        help="real data: fine-tune encoder and head on noisy images (the "
        "paper) or train only a head on a frozen encoder",
    )
    g.add_argument(
        "--mg-epochs",
        type=int,
        default=None,
        help="training epochs (default 20 on make_multidigit, 10 otherwise)",
    )
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the head")
    g.add_argument(
        "--backbone-lr",
        type=float,
        default=1e-4,
        help="Adam learning rate of the encoder with --mg-train full",
    )
    g.add_argument("--train-batch-size", type=int, default=32, help="training batch size")
    g.add_argument(
        "--sample-batch-size",
        type=int,
        default=500,
        help="noisy copies per forward pass at certification",
    )

    g = p.add_argument_group("PoisoningGuard (PoisoningGuard paper, Section 4.1)")
    g.add_argument("--pg-k", type=int, default=None, help="k (default 3)")
    g.add_argument("--pg-k-base", type=int, default=None, help="k_b (default 1)")
    g.add_argument(
        "--n-estimators", type=int, default=None, help="base models of bagging (default 1000)"
    )
    g.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="m, subsample size of bagging (default 100 on VOC, 1000 elsewhere)",
    )
    g.add_argument(
        "--n-partitions", type=int, default=None, help="N, partitions of DPA (default 300)"
    )
    g.add_argument(
        "--pg-head",
        choices=["asl", "ridge"],
        default=None,
        help="base classifier on the features: a linear layer trained with the "
        "asymmetric loss (default on real data), or ridge (default on "
        "make_multidigit)",
    )
    g.add_argument(
        "--pg-epochs",
        type=int,
        default=None,
        help="full-batch Adam steps of each asl head (default 100)",
    )
    g.add_argument(
        "--pg-n-test",
        type=int,
        default=None,
        help="test images to certify (default 0 = the whole test split)",
    )
    g.add_argument("--n-jobs", type=int, default=1, help="joblib jobs for fitting the base models")
    return p


def resolve_settings(args: argparse.Namespace) -> dict:
    """The run's settings: command line, else --quick, else the papers' defaults."""
    dataset = (args.dataset or "voc2007") if args.data_root is not None else "multidigit"
    spec = DATASETS[dataset]
    s = dict(DEFAULTS)
    if args.quick:
        s.update(QUICK)
    for name in list(s) + ["mg_k_prime", "mg_k", "max_samples", "pg_head"]:
        value = getattr(args, name, None)
        if value is not None:
            s[name] = value
    s.setdefault("mg_k_prime", spec["mg_k_prime"])
    s.setdefault("mg_k", spec["mg_k"])
    s.setdefault("max_samples", spec["max_samples"])
    s.setdefault("pg_head", "ridge" if dataset == "multidigit" else "asl")
    if s["mg_epochs"] is None:
        s["mg_epochs"] = MG_EPOCHS["multidigit" if dataset == "multidigit" else "real"]
    if s["n_train"] is None:
        s["n_train"] = MULTIDIGIT_N_TRAIN if dataset == "multidigit" else 0
    s["dataset"] = dataset
    s["dataset_arg"] = args.dataset
    for key in (
        "data_root",
        "papers",
        "out",
        "device",
        "seed",
        "quick",
        "workers",
        "verbose",
        "backbone",
        "backbone_module",
        "backbone_weights",
        "image_size",
        "feature_batch_size",
        "amp",
        "mg_train",
        "lr",
        "backbone_lr",
        "train_batch_size",
        "sample_batch_size",
        "n_jobs",
    ):
        s[key] = getattr(args, key)
    return s


def check_settings(s: dict, parser: argparse.ArgumentParser) -> None:
    positive = (
        "n_draws",
        "mg_epochs",
        "pg_k",
        "pg_k_base",
        "n_estimators",
        "max_samples",
        "n_partitions",
        "pg_epochs",
        "mg_k",
        "mg_k_prime",
        "mg_n_test",
        "image_size",
        "feature_batch_size",
        "train_batch_size",
        "sample_batch_size",
    )
    for name in positive:
        if s[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {s[name]}.")
    for name in ("n_train", "pg_n_test", "workers"):
        if s[name] < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {s[name]}.")
    if not s["sigma"] > 0:
        parser.error(f"--sigma must be positive, got {s['sigma']}.")
    if not 0 < s["alpha"] < 1:
        parser.error(f"--alpha must be in (0, 1), got {s['alpha']}.")
    if s["dataset"] == "multidigit":
        if s["dataset_arg"] is not None:
            parser.error(
                "--dataset needs --data-root (without it the script runs on make_multidigit)."
            )
        if s["backbone_module"] or s["backbone_weights"]:
            parser.error(
                "--backbone-module and --backbone-weights need --data-root; the "
                "embedded benchmark uses the pixels as features."
            )
        if s["n_train"] < 1:
            parser.error("--n-train must be at least 1 for make_multidigit.")


# -------------------------------------------------------------------------- helpers
class Log:
    """Timestamped progress lines on stdout."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {message}", flush=True)


def load_image(path, size: int) -> np.ndarray:
    """One image as float32 ``(3, size, size)`` in [0, 1].

    RGB, bilinear resize without keeping the aspect ratio: the same preprocessing as
    :class:`~sklearn_certify.features.ImageFeatureExtractor` applies to image files.
    """
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


class ImageFiles(torch.utils.data.Dataset):
    """Images from files, with their label rows, for torch DataLoaders."""

    def __init__(self, paths, Y, size: int):
        self.paths = list(paths)
        self.Y = np.asarray(Y, dtype=np.float32)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        return torch.from_numpy(load_image(self.paths[i], self.size)), torch.from_numpy(self.Y[i])


def image_loader(paths, Y, s: dict, *, batch_size: int, shuffle: bool = False, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        ImageFiles(paths, Y, s["image_size"]),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=s["workers"],
        generator=generator,
        pin_memory=torch.device(s["device"]).type == "cuda",
    )


def load_images(paths, s: dict) -> np.ndarray:
    """Images as one float32 array ``(n, 3, size, size)``, decoded by the workers."""
    size = s["image_size"]
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    start = 0
    for x, _ in image_loader(
        paths, np.zeros((len(paths), 0)), s, batch_size=s["feature_batch_size"]
    ):
        out[start : start + len(x)] = x.numpy()
        start += len(x)
    return out


def import_callable(spec: str):
    """``'package.module:name'`` or ``'path/to/file.py:name'`` -> the object."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--backbone-module must look like 'module:callable', got {spec!r}.")
    if module_name.endswith(".py") or os.path.sep in module_name:
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--backbone-module file {os.fspath(path)!r} not found.")
        module_spec = importlib.util.spec_from_file_location(f"_backbone_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise AttributeError(f"{module_name!r} has no attribute {attr!r}.") from None


def read_state_dict(path: Path) -> dict:
    """A state_dict from a file: a bare one, a ``{"state_dict": ...}`` checkpoint, or a
    MoCo checkpoint (only ``encoder_q`` is kept, its prefix stripped)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state_dict.")
    for prefix in ("module.encoder_q.", "encoder_q."):
        if any(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: v for key, v in state.items() if key.startswith(prefix)}
            break
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: v for key, v in state.items()}
    return state


def build_encoder(s: dict) -> nn.Module:
    """The encoder: torchvision model (fc -> identity) or the user's callable, with weights."""
    if s["backbone_module"]:
        module = import_callable(s["backbone_module"])()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{s['backbone_module']} returned {type(module).__name__}, not a torch.nn.Module."
            )
        drop_fc = False
    else:
        try:
            import torchvision
        except ImportError:
            raise SystemExit(
                "torchvision is not installed: pass --backbone-module module:callable (a "
                "callable returning the encoder as a torch.nn.Module) instead of --backbone."
            ) from None
        if s["backbone_weights"] is None:
            raise SystemExit(
                "--backbone-weights is required with --backbone: nothing is "
                "downloaded, and an encoder with random weights is useless."
            )
        module = getattr(torchvision.models, s["backbone"])(weights=None)
        if hasattr(module, "fc"):
            module.fc = nn.Identity()
        elif hasattr(module, "classifier"):
            module.classifier = nn.Identity()
        drop_fc = True
    if s["backbone_weights"] is not None:
        state = read_state_dict(s["backbone_weights"])
        if drop_fc:  # the ImageNet classifier, or MoCo's projection head
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"the weights in {os.fspath(s['backbone_weights'])!r} do not fit the encoder: "
                f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}."
            )
    return module


class ImageClassifier(nn.Module):
    """The MultiGuard base classifier on images: [0, 1] pixels -> normalise -> encoder ->
    linear head. Gaussian noise is added to its input, so the certificate is about l2
    perturbations of the [0, 1] image."""

    def __init__(
        self, encoder: nn.Module, n_features: int, n_classes: int, *, mean, std, amp: bool = False
    ):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(n_features, n_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.amp = amp

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            return self.encoder((x - self.mean) / self.std).flatten(1).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def t_grid(n_train: int, max_samples: int, n_partitions: int) -> np.ndarray:
    """Poisoning sizes T to certify: up to where bagging (a subsample misses T examples
    with probability (1 - T/n)^m < 1%) and DPA (T >= N/2) cannot certify anything."""
    t_bag = int(np.ceil(n_train * (1.0 - 0.01 ** (1.0 / max_samples))))
    t_max = max(1, min(n_train, max(t_bag, n_partitions // 2 + 1)))
    grid = np.unique(np.linspace(0, t_max, 101).round().astype(int))
    return np.union1d(grid, [t for t in PG_TABLE_T if t <= t_max])


def sample_rows(n: int, size: int, seed: int, eligible=None) -> np.ndarray:
    """``size`` random rows out of ``n`` (sorted; all when size is 0 or >= n)."""
    rows = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    if size == 0 or size >= rows.size:
        return rows
    return np.sort(np.random.RandomState(seed).choice(rows, size, replace=False))


# ----------------------------------------------------------------------- data
def load_data(s: dict, log: Log) -> dict:
    """Training and test data: arrays for make_multidigit, file paths otherwise."""
    if s["dataset"] == "multidigit":
        n_test = max(s["mg_n_test"], s["pg_n_test"])
        X_train, X_test, Y_train, Y_test = make_multidigit(
            s["n_train"], n_test, random_state=s["seed"]
        )
        log(
            f"make_multidigit: {len(X_train)} training and {len(X_test)} test images, "
            f"{Y_train.shape[1]} classes, {Y_train.sum(1).mean():.2f} labels an image"
        )
        return dict(
            X_train=X_train,
            Y_train=Y_train,
            X_test=X_test,
            Y_test=Y_test,
            class_names=[str(i) for i in range(Y_train.shape[1])],
        )
    spec = DATASETS[s["dataset"]]
    train = spec["loader"](s["data_root"], spec["splits"][0])
    test = spec["loader"](s["data_root"], spec["splits"][1])
    rows = sample_rows(len(train.paths), s["n_train"], s["seed"])
    paths_train = [train.paths[i] for i in rows]
    log(
        f"{spec['name']}: {len(paths_train)} training images ({spec['splits'][0]}"
        f"{', random subset' if len(rows) < len(train.paths) else ''}), {len(test.paths)} "
        f"test images ({spec['splits'][1]}), {train.Y.shape[1]} classes"
    )
    return dict(
        paths_train=paths_train,
        Y_train=train.Y[rows],
        paths_test=list(test.paths),
        Y_test=test.Y,
        class_names=list(train.class_names),
    )


def make_extractor(s: dict, log: Log) -> ImageFeatureExtractor:
    extractor = ImageFeatureExtractor(
        build_encoder(s),
        image_size=s["image_size"],
        batch_size=s["feature_batch_size"],
        device=s["device"],
    ).fit()
    log(
        f"encoder: {s['backbone_module'] or s['backbone']}, "
        f"{extractor.n_features_out_} features, on {extractor.device_}"
    )
    return extractor


# ------------------------------------------------------------------------ MultiGuard
def train_image_classifier(extractor, data, s: dict, log: Log) -> ImageClassifier:
    """Train the MultiGuard base classifier on Gaussian-noised images (real data)."""
    device = extractor.device_
    full = s["mg_train"] == "full"
    encoder = copy.deepcopy(extractor.backbone_) if full else extractor.backbone_
    encoder.requires_grad_(full)
    model = ImageClassifier(
        encoder,
        extractor.n_features_out_,
        data["Y_train"].shape[1],
        mean=extractor.mean,
        std=extractor.std,
        amp=s["amp"],
    ).to(device)
    groups = [{"params": model.head.parameters(), "lr": s["lr"]}]
    if full:
        groups.append({"params": model.encoder.parameters(), "lr": s["backbone_lr"]})
    optimizer = torch.optim.Adam(groups)
    criterion = AsymmetricLoss()
    noise = torch.Generator(device=device).manual_seed(s["seed"] + 1)
    loader = image_loader(
        data["paths_train"],
        data["Y_train"],
        s,
        batch_size=s["train_batch_size"],
        shuffle=True,
        seed=s["seed"],
    )
    for epoch in range(s["mg_epochs"]):
        model.train(full)
        model.head.train()
        total, seen = 0.0, 0
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            x = x + s["sigma"] * torch.randn(x.shape, generator=noise, device=device)
            if full:
                logits = model(x)
            else:
                with torch.no_grad():
                    features = model.features(x)
                logits = model.head(features)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
        log(
            f"MultiGuard base ({s['mg_train']}): epoch {epoch + 1}/{s['mg_epochs']}, "
            f"ASL loss {total / max(seen, 1):.4f}"
        )
    return model.eval().requires_grad_(False)


def run_multiguard(data, extractor, s: dict, log: Log) -> list:
    """Train the base classifier on noisy inputs and certify: MultiGuard, its first-term
    ablation and Jia et al. (k' = 1 only), from one sampling pass."""
    smoothing = dict(
        sigma=s["sigma"],
        k_prime=s["mg_k_prime"],
        k=s["mg_k"],
        n_draws=s["n_draws"],
        alpha=s["alpha"],
        batch_size=s["sample_batch_size"],
        random_state=s["seed"],
        verbose=s["verbose"],
    )
    if s["dataset"] == "multidigit":
        base = MultiLabelNet(
            max_epochs=s["mg_epochs"],
            lr=s["lr"],
            batch_size=s["train_batch_size"],
            device=s["device"],
        )
        log(
            f"MultiGuard: training MultiLabelNet on noisy inputs (sigma={s['sigma']}, "
            f"{s['mg_epochs']} epochs)"
        )
        clf = SmoothedMultiLabelClassifier(base, **smoothing).fit(data["X_train"], data["Y_train"])
        rows = sample_rows(
            len(data["Y_test"]), s["mg_n_test"], s["seed"], eligible=data["Y_test"].sum(1) > 0
        )
        X, Y = data["X_test"][rows], data["Y_test"][rows]
    else:
        model = train_image_classifier(extractor, data, s, log)
        rows = sample_rows(
            len(data["Y_test"]), s["mg_n_test"], s["seed"], eligible=data["Y_test"].sum(1) > 0
        )
        X = load_images([data["paths_test"][i] for i in rows], s)
        Y = data["Y_test"][rows]
        # trained on noisy images above: used as is
        clf = SmoothedMultiLabelClassifier(model, train_noise=False, **smoothing).fit(X, Y)
    log(f"MultiGuard: sampling {s['n_draws']} noisy copies of {len(X)} test inputs")
    result = clf.certify(X, Y, radius=MG_RADII, label=MG_LABELS["multiguard"])
    results = [result, result.recertify(method="first-term", label=MG_LABELS["first-term"])]
    if s["mg_k_prime"] == 1:
        results.append(result.recertify(method="jia", label=MG_LABELS["jia"]))
    else:
        log("MultiGuard: Jia et al. needs k' = 1; rerun with --mg-k-prime 1 to compare")
    return results


# -------------------------------------------------------------------- PoisoningGuard
def run_poisoningguard(data, extractor, s: dict, log: Log) -> list:
    """Frozen-encoder features, linear heads; bagging and DPA ensembles, each certified
    by PoisoningGuard and by its single-label predecessor (t fixed to 1)."""
    if s["dataset"] == "multidigit":
        F_train, Y_train = data["X_train"], data["Y_train"]
        rows = sample_rows(len(data["Y_test"]), s["pg_n_test"], s["seed"])
        F_test, Y_test = data["X_test"][rows], data["Y_test"][rows]
    else:
        rows = sample_rows(len(data["Y_test"]), s["pg_n_test"], s["seed"])
        log(
            f"PoisoningGuard: encoding {len(data['paths_train'])} training and {len(rows)} "
            "test images"
        )
        F_train = encode(extractor, data["paths_train"], s)
        F_test = encode(extractor, [data["paths_test"][i] for i in rows], s)
        Y_train, Y_test = data["Y_train"], data["Y_test"][rows]
    if s["pg_head"] == "asl":
        # Linear ASL heads trained full-batch: the ensembles train all of them at once
        # as one batched torch program (sklearn_certify.heads.LinearHead).
        head = LinearHead(loss="asl", epochs=s["pg_epochs"], device=s["device"])
    else:
        head = RidgeClassifier()
    T = t_grid(len(F_train), s["max_samples"], s["n_partitions"])
    common = dict(
        k_base=s["pg_k_base"], k=s["pg_k"], n_jobs=s["n_jobs"], verbose=max(0, s["verbose"] - 1)
    )

    log(
        f"PoisoningGuard: bagging, {s['n_estimators']} {s['pg_head']} heads on "
        f"m={s['max_samples']} of {len(F_train)} examples"
    )
    bagging = BaggingCertifiedClassifier(
        head,
        n_estimators=s["n_estimators"],
        max_samples=s["max_samples"],
        alpha=s["alpha"],
        random_state=s["seed"],
        **common,
    ).fit(F_train, Y_train)
    pg_bag = bagging.certify(F_test, Y_test, radius=T, attack="modification")
    pg_bag.label = PG_LABELS["poisoningguard-bagging"]
    log(f"PoisoningGuard: DPA, {s['n_partitions']} {s['pg_head']} heads on hash partitions")
    dpa = DPACertifiedClassifier(head, n_partitions=s["n_partitions"], **common).fit(
        F_train, Y_train
    )
    pg_dpa = dpa.certify(F_test, Y_test, radius=T, attack="modification")
    pg_dpa.label = PG_LABELS["poisoningguard-dpa"]
    return [
        pg_bag,
        pg_bag.recertify(method="bagging", label=PG_LABELS["bagging"]),
        pg_dpa,
        pg_dpa.recertify(method="dpa", label=PG_LABELS["dpa"]),
    ]


def encode(extractor, paths, s: dict) -> np.ndarray:
    """Encoder features of image files; the workers decode, the extractor encodes."""
    chunks = [
        extractor.transform(x.numpy())
        for x, _ in image_loader(
            paths, np.zeros((len(paths), 0)), s, batch_size=s["feature_batch_size"]
        )
    ]
    if not chunks:
        return np.empty((0, extractor.n_features_out_), dtype=np.float32)
    return np.concatenate(chunks)


# ------------------------------------------------------------------------ outputs
def curves_frame(results) -> pd.DataFrame:
    return pd.concat([r.to_frame() for r in results], ignore_index=True)


def summary_table(curves: pd.DataFrame, radius_col: str, at) -> pd.DataFrame:
    """Precision, recall and f1 in % at a few radii, one row per method and radius."""
    keep = np.isclose(
        curves[radius_col].to_numpy(dtype=float)[:, None], np.asarray(at, dtype=float)[None, :]
    ).any(axis=1)
    table = curves.loc[keep, [radius_col, "label", "k", "precision", "recall", "f1"]].copy()
    table[["precision", "recall", "f1"]] = (100 * table[["precision", "recall", "f1"]]).round(1)
    return table.sort_values([radius_col, "label"], kind="stable").reset_index(drop=True)


def paper_comparison(curves: pd.DataFrame) -> pd.DataFrame:
    """This run at R = 0.5 beside MultiGuard's reported VOC 2007 figures (%)."""
    at = curves[np.isclose(curves["radius"], PAPER_RADIUS)].set_index("label")
    rows = []
    for _, paper in MULTIGUARD_PAPER_VOC.iterrows():
        ours = at.loc[paper["label"]] if paper["label"] in at.index else None
        rows.append(
            {
                "label": paper["label"],
                **{f"paper_{m}": paper[f"paper_{m}"] for m in ("precision", "recall", "f1")},
                **{
                    f"this_run_{m}": (
                        round(100 * float(ours[m]), 1) if ours is not None else np.nan
                    )
                    for m in ("precision", "recall", "f1")
                },
            }
        )
    return pd.DataFrame(rows)


def save_plot(results, path: Path, title: str) -> bool:
    """The curves in one three-panel PNG, cut a little after the last nonzero value."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(13, 3.8), constrained_layout=True)
    axes = plot_certified_curves(results, ax=fig.subplots(1, 3))
    radius = np.asarray(results[0].radius, dtype=float)
    alive = np.any([r.f1() > 0 for r in results], axis=0)
    if alive.any() and radius[-1] > 0:
        right = min(radius[-1], 1.25 * radius[np.flatnonzero(alive)[-1]] + 0.05 * radius[-1])
        for ax in axes:
            ax.set_xlim(radius[0], right)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return True


def save_counts(r, path: Path) -> None:
    """The label counts behind a result, to re-certify later without retraining."""
    np.savez_compressed(
        path,
        counts=r.counts,
        Y=r.Y,
        radius=r.radius,
        k=r.k,
        n_draws=-1 if r.n_draws is None else r.n_draws,
        alpha=np.nan if r.alpha is None else r.alpha,
        params=json.dumps(
            {k: (v.item() if hasattr(v, "item") else v) for k, v in r.params.items()}
        ),
    )


def write_outputs(name: str, results, s: dict, radius_col: str, at, log: Log) -> dict:
    out = s["out"]
    curves = curves_frame(results)
    table = summary_table(curves, radius_col, at)
    curves.to_csv(out / f"{name}_curves.csv", index=False)
    table.to_csv(out / f"{name}_table.csv", index=False)
    if name == "multiguard":
        save_counts(results[0], out / "multiguard_counts.npz")
    else:
        save_counts(results[0], out / "poisoningguard_bagging_counts.npz")
        save_counts(results[2], out / "poisoningguard_dpa_counts.npz")
    title = (
        f"{'MultiGuard' if name == 'multiguard' else 'PoisoningGuard'} on "
        f"{DATASETS[s['dataset']]['name']}"
    )
    plotted = save_plot(results, out / f"{name}_curves.png", title)
    log(
        f"wrote {name}_curves.csv, {name}_table.csv"
        f"{', ' + name + '_curves.png' if plotted else ' (no matplotlib: no plot)'}"
    )
    return dict(results=results, curves=curves, table=table)


def print_multiguard(report: dict, s: dict) -> pd.DataFrame:
    table = report["table"]
    print(
        f"\nMultiGuard on {DATASETS[s['dataset']]['name']}: certified top-{s['mg_k']} "
        f"precision / recall / f1 (%), sigma={s['sigma']}, k'={s['mg_k_prime']}, "
        f"n={s['n_draws']}, alpha={s['alpha']}"
    )
    print(table.to_string(index=False))
    comparison = paper_comparison(report["curves"])
    note = (
        ""
        if s["dataset"] == "voc2007"
        else f"  (this run is on {DATASETS[s['dataset']]['name']}, not VOC 2007: compare the "
        "ordering of the methods, not the values)"
    )
    print(f"\nBeside the MultiGuard paper, VOC 2007, R = {PAPER_RADIUS} (%):{note}")
    print(comparison.to_string(index=False))
    comparison.to_csv(s["out"] / "multiguard_vs_paper.csv", index=False)
    return comparison


def print_poisoningguard(report: dict, s: dict) -> None:
    print(
        f"\nPoisoningGuard on {DATASETS[s['dataset']]['name']}, modification attack: "
        f"certified top-{s['pg_k']} precision / recall / f1 (%), k_b={s['pg_k_base']}, "
        f"bagging N={s['n_estimators']} m={s['max_samples']} alpha={s['alpha']}, "
        f"DPA N={s['n_partitions']}, {s['pg_head']} heads"
    )
    print(report["table"].to_string(index=False))
    print("\n" + POISONINGGUARD_PAPER_NOTE)


def environment() -> dict:
    env = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        sklearn_certify=sklearn_certify.__version__,
        platform=platform.platform(),
    )
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


# ------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    """Run the experiments; returns ``{"multiguard": ..., "poisoningguard": ...}``, each a
    dict with the ``results`` (CertificationResult list), ``curves`` and ``table``
    DataFrames, plus ``"settings"``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    s = resolve_settings(args)
    check_settings(s, parser)
    s["out"].mkdir(parents=True, exist_ok=True)
    log = Log()
    torch.manual_seed(s["seed"])

    data = load_data(s, log)
    extractor = make_extractor(s, log) if s["dataset"] != "multidigit" else None
    timings, output = {}, {"settings": s}
    if "multiguard" in s["papers"]:
        start = time.perf_counter()
        report = write_outputs(
            "multiguard", run_multiguard(data, extractor, s, log), s, "radius", MG_TABLE_RADII, log
        )
        timings["multiguard_s"] = round(time.perf_counter() - start, 1)
        report["paper"] = print_multiguard(report, s)
        output["multiguard"] = report
    if "poisoningguard" in s["papers"]:
        start = time.perf_counter()
        report = write_outputs(
            "poisoningguard", run_poisoningguard(data, extractor, s, log), s, "T", PG_TABLE_T, log
        )
        timings["poisoningguard_s"] = round(time.perf_counter() - start, 1)
        print_poisoningguard(report, s)
        output["poisoningguard"] = report

    run = dict(
        settings={k: (os.fspath(v) if isinstance(v, Path) else v) for k, v in s.items()},
        timings=timings,
        environment=environment(),
        n_train=len(data["Y_train"]),
        n_classes=int(data["Y_train"].shape[1]),
    )
    (s["out"] / "run.json").write_text(json.dumps(run, indent=2, default=str))
    log(f"done; outputs in {os.fspath(s['out'])}")
    return output


if __name__ == "__main__":
    main()
