#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PyTorch-CUDA anchor for the Vulkan backend (issue 17): LoRA SFT steps in PyTorch on a CUDA
GPU with torch.autocast("cuda", dtype=torch.bfloat16) and SDPA attention, at the issue's shapes,
and Lathe's `lathe train --device vulkan` at the same shapes in the same run: one table.

Model: transformers' LlamaForCausalLM from a config (random weights, bf16 base), PEFT LoRA rank 8,
alpha 16 on all 7 linear layers of every block (adapters f32), batch 1, AdamW lr 1e-5; the time of
--steps steps after 2 warm-up steps, each step timed alone (synchronized) and the median taken,
as for Lathe (its RESULT line also gives the fastest and slowest step). Prints one row per shape:
tokens/s and peak CUDA memory
(torch.cuda.max_memory_allocated and the driver's view via torch.cuda.mem_get_info).

    bench/torch-cuda-anchor.py [--shape smollm|1b|3b|tiny ...] [--steps N] [--lathe CMD]
                               [--no-lathe] [--work DIR]

Lathe: bench/random-llama.py writes a random bf16 model of the shape (and long random texts)
under --work; `CMD train --device vulkan --compute-dtype bf16` runs --steps + 2 steps of batch 1
at the shape's sequence length, LoRA rank 8 on every linear layer of every block, reporting every
step (--json); tokens/s is the median of the steps after the first two, GPU memory the most the
run's buffers held (metrics' device_bytes: lt_vulkan_get_allocated). CMD defaults to
_build/src/cli/lathe. The PyTorch rows skip (the Lathe rows still run) where torch,
transformers, peft or a CUDA device is missing; `tiny` is a quick shape for lavapipe.
"""
import argparse
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

SHAPES = {
    # name: hidden, layers, heads, kv heads, intermediate, vocab, seq, tied
    "smollm": (576, 30, 9, 3, 1536, 49152, 512, True),
    "1b": (2048, 16, 32, 8, 8192, 128256, 2048, True),
    "3b": (3072, 28, 24, 8, 8192, 128256, 2048, True),
    "tiny": (64, 2, 4, 2, 128, 512, 256, True),
}
HERE = os.path.dirname(os.path.abspath(__file__))


def lathe_row(name, steps, cmd, work):
    """Lathe's row for one shape: (tokens/s, GPU GiB) or None with the reason printed."""
    spec = importlib.util.spec_from_file_location("random_llama",
                                                  os.path.join(HERE, "random-llama.py"))
    rl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rl)
    model, data, run = (os.path.join(work, name + x) for x in ("-model", "-data", "-run"))
    if not os.path.exists(os.path.join(model, "model.safetensors")):
        rl.write_model(model, name)
    rl.write_data(data)
    shutil.rmtree(run, ignore_errors=True)  # a run folder holding state/ would be refused
    seq = SHAPES[name][6]
    argv = shlex.split(cmd) + [
        "train", "--model", model, "--data", data, "--adapter-path", run, "--device", "vulkan",
        "--compute-dtype", "bf16", "--iters", str(steps + 2), "--batch-size", "1",
        "--max-seq-length", str(seq), "--rank", "8", "--num-layers", "-1",
        "--steps-per-report", "1", "--steps-per-eval", "0", "--save-every", "0", "--json"]
    p = subprocess.run(argv, capture_output=True, text=True)
    tps, dev = [], 0
    for line in p.stdout.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "report" and ev.get("tokens_per_s") is not None:
            tps.append(ev["tokens_per_s"])
        dev = max(dev, ev.get("device_bytes", 0))
    if p.returncode != 0 or len(tps) < 3:
        print(f"lathe {name}: exit {p.returncode}: {p.stderr.strip()[-400:]}", flush=True)
        return None
    tok_s = statistics.median(tps[2:])
    print(f"RESULT peer=lathe-vulkan shape={name} seq={seq} tok_s={tok_s:.0f} "
          f"gpu_gib={dev / 2**30:.3f}", flush=True)
    return tok_s, dev / 2**30


def one(name, steps):
    """PyTorch's row for one shape: (tokens/s, peak allocated GiB)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model

    h, l, nh, kv, inter, vocab, seq, tied = SHAPES[name]
    cfg = LlamaConfig(hidden_size=h, num_hidden_layers=l, num_attention_heads=nh,
                      num_key_value_heads=kv, intermediate_size=inter, vocab_size=vocab,
                      max_position_embeddings=max(seq, 2048), tie_word_embeddings=tied,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                      "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, lora)
    for n, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    ids = torch.randint(0, vocab, (1, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    times = []  # each step timed alone: the median, as Lathe's row takes (one slow step on a
    for _ in range(steps):  # shared machine moved the mean of 3 by up to 2x across runs)
        t = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    free, total = torch.cuda.mem_get_info()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"RESULT peer=pytorch-cuda shape={name} seq={seq} tok_s={seq / dt:.0f} "
          f"step_ms={dt * 1e3:.1f} step_ms_min={min(times) * 1e3:.1f} "
          f"step_ms_max={max(times) * 1e3:.1f} peak_alloc_gib={peak:.2f} "
          f"used_gib={(total - free) / 2**30:.2f} "
          f"torch={torch.__version__} gpu={torch.cuda.get_device_name(0).replace(' ', '_')}",
          flush=True)
    del model, opt
    torch.cuda.empty_cache()
    return seq / dt, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lathe", default=os.path.join(HERE, "..", "_build", "src", "cli", "lathe"))
    ap.add_argument("--no-lathe", action="store_true")
    ap.add_argument("--work", default="/tmp/lathe-vulkan-anchor")
    a = ap.parse_args()
    torch_ok = True
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import peft  # noqa: F401
    except ImportError as e:
        print(f"SKIP pytorch: {e}")
        torch_ok = False
    if torch_ok and not torch.cuda.is_available():
        print("SKIP pytorch: no CUDA device")
        torch_ok = False
    rows = []
    for name in a.shape or ["smollm", "1b"]:
        lt = None if a.no_lathe else lathe_row(name, a.steps, a.lathe, a.work)
        pt = one(name, a.steps) if torch_ok else None
        rows.append((name, lt, pt))
    print(f"\n{'shape':8} {'seq':>5} {'Lathe tok/s':>12} {'GPU GiB':>8} {'PyTorch tok/s':>14} "
          f"{'alloc GiB':>10} {'ratio':>6}")
    for name, lt, pt in rows:
        ratio = f"{lt[0] / pt[0]:.2f}x" if lt and pt else "-"
        print(f"{name:8} {SHAPES[name][6]:5d} {f'{lt[0]:.0f}' if lt else '-':>12} "
              f"{f'{lt[1]:.3f}' if lt else '-':>8} {f'{pt[0]:.0f}' if pt else '-':>14} "
              f"{f'{pt[1]:.2f}' if pt else '-':>10} {ratio:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
