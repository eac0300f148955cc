"""Exploration behind train_noise="consistency": which multi-label consistency objective
certifies most (plain torch, small data, one thread). Results:
bench/results_explore_consistency.json, discussed in docs/training.md.

    python bench/explore_consistency.py [--epochs 12] [--n-train 4000] [--seeds 0]
        [--only NAME ...] [--out FILE]

Besides the objectives, a configuration may set ``lr``, ``onecycle`` (a one-cycle
learning-rate schedule peaking at ``lr``), ``clean`` (the weight of a Bernoulli KL that
pulls every noisy copy towards the detached prediction on the clean input, which is also
trained with ASL: stability training with a clean teacher) and ``arch="cells"`` (the
per-cell network below instead of the MLP).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from bayes_reference import RADII, certified_f1, wrong_vote_share  # bench/, beside this file

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.losses import AsymmetricLoss
from sklearn_certify.nets import MLPModule

SIGMA = 0.5


class CellNet(torch.nn.Module):
    """One MLP shared by the 8x8 cells of a 16x16 image; a label's score is the logsumexp
    of its cell scores. It knows the layout of ``make_multidigit`` (an architecture that
    fits the data), which is what separates it from the MLP."""

    def __init__(self, width=256, n_classes=10):
        super().__init__()
        self.cells = torch.nn.Sequential(
            torch.nn.Conv2d(1, width, 8, stride=8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(width, n_classes, 1),
        )

    def forward(self, x):
        return torch.logsumexp(self.cells(x.reshape(-1, 1, 16, 16)).flatten(2), -1)


def bernoulli_kl(p_target, z):
    """KL(Ber(p_target) || Ber(sigmoid z)), summed over labels, mean over the batch."""
    p = p_target.clamp(1e-6, 1 - 1e-6)
    kl = p * (p.log() - F.logsigmoid(z)) + (1 - p) * ((1 - p).log() - F.logsigmoid(-z))
    return kl.sum(-1).mean()


def loss_fn(z, y, cfg, asl):
    """z: (m, B, L) logits of m noisy copies; y: (B, L)."""
    m = z.shape[0]
    loss = 0.0
    if cfg.get("asl", 1.0):
        loss = loss + cfg.get("asl", 1.0) * sum(asl(z[c], y) for c in range(m)) / m
    target = y / y.sum(1, keepdim=True).clamp(min=1)
    logp = F.log_softmax(z, dim=-1)
    if cfg.get("vote", 0):
        loss = loss + cfg["vote"] * (-(target * logp).sum(-1)).mean()
    if cfg.get("setlik", 0):  # top-1 mass on the true set, per copy
        loss = loss + cfg["setlik"] * (-torch.logsumexp(logp + (y - 1) * 1e4, -1)).mean()
    if cfg.get("setlik_bar", 0):  # top-1 mass of the mean softmax on the true set
        logpbar = torch.logsumexp(logp, dim=0) - np.log(m)
        loss = loss + cfg["setlik_bar"] * (-torch.logsumexp(logpbar + (y - 1) * 1e4, -1)).mean()
    if cfg.get("macer", 0):  # CE on the mean softmax: the smoothed soft vote
        logpbar = torch.logsumexp(logp, dim=0) - np.log(m)
        loss = loss + cfg["macer"] * (-(target * logpbar).sum(-1)).mean()
    if cfg.get("kl", 0):
        pbar = logp.exp().mean(0)
        kl = (pbar * (pbar.clamp(min=1e-12).log() - logp)).sum(-1).mean()
        loss = loss + cfg["kl"] * kl
        if cfg.get("ent", 0):
            loss = loss + cfg["ent"] * (-(pbar * pbar.clamp(min=1e-12).log()).sum(-1)).mean()
    if cfg.get("bern", 0):
        q = torch.sigmoid(z)
        qbar = q.mean(0).clamp(1e-6, 1 - 1e-6)
        qc = q.clamp(1e-6, 1 - 1e-6)
        kl = qbar * (qbar.log() - qc.log()) + (1 - qbar) * ((1 - qbar).log() - (1 - qc).log())
        loss = loss + cfg["bern"] * kl.sum(-1).mean()
    return loss


def train(cfg, X, Y, epochs, seed):
    torch.manual_seed(seed)
    if cfg.get("arch") == "cells":
        model = CellNet(n_classes=Y.shape[1])
    else:
        model = MLPModule(X.shape[1], Y.shape[1], hidden=(256,))
    lr = cfg.get("lr", 2e-3)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(X) // 128)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
        if cfg.get("onecycle")
        else None
    )
    asl = AsymmetricLoss()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y, dtype=torch.float32)
    m = cfg.get("m", 1)
    clean = cfg.get("clean", 0)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 128):
            idx = perm[i : i + 128]
            x, y = Xt[idx], Yt[idx]
            noisy = (x.unsqueeze(0) + SIGMA * torch.randn(m, *x.shape)).reshape(-1, x.shape[1])
            z = model(torch.cat([x, noisy]) if clean else noisy)
            if clean:
                z_clean, z = z[: len(x)], z[len(x) :]
            z = z.reshape(m, len(x), -1)
            loss = loss_fn(z, y, cfg, asl)
            if clean:
                teacher = torch.sigmoid(z_clean).detach()
                loss = loss + asl(z_clean, y)
                loss = loss + clean * sum(bernoulli_kl(teacher, z[c]) for c in range(m)) / m
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
    return model.eval()


CONFIGS = {
    "gaussian (ASL, m=1)": dict(m=1),
    "ASL, m=2": dict(m=2),
    "ASL + vote, m=1": dict(m=1, vote=1.0),
    "ASL + vote, m=2": dict(m=2, vote=1.0),
    "ASL + vote + KL 1, m=2": dict(m=2, vote=1.0, kl=1.0),
    "ASL + vote + KL 2, m=2": dict(m=2, vote=1.0, kl=2.0),
    "ASL + vote + KL 5, m=2": dict(m=2, vote=1.0, kl=5.0),
    "ASL + KL 2, m=2": dict(m=2, kl=2.0),
    "ASL + Bernoulli KL 2, m=2": dict(m=2, bern=2.0),
    "ASL + macer, m=2": dict(m=2, macer=1.0),
    "ASL + macer + KL 1, m=2": dict(m=2, macer=1.0, kl=1.0),
    "vote + KL 2, m=2 (no ASL)": dict(m=2, asl=0.0, vote=1.0, kl=2.0),
    "ASL + vote + KL 2 + ent 0.5, m=2": dict(m=2, vote=1.0, kl=2.0, ent=0.5),
    "ASL, 2x epochs (equal compute)": dict(m=1, epoch_mult=2),
    "ASL + KL 10, m=2": dict(m=2, kl=10.0),
    "ASL + KL 10 + ent 0.5, m=2": dict(m=2, kl=10.0, ent=0.5),
    "ASL + KL 2 + ent 0.5, m=2": dict(m=2, kl=2.0, ent=0.5),
    "ASL + Bernoulli KL 5, m=2": dict(m=2, bern=5.0),
    "ASL + Bernoulli KL 10, m=2": dict(m=2, bern=10.0),
    "ASL + setlik, m=2": dict(m=2, setlik=1.0),
    "ASL + setlik + KL 5 + ent 0.5, m=2": dict(m=2, setlik=1.0, kl=5.0, ent=0.5),
    "ASL + setlik_bar + KL 5, m=2": dict(m=2, setlik_bar=1.0, kl=5.0),
    "ASL + setlik_bar, m=4": dict(m=4, setlik_bar=1.0),
    "ASL + KL 5, m=4": dict(m=4, kl=5.0),
    "ASL + Bernoulli KL 20, m=2": dict(m=2, bern=20.0),
    "ASL + Bernoulli KL 2, m=4": dict(m=4, bern=2.0),
    "ASL + Bernoulli KL 5, m=4": dict(m=4, bern=5.0),
    "ASL + clean-teacher KL 2, m=1": dict(m=1, clean=2.0),
    "ASL + clean-teacher KL 2, m=2": dict(m=2, clean=2.0),
    "ASL + clean-teacher KL 5, m=2": dict(m=2, clean=5.0),
    "ASL, one-cycle lr 5e-3": dict(m=1, lr=5e-3, onecycle=True),
    "ASL + Bernoulli KL 2, m=4, one-cycle lr 5e-3": dict(m=4, bern=2.0, lr=5e-3, onecycle=True),
    "ASL + Bernoulli KL 2, m=8, one-cycle lr 5e-3": dict(m=8, bern=2.0, lr=5e-3, onecycle=True),
    "ASL, one-cycle lr 5e-3, 5x epochs": dict(m=1, lr=5e-3, onecycle=True, epoch_mult=5),
    "ASL + Bernoulli KL 2, m=4, one-cycle lr 5e-3, 5x epochs": dict(
        m=4, bern=2.0, lr=5e-3, onecycle=True, epoch_mult=5
    ),
    "cell net, ASL (Gaussian augmentation)": dict(m=1, arch="cells"),
    "cell net, ASL + Bernoulli KL 2, m=2": dict(m=2, bern=2.0, arch="cells"),
}


def reassign_wrong_votes(counts, Y, share):
    """Counts with ``share`` of each input's votes on labels it does not show moved to its
    most-voted true label: what certifying would give if the base model erred less."""
    wrong = np.floor(share * counts * (1 - Y)).astype(counts.dtype)
    moved = counts - wrong
    best_true = np.argmax(np.where(Y == 1, moved, -1), axis=1)
    moved[np.arange(len(moved)), best_true] += wrong.sum(1)
    return moved


def reassigned_f1(counts, Y):
    """Mean certified f1 (%) with all and with half of the wrong votes reassigned."""
    return [
        certified_f1(reassign_wrong_votes(counts, Y, share), Y, SIGMA).mean()
        for share in (1.0, 0.5)
    ]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--reassign", action="store_true", help="also certify with fewer wrong votes")
    args = p.parse_args()
    torch.set_num_threads(1)
    X, Xte, Y, Yte = make_multidigit(args.n_train, args.n_test, random_state=0)
    X, Xte = X.astype(np.float32), Xte.astype(np.float32)
    rows = {}
    for name, cfg in CONFIGS.items():
        if args.only and not any(o == name for o in args.only):
            continue
        f1s, secs, wrong, reassigned = [], [], [], []
        for seed in args.seeds:
            tic = time.perf_counter()
            model = train(cfg, X, Y, args.epochs * cfg.get("epoch_mult", 1), seed)
            secs.append(time.perf_counter() - tic)
            clf = SmoothedMultiLabelClassifier(
                model, sigma=SIGMA, k=3, n_draws=1000, train_noise=False, random_state=0
            ).fit(X, Y)
            result = clf.certify(Xte, Yte, RADII)
            f1s.append(100 * result.f1())
            wrong.append(100 * wrong_vote_share(result.counts, Yte))
            if args.reassign:
                reassigned.append(reassigned_f1(result.counts, Yte))
        f1 = np.mean(f1s, axis=0)
        rows[name] = dict(
            f1=f1.round(1).tolist(),
            mean=round(float(f1.mean()), 1),
            train_s=round(float(np.mean(secs)), 1),
            wrong_votes=round(float(np.mean(wrong)), 1),
        )
        print(
            f"{name:36s} mean {f1.mean():5.1f}  "
            + " ".join(f"{v:5.1f}" for v in f1)
            + f"  train {np.mean(secs):.1f}s  wrong votes {np.mean(wrong):.1f} %",
            flush=True,
        )
        if reassigned:
            none, half = np.mean(reassigned, axis=0)
            rows[name].update(mean_no_wrong_votes=round(none, 1), mean_half=round(half, 1))
            print(f"  no wrong votes: mean {none:.1f}; half of them: mean {half:.1f}")

    if args.out:
        json.dump(rows, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
