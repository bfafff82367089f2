#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes a random Llama-shaped model (bf16 safetensors, tied embedding, the llama-f32 fixture's
tokenizer) and a dataset of long random-word texts, for the speed benchmarks that need a model
of a real shape without downloading one (bench/vulkan-anchor.py, the device runs).

    bench/random-llama.py MODEL_DIR DATA_DIR SHAPE [LAYERS]

SHAPE: smollm (SmolLM2-135M: hidden 576, 30 layers, 9/3 heads, 1536, vocab 49152), 1b
(Llama-3.2-1B: 2048, 16, 32/8, 8192, 128256), 3b (Llama-3.2-3B: 3072, 28, 24/8, head 128, 8192,
128256) or tiny (hidden 64, 2 layers: a quick check on lavapipe). LAYERS overrides the count.
Each bf16 weight has a random sign and mantissa and an exponent of 2^-5 or 2^-4 (numpy where
present, else the standard library). The texts are long enough for seq 2048.
"""
import json
import os
import random
import shutil
import struct
import sys

SHAPES = {
    # hidden, layers, heads, kv heads, head dim, intermediate, vocab
    "smollm": (576, 30, 9, 3, 64, 1536, 49152),
    "1b": (2048, 16, 32, 8, 64, 8192, 128256),
    "3b": (3072, 28, 24, 8, 128, 8192, 128256),
    "tiny": (64, 2, 4, 2, 16, 128, 512),
}
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                       "models", "llama-f32")


def _random_bf16(n, rng):
    """2n bytes: n bf16 values with random sign/mantissa and exponent byte 0x3D (2^-5, 2^-4)."""
    try:
        import numpy as np
        raw = np.random.default_rng(rng.getrandbits(32)).integers(0, 256, 2 * n, dtype=np.uint8)
        raw[1::2] = 0x3D | (raw[1::2] & 0x80)
        return raw.tobytes()
    except ImportError:
        hi = bytes(0x3D | (b & 0x80) for b in range(256))
        raw = bytearray(rng.randbytes(2 * n))
        raw[1::2] = bytes(raw[1::2]).translate(hi)
        return bytes(raw)


def write_model(d, shape, layers=None):
    H, L, NH, KV, D, inter, V = SHAPES[shape]
    L = layers or L
    os.makedirs(d, exist_ok=True)
    cfg = json.load(open(os.path.join(FIXTURE, "config.json")))
    cfg.update(hidden_size=H, num_hidden_layers=L, num_attention_heads=NH,
               num_key_value_heads=KV, head_dim=D, intermediate_size=inter, vocab_size=V,
               tie_word_embeddings=True, max_position_embeddings=4096, dtype="bfloat16",
               torch_dtype="bfloat16")
    rng = random.Random(0)
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (H,),
                       p + "post_attention_layernorm.weight": (H,),
                       p + "self_attn.q_proj.weight": (NH * D, H),
                       p + "self_attn.k_proj.weight": (KV * D, H),
                       p + "self_attn.v_proj.weight": (KV * D, H),
                       p + "self_attn.o_proj.weight": (H, NH * D),
                       p + "mlp.gate_proj.weight": (inter, H),
                       p + "mlp.up_proj.weight": (inter, H),
                       p + "mlp.down_proj.weight": (H, inter)})
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for k, s in shapes.items():
        n = s[0] * (s[1] if len(s) > 1 else 1)
        header[k] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + 2 * n]}
        off += 2 * n
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = os.path.join(d, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k, s in shapes.items():
            if len(s) == 1:
                f.write(b"\x80\x3f" * s[0])  # norms: 1.0
            else:
                for r0 in range(0, s[0], 4096):  # 4096 rows at a time
                    f.write(_random_bf16(min(4096, s[0] - r0) * s[1], rng))
    os.replace(tmp, os.path.join(d, "model.safetensors"))
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(FIXTURE, name)):
            shutil.copy(os.path.join(FIXTURE, name), os.path.join(d, name))


def write_data(d, n_train=48, n_valid=2, words_per_text=2400):
    os.makedirs(d, exist_ok=True)
    rr = random.Random(0)
    words = ("the a little dog cat girl boy sun tree ran saw happy big red ball played with and "
             "her his friend mom said went to park day one was very").split()
    for name, n in (("train.jsonl", n_train), ("valid.jsonl", n_valid)):
        with open(os.path.join(d, name), "w") as f:
            for _ in range(n):
                f.write(json.dumps({"text": " ".join(rr.choice(words)
                                                     for _ in range(words_per_text))}) + "\n")


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in SHAPES:
        print(__doc__, file=sys.stderr)
        return 2
    write_model(sys.argv[1], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
    write_data(sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
