#!/usr/bin/env python3
"""Record PyTorch optimizer trajectories for tests/core/test-optimizer.c.

For each case: a random f32 parameter vector, a fixed sequence of random gradients, and the
parameters PyTorch holds after each step (torch.optim.AdamW / Adam / SGD, optionally with
torch.nn.utils.clip_grad_norm_ before the step). Written as JSON with float32 values printed
with 9 significant digits (exact round trip).

Usage: python3 tests/tools/make-optimizer-fixtures.py --out tests/data/optimizer/reference.json
"""
import argparse
import json

import torch

CASES = [
    ("adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), None),
    ("adamw", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), 0.5),
    ("adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05), None),
    ("sgd", dict(lr=1e-1, momentum=0.9, weight_decay=0.01), None),
    ("sgd", dict(lr=5e-2, momentum=0.0, weight_decay=0.0), 1.0),
]
N = 37
STEPS = 6


def f32(x):
    return [float("%.9g" % v) for v in x.tolist()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(1234)
    out = {"torch_version": torch.__version__, "n": N, "steps": STEPS, "cases": []}
    for kind, hp, clip in CASES:
        p0 = torch.randn(N, dtype=torch.float32)
        grads = [torch.randn(N, dtype=torch.float32) * 0.7 for _ in range(STEPS)]
        p = torch.nn.Parameter(p0.clone())
        cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[kind]
        opt = cls([p], foreach=False, **hp)
        traj, norms = [], []
        for g in grads:
            opt.zero_grad()
            p.grad = g.clone()
            if clip is not None:
                norms.append(float(torch.nn.utils.clip_grad_norm_([p], clip)))
            opt.step()
            traj.append(f32(p.detach()))
        case = {"optimizer": kind, "lr": hp["lr"], "weight_decay": hp["weight_decay"],
                "max_grad_norm": clip or 0.0, "init": f32(p0), "grads": [f32(g) for g in grads],
                "params": traj, "grad_norms": norms}
        if kind != "sgd":
            case["betas"] = list(hp["betas"])
            case["eps"] = hp["eps"]
        else:
            case["momentum"] = hp["momentum"]
        out["cases"].append(case)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
