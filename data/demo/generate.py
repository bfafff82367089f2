#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes the demo's inputs (Python standard library only, deterministic):

  corpus/train.jsonl, corpus/valid.jsonl   short stories from the templates below
  init/                                    a tiny Llama (config.json, random-init
                                           model.safetensors, a byte-level BPE tokenizer.json
                                           trained on the corpus, tokenizer_config.json)
  sft/{train,valid}.jsonl                  prompt/completion pairs
  preference/{train,valid}.jsonl           prompt/chosen/rejected triples

`make demo-model` then trains init/ from scratch with `lathe train --train-type full` and
assembles model/ from the result.  Usage: generate.py OUT_DIR
"""
import json
import math
import os
import random
import re
import struct
import sys
from collections import Counter

SEED = 1234
VOCAB = 512          # 256 bytes + merges + 1 special
HIDDEN, INTER, LAYERS, HEADS, KV_HEADS = 64, 192, 2, 4, 2

NAMES = ["Tom", "Lily", "Max", "Mia", "Ben", "Anna", "Sam", "Zoe"]
ANIMALS = ["cat", "dog", "bird", "fish", "frog", "duck", "fox", "bear"]
THINGS = ["ball", "kite", "box", "hat", "cake", "book", "boat", "drum"]
COLOURS = ["red", "blue", "green", "yellow", "big", "small", "old", "new"]
PLACES = ["park", "garden", "river", "house", "forest", "beach", "school", "farm"]
FEELINGS = ["happy", "sad", "tired", "excited", "scared", "proud"]


def story(rng):
    n, a, t = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(THINGS)
    c, p, f = rng.choice(COLOURS), rng.choice(PLACES), rng.choice(FEELINGS)
    friend = rng.choice([x for x in NAMES if x != n])
    parts = [
        f"Once upon a time, {n} had a {c} {t}.",
        f"One day, {n} went to the {p} with a {a}.",
        f"The {a} saw the {t} and wanted to play.",
        f"{n} felt {f}, so {n} asked {friend} for help.",
        f"{friend} found the {t} near the {p}.",
        f"They played with the {c} {t} all day.",
        f"At the end, {n} and the {a} were happy.",
    ]
    k = rng.randint(4, len(parts))
    return " ".join(parts[:k])


# GPT-2's byte to unicode table.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# GPT-2's pre-tokenizer on ASCII text (\p{L} = letters, \p{N} = digits here).
PRE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def train_bpe(texts, n_merges):
    b2u = bytes_to_unicode()
    words = Counter()
    for t in texts:
        for w in PRE.findall(t):
            words[tuple(b2u[b] for b in w.encode("utf-8"))] += 1
    merges = []
    words = dict(words)
    for _ in range(n_merges):
        pairs = Counter()
        for w, cnt in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += cnt
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        new = {}
        for w, cnt in words.items():
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + cnt
        words = new
    vocab = {}
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


def tokenizer_json(vocab, merges, eos_id):
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eos_id, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def write_safetensors(path, tensors):
    """tensors: list of (name, shape, list of floats), written as F32."""
    header, offset, blobs = {}, 0, []
    for name, shape, values in tensors:
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def random_init(rng, vocab_size):
    C, I, D = HIDDEN, INTER, HIDDEN // HEADS
    std = 0.02

    def normal(n):
        return [rng.gauss(0.0, std) for _ in range(n)]

    t = [("model.embed_tokens.weight", [vocab_size, C], normal(vocab_size * C)),
         ("model.norm.weight", [C], [1.0] * C)]
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        t += [
            (p + "input_layernorm.weight", [C], [1.0] * C),
            (p + "post_attention_layernorm.weight", [C], [1.0] * C),
            (p + "self_attn.q_proj.weight", [HEADS * D, C], normal(HEADS * D * C)),
            (p + "self_attn.k_proj.weight", [KV_HEADS * D, C], normal(KV_HEADS * D * C)),
            (p + "self_attn.v_proj.weight", [KV_HEADS * D, C], normal(KV_HEADS * D * C)),
            (p + "self_attn.o_proj.weight", [C, HEADS * D], normal(C * HEADS * D)),
            (p + "mlp.gate_proj.weight", [I, C], normal(I * C)),
            (p + "mlp.up_proj.weight", [I, C], normal(I * C)),
            (p + "mlp.down_proj.weight", [C, I], normal(C * I)),
        ]
    return t


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    rng = random.Random(SEED)
    stories = [story(rng) for _ in range(1200)]
    write_jsonl(os.path.join(out, "corpus", "train.jsonl"), [{"text": s} for s in stories[:1100]])
    write_jsonl(os.path.join(out, "corpus", "valid.jsonl"), [{"text": s} for s in stories[1100:]])

    vocab, merges = train_bpe(stories, VOCAB - 257)
    eos = len(vocab)
    vocab["<|endoftext|>"] = eos
    init = os.path.join(out, "init")
    os.makedirs(init, exist_ok=True)
    with open(os.path.join(init, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(vocab, merges, eos), f, ensure_ascii=False)
    with open(os.path.join(init, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
                   "bos_token": None, "add_bos_token": False,
                   "model_max_length": 512}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "head_dim": HIDDEN // HEADS, "vocab_size": len(vocab),
        "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": True, "torch_dtype": "float32",
        "bos_token_id": None, "eos_token_id": eos, "attention_bias": False, "mlp_bias": False,
    }
    with open(os.path.join(init, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(init, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": eos, "do_sample": False}, f, indent=2)
    write_safetensors(os.path.join(init, "model.safetensors"), random_init(rng, len(vocab)))

    # SFT: questions about a story, answered from it.
    sft = []
    for _ in range(240):
        n, t, c, p = rng.choice(NAMES), rng.choice(THINGS), rng.choice(COLOURS), rng.choice(PLACES)
        kind = rng.randrange(3)
        if kind == 0:
            sft.append({"prompt": f"{n} had a {c} {t}. What did {n} have?\n",
                        "completion": f"{n} had a {c} {t}."})
        elif kind == 1:
            sft.append({"prompt": f"{n} went to the {p}. Where did {n} go?\n",
                        "completion": f"{n} went to the {p}."})
        else:
            sft.append({"prompt": f"Tell a short story about {n} and a {t}.\n",
                        "completion": f"Once upon a time, {n} had a {c} {t}. "
                                      f"{n} played with it in the {p} and was happy."})
    write_jsonl(os.path.join(out, "sft", "train.jsonl"), sft[:200])
    write_jsonl(os.path.join(out, "sft", "valid.jsonl"), sft[200:])

    # Preferences: the kind ending is chosen over the unkind one.
    pref = []
    for _ in range(240):
        n, a, t = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(THINGS)
        friend = rng.choice([x for x in NAMES if x != n])
        pref.append({"prompt": f"{n} lost the {t}. What did {friend} do?\n",
                     "chosen": f"{friend} helped {n} find the {t}, and they played together.",
                     "rejected": f"{friend} took the {t} and ran away from the {a}."})
    write_jsonl(os.path.join(out, "preference", "train.jsonl"), pref[:200])
    write_jsonl(os.path.join(out, "preference", "valid.jsonl"), pref[200:])


if __name__ == "__main__":
    main()
