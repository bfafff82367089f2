#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The PyTorch-CUDA anchor for the Vulkan backend (issue 17): LoRA SFT steps in PyTorch on a CUDA
GPU with torch.autocast("cuda", dtype=torch.bfloat16) and SDPA attention, at the issue's shapes.

Model: transformers' LlamaForCausalLM from a config (random weights, bf16 base), PEFT LoRA rank 8,
alpha 16 on all 7 linear layers of every block (adapters f32), batch 1, AdamW lr 1e-5; the time of
--steps steps after 2 warm-up steps. Prints one row per shape: tokens/s and peak CUDA memory
(torch.cuda.max_memory_allocated and the driver's view via torch.cuda.mem_get_info).

    bench/torch-cuda-anchor.py [--shape smollm|1b|3b ...] [--steps N]

Skips (exit 0) where torch, transformers, peft or a CUDA device is missing.
"""
import argparse
import sys
import time

SHAPES = {
    # name: hidden, layers, heads, kv heads, intermediate, vocab, seq, tied
    "smollm": (576, 30, 9, 3, 1536, 49152, 512, True),
    "1b": (2048, 16, 32, 8, 8192, 128256, 2048, True),
    "3b": (3072, 28, 24, 8, 8192, 128256, 2048, True),
}


def one(name, steps):
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
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    free, total = torch.cuda.mem_get_info()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"RESULT peer=pytorch-cuda shape={name} seq={seq} tok_s={seq / dt:.0f} "
          f"step_ms={dt * 1e3:.1f} peak_alloc_gib={peak:.2f} used_gib={(total - free) / 2**30:.2f} "
          f"torch={torch.__version__} gpu={torch.cuda.get_device_name(0).replace(' ', '_')}",
          flush=True)
    del model, opt
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", action="append", choices=sorted(SHAPES))
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import peft  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e}")
        return 0
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device")
        return 0
    for name in a.shape or ["smollm", "1b"]:
        one(name, a.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
