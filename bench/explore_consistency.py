"""Exploration behind train_noise="consistency": which multi-label consistency objective
certifies most (plain torch, small data, one thread). Results: bench/results_training.md.

    python bench/explore_consistency.py [--epochs 12] [--n-train 4000] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.losses import AsymmetricLoss
from sklearn_certify.nets import MLPModule

RADII = [0.0, 0.25, 0.5, 0.75, 1.0]
SIGMA = 0.5


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
    model = MLPModule(X.shape[1], Y.shape[1], hidden=(256,))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    asl = AsymmetricLoss()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y, dtype=torch.float32)
    m = cfg.get("m", 1)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 128):
            idx = perm[i : i + 128]
            x, y = Xt[idx], Yt[idx]
            noisy = x.unsqueeze(0) + SIGMA * torch.randn(m, *x.shape)
            z = model(noisy.reshape(-1, x.shape[1])).reshape(m, len(x), -1)
            loss = loss_fn(z, y, cfg, asl)
            opt.zero_grad()
            loss.backward()
            opt.step()
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
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    X, Xte, Y, Yte = make_multidigit(args.n_train, args.n_test, random_state=0)
    X, Xte = X.astype(np.float32), Xte.astype(np.float32)
    rows = {}
    for name, cfg in CONFIGS.items():
        if args.only and not any(o == name for o in args.only):
            continue
        f1s, secs = [], []
        for seed in args.seeds:
            tic = time.perf_counter()
            model = train(cfg, X, Y, args.epochs * cfg.get("epoch_mult", 1), seed)
            secs.append(time.perf_counter() - tic)
            clf = SmoothedMultiLabelClassifier(
                model, sigma=SIGMA, k=3, n_draws=1000, train_noise=False, random_state=0
            ).fit(X, Y)
            f1s.append(100 * clf.certify(Xte, Yte, RADII).f1())
        f1 = np.mean(f1s, axis=0)
        rows[name] = dict(
            f1=f1.round(1).tolist(),
            mean=round(float(f1.mean()), 1),
            train_s=round(float(np.mean(secs)), 1),
        )
        print(
            f"{name:36s} mean {f1.mean():5.1f}  "
            + " ".join(f"{v:5.1f}" for v in f1)
            + f"  train {np.mean(secs):.1f}s",
            flush=True,
        )
    if args.out:
        json.dump(rows, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
