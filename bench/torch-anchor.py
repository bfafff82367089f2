#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PyTorch anchor for bench-train-step (issue 14): the same LoRA SFT step in PyTorch, fp32 and
with torch.autocast("cpu", dtype=torch.bfloat16), beside Lathe's rows from the same run.

Shape as bench-train-step: a Llama with hidden 576, 30 layers, 9 / 3 heads (head dim 64),
intermediate 1536, vocab 49152, tied embeddings, random frozen weights; LoRA rank 8
(scale 20, as Lathe's default) on all 7 linear layers of every block (A, B trainable, f32);
seq 512, batch 1, AdamW; the best of --reps steps after one warm-up. Tokens/s = seq / step.

    bench/torch-anchor.py [--lathe _build/bench/bench-train-step] [--seq N] [--reps R]
                          [--threads T] [--no-lathe] [--full]

--full: full fine-tuning instead of LoRA on both sides (every weight, norm and the tied
embedding trained, f32 master weights, AdamW over all of them; Lathe's bench-train-step
--train-type full).

Runs Lathe's bench (f32 base: the bf16 file of the bench, products in f32 and in bf16) in the
same run and prints the ratios Lathe / PyTorch. Where torch is not installed (Debian:
python3-torch) it says so and exits 0 after Lathe's rows: the anchor is skipped, not failed.
"""
import argparse
import os
import re
import subprocess
import sys
import time

HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, VOCAB = 576, 30, 9, 3, 1536, 49152
HEAD_DIM = HIDDEN // HEADS
RMS_EPS, ROPE_THETA = 1e-5, 10000.0


def run_lathe(path, seq, reps, threads, compute, full):
    """Lathe's rows for bf16 base weights with @compute products: {"tok_s", "engine"}."""
    if not path or not os.path.exists(path):
        return None
    cmd = [path, "--one", "bf16:0:" + compute, "--seq", str(seq), "--reps", str(reps),
           "--threads", str(threads), "--train-type", "full" if full else "lora"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = next((l for l in out.splitlines() if l.startswith("RESULT ")), "")
    fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    return {"tok_s": float(fields.get("tok_s", "nan")), "engine": fields.get("engine", "?"),
            "peak_mib": float(fields.get("peak_mib", "nan"))}


def torch_rows(seq, reps, threads, full):
    import torch
    import torch.nn.functional as F

    if threads > 0:
        torch.set_num_threads(threads)
    torch.manual_seed(0)

    class LoraLinear(torch.nn.Module):
        def __init__(self, n_in, n_out, rank=8, scale=20.0):
            super().__init__()
            w = (torch.rand(n_out, n_in) * 2 - 1) / n_in ** 0.5
            self.weight = torch.nn.Parameter(w.to(torch.bfloat16).float(), requires_grad=full)
            if not full:
                self.a = torch.nn.Parameter((torch.rand(n_in, rank) * 2 - 1) / n_in ** 0.5)
                self.b = torch.nn.Parameter(torch.zeros(rank, n_out))
            self.scale = scale

        def forward(self, x):
            if full:
                return F.linear(x, self.weight)
            return F.linear(x, self.weight) + self.scale * ((x @ self.a) @ self.b)

    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS))

    inv = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
    ang = torch.outer(torch.arange(seq).float(), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):
        x1, x2 = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    mask = torch.full((seq, seq), float("-inf")).triu(1)

    def attention(q, k, v):
        # PyTorch 2's fused kernel where it has one; Debian 12's 1.13 has none: the same
        # causal attention written out (what 1.13's own models do)
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        s = (q @ k.transpose(-2, -1)) * (HEAD_DIM ** -0.5) + mask[: q.shape[2], : q.shape[2]]
        return torch.softmax(s.float(), -1).to(v.dtype) @ v

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = LoraLinear(HIDDEN, HEADS * HEAD_DIM)
            self.k = LoraLinear(HIDDEN, KV_HEADS * HEAD_DIM)
            self.v = LoraLinear(HIDDEN, KV_HEADS * HEAD_DIM)
            self.o = LoraLinear(HEADS * HEAD_DIM, HIDDEN)
            self.gate = LoraLinear(HIDDEN, INTER)
            self.up = LoraLinear(HIDDEN, INTER)
            self.down = LoraLinear(INTER, HIDDEN)
            self.n1 = torch.nn.Parameter(torch.ones(HIDDEN), requires_grad=full)
            self.n2 = torch.nn.Parameter(torch.ones(HIDDEN), requires_grad=full)

        def forward(self, x):
            T = x.shape[1]
            h = rms(x, self.n1)
            q = self.q(h).view(1, T, HEADS, HEAD_DIM).transpose(1, 2)
            k = self.k(h).view(1, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = self.v(h).view(1, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
            q, k = rope(q), rope(k)
            k = k.repeat_interleave(HEADS // KV_HEADS, 1)
            v = v.repeat_interleave(HEADS // KV_HEADS, 1)
            a = attention(q, k, v)
            x = x + self.o(a.transpose(1, 2).reshape(1, T, HIDDEN))
            h = rms(x, self.n2)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            emb = (torch.rand(VOCAB, HIDDEN) * 2 - 1) * 0.05
            self.emb = torch.nn.Parameter(emb.to(torch.bfloat16).float(), requires_grad=full)
            self.blocks = torch.nn.ModuleList([Block() for _ in range(LAYERS)])
            self.norm = torch.nn.Parameter(torch.ones(HIDDEN), requires_grad=full)

        def forward(self, ids):
            x = F.embedding(ids, self.emb)
            for b in self.blocks:
                x = b(x)
            return F.linear(rms(x, self.norm), self.emb)

    model = Model()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, VOCAB, (1, seq))
    rows = {}
    for name, autocast in (("fp32", False), ("bf16 autocast", True)):
        best = float("inf")
        for r in range(reps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = model(ids)
            loss = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
            loss.backward()
            opt.step()
            dt = time.perf_counter() - t0
            if r > 0:
                best = min(best, dt)
        rows[name] = seq / best
    return rows, torch.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lathe", default=os.path.join(os.path.dirname(__file__), "..", "_build",
                                                    "bench", "bench-train-step"))
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-lathe", action="store_true")
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    args = ap.parse_args()

    lathe = {}
    if not args.no_lathe:
        for compute in ("f32", "bf16"):
            r = run_lathe(args.lathe, args.seq, args.reps, args.threads, compute, args.full)
            if r is not None:
                lathe[compute] = r
        if not lathe:
            print(f"torch-anchor: no Lathe bench at {args.lathe} (build it, or --no-lathe)")

    what = ("full fine-tuning (every weight, norm and the tied embedding)" if args.full
            else "LoRA SFT step, rank 8 on all 7 linears")
    print(f"torch-anchor: {what}, Llama 576h x 30L, V {VOCAB}, "
          f"seq {args.seq}, batch 1, best of {args.reps}")
    print("| system | tokens/s | peak RSS MiB |")
    print("|---|---|---|")
    for compute, r in lathe.items():
        label = f"Lathe, products {compute}" + (f" ({r['engine']})" if compute == "bf16" else "")
        print(f"| {label} | {r['tok_s']:.1f} | {r['peak_mib']:.0f} |")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("| PyTorch | skipped: torch is not installed (Debian: apt install python3-torch) | |")
        return 0
    rows, version = torch_rows(args.seq, args.reps, args.threads, args.full)
    for name, tok_s in rows.items():
        print(f"| PyTorch {version} {name} | {tok_s:.1f} | |")
    for compute, r in lathe.items():
        for name, tok_s in rows.items():
            print(f"Lathe ({compute} products) / PyTorch {name}: {r['tok_s'] / tok_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
