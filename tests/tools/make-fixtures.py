#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Generate Lathe's reference fixtures (tests/data) with real HF tokenizers / transformers / torch.

Usage: python3 tests/tools/make-fixtures.py --out tests/data [--tinystories DIR]
       python3 tests/tools/make-fixtures.py --out tests/data --check [--tinystories DIR]

Generating needs torch, transformers, tokenizers, safetensors (--check needs none of them:
it recomputes the model references in plain Python). Everything runs on the CPU in float32
(TF32 off), seeded, so the numbers are exact references for the C implementation.
See tests/tools/README.md for what each output is.
"""
import argparse
import json
import math
import os
import platform
import random
import shutil
import struct
import sys
import unicodedata

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The libraries are imported by import_libs(), so that --check runs without them.
torch = safetensors = tokenizers = transformers = None
Tokenizer = Regex = models = normalizers = pre_tokenizers = decoders = processors = None
trainers = None
TF_MAJOR = 0
VERSIONS = {}


def import_libs():
    import torch as _torch
    import safetensors as _st
    import safetensors.torch  # noqa: F401
    import tokenizers as _tk
    import transformers as _tf
    g = globals()
    g.update(torch=_torch, safetensors=_st, tokenizers=_tk, transformers=_tf)
    for n in ("Tokenizer", "Regex", "models", "normalizers", "pre_tokenizers", "decoders",
              "processors", "trainers"):
        g[n] = getattr(_tk, n)
    _torch.set_default_dtype(_torch.float32)
    _torch.backends.cuda.matmul.allow_tf32 = False
    _torch.backends.cudnn.allow_tf32 = False
    _torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    g["TF_MAJOR"] = int(_tf.__version__.split(".")[0])
    VERSIONS.update({"python": platform.python_version(), "torch": _torch.__version__,
                     "transformers": _tf.__version__, "tokenizers": _tk.__version__,
                     "safetensors": _st.__version__})


def no_grad(fn):
    def wrapped(*a, **k):
        with torch.no_grad():
            return fn(*a, **k)
    return wrapped


LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


FAILURES = []


def log(*a):
    print(*a, flush=True)


def fail(what):
    import traceback
    traceback.print_exc()
    FAILURES.append(what)
    log("FAILED: " + what)


def write_json(path, obj, indent=1):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=indent)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# 1. Test strings and the training corpus

def make_texts():
    return [
        "Hello world",
        "The quick brown fox jumps over the lazy dog.",
        "  leading spaces",
        "trailing spaces   ",
        "multiple    spaces   between   words",
        "tab\tseparated\tvalues",
        "line one\nline two\n\n\nline five",
        "mixed  \t \n  whitespace\r\n end",
        "  \t ",
        "\n\n\n",
        "   ",
        " a",
        "I'm sure you're right, DON'T worry, we'Ll see. It's JOHN'S car; they'VE gone, I'd say.",
        "1234567 and 3.14159 and year 2024, 0x1F and 1,000,000",
        "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich",
        unicodedata.normalize("NFD", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich"),
        "e\u0301\u0302 a\u0308 combining marks",
        "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002"
        "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4 \ubb38\uc7a5",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 123",
        "I love \U0001F980 and \U0001F40D! \U0001F600\U0001F603",
        "family: \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 flags "
        "\U0001F1EB\U0001F1F7\U0001F1EF\U0001F1F5 skin \U0001F44D\U0001F3FD",
        "def foo(x):\n    if x > 0:\n        return x * 2\n    return None\n",
        "int main (void)\n{\n\tprintf (\"%d\\n\", 42);\n\treturn 0;\n}\n",
        "See https://example.com/path?query=1&b=two#frag or mailto:someone@example.org",
        "hello<|im_end|>world",
        "<s>Hello</s> world",
        "before <|endoftext|> after<|endoftext|>",
        "<|begin_of_text|>text<|eot_id|> <|end_of_text|>",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "",
        "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4,
        "ctrl \u0000 nul \u0007 bell \u001b esc",
        "private \ue000 use, \U0001D518\U0001D52B\U0001D526 math, runes \u16a0\u16c7\u16bb, "
        "braille \u2801\u2803\u2809",
        "a\u00a0b nbsp, \u2009thin and \u3000ideographic spaces",
        "Mr. O'Neil's 'quoted' text and \"double\" quotes",
        "!!!??? ... --- *** ###",
        "\ufb01 ligature, \u2460 circled, \u00b2 superscript, \u216b roman",
        "Arabic-Indic \u0663\u0664\u0665 and Devanagari \u0967\u0968\u0969 digits",
        "\u2581 already has metaspace \u2581\u2581 chars",
        "ALL CAPS SHOUTING and lowercase and MiXeD cAsE",
        "Once upon a time, there was a little girl named Lily.",
        "\r\nWindows\r\nline endings\r\n",
        "<unk> literal and < s > spaced",
    ]


PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl named Lily who loved to play in the park.",
    "She went to the store and bought some apples, bread and milk.",
    "I'm not sure what you mean, but I'll try to help you with that.",
    "They've been working on this project for three years now.",
    "We'll see what happens tomorrow when the results come in.",
    "It's a beautiful day outside, isn't it?",
    "The model was trained on 1024 GPUs for 30 days.",
    "In 2024, the population was about 8,100,000,000 people.",
    "Pi is approximately 3.14159 and e is about 2.71828.",
    "Call me at 555-0123 or write to info@example.com.",
    "Visit https://www.example.org/docs/index.html for more details.",
    "The caf\u00e9 on the corner serves cr\u00e8me br\u00fbl\u00e9e and na\u00efve tourists.",
    "Z\u00fcrich, M\u00fcnchen and K\u00f8benhavn are cities in Europe.",
    "\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u5427\u3002",
    "\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002",
    "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645 \u0648\u0631\u062d\u0645\u0629 "
    "\u0627\u0644\u0644\u0647",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?",
    "Emoji are fun \U0001F600 \U0001F389 \U0001F680 \u2764\ufe0f",
    "DON'T SHOUT! I CAN HEAR YOU JUST FINE.",
    "He said: \"Hello there,\" and then left.",
    "    indented line with four spaces",
    "\ttabbed line",
    "Line with trailing spaces   ",
    "Tom and his dog Max ran to the big tree. They were very happy.",
    "The sun was shining and the birds were singing in the sky.",
    "Mom said, \"Be careful!\" and Timmy nodded his head.",
]

CODE = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    print(i * i)\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "int x = 0;\nwhile (x < 100)\n  {\n    x += 3;\n  }\n",
    "#include <stdio.h>\n\nint main (void)\n{\n  return 0;\n}\n",
    "const char *s = \"hello\\n\";",
    "SELECT name, age FROM users WHERE age > 21;",
    "{\"key\": [1, 2, 3], \"other\": null}",
]


def make_corpus(texts):
    rnd = random.Random(1234)
    lines = []
    for _ in range(6):
        lines.extend(texts)
    for _ in range(10):
        lines.extend(PROSE)
    for _ in range(6):
        lines.extend(CODE)
    words = " ".join(PROSE).split()
    for _ in range(200):
        n = rnd.randint(3, 14)
        w = [rnd.choice(words) for _ in range(n)]
        if rnd.random() < 0.3:
            w.insert(rnd.randint(0, n), str(rnd.randint(0, 99999)))
        if rnd.random() < 0.2:
            w = [x.upper() for x in w]
        lines.append(" ".join(w))
    rnd.shuffle(lines)
    return lines


# ---------------------------------------------------------------------------------------------
# 2. Tokenizers

def bytelevel_trainer(vocab_size):
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                               special_tokens=[])


def special(content, normalized=False):
    return tokenizers.AddedToken(content, special=True, normalized=normalized,
                                 lstrip=False, rstrip=False, single_word=False)


def build_gpt2(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.train_from_iterator(corpus, bytelevel_trainer(383))
    tok.add_special_tokens([special("<|endoftext|>")])
    cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "add_prefix_space": False}
    return tok, cfg, None


def build_llama3(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, bytelevel_trainer(381))
    tok.add_special_tokens([special("<|begin_of_text|>"), special("<|end_of_text|>"),
                            special("<|eot_id|>")])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])])

    def edit(j):
        j["model"]["ignore_merges"] = True
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    return tok, cfg, edit


def build_qwen2(corpus):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(corpus, bytelevel_trainer(450))
    tok.add_special_tokens([special("<|endoftext|>"), special("<|im_start|>"),
                            special("<|im_end|>")])

    def edit(j):
        # Old merge spelling: "a b" strings instead of ["a", "b"] pairs.
        merges = j["model"]["merges"]
        out = []
        for m in merges:
            if isinstance(m, str):
                out.append(m)
            else:
                assert " " not in m[0] and " " not in m[1], m
                out.append(m[0] + " " + m[1])
        j["model"]["merges"] = out
    cfg = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "add_bos_token": False}
    return tok, cfg, edit


def build_digits(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(corpus, bytelevel_trainer(397))
    tok.add_special_tokens([special("<|endoftext|>"), special("<|im_start|>"),
                            special("<|im_end|>")])
    cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
           "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}
    return tok, cfg, None


def top_alphabet(corpus, n):
    """The n most frequent chars of the corpus after spaces become U+2581, ties by code point.

    Passed as the trainer's initial_alphabet with limit_alphabet=n: the trainer's own limit
    breaks count ties in hash order, which made the vocab differ from run to run."""
    counts = {}
    for line in corpus:
        for ch in "\u2581" + line.replace(" ", "\u2581"):
            counts[ch] = counts.get(ch, 0) + 1
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def build_spm_llama2(corpus):
    # Trained with a Metaspace split so merges stay inside words (like SentencePiece), then
    # rebuilt in the Llama-2 tokenizer.json layout: no pre-tokenizer, <unk> <s> </s> first,
    # then the 256 byte tokens <0x00>..<0xFF>, then the pieces.
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=340, min_frequency=2, show_progress=False,
                                  limit_alphabet=90, initial_alphabet=top_alphabet(corpus, 90),
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus, trainer)
    j = json.loads(tok.to_str())
    old = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in old:
        if t not in vocab:
            vocab[t] = len(vocab)
    j["model"]["vocab"] = vocab
    j["pre_tokenizer"] = None
    j["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in ("<unk>", "<s>", "</s>")]
    j["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = Tokenizer.from_str(json.dumps(j))
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "add_bos_token": True, "add_eos_token": False, "legacy": True}
    return tok, cfg, None


def build_metaspace(corpus):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=2, show_progress=False,
                                  limit_alphabet=80, initial_alphabet=top_alphabet(corpus, 80),
                                  special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    assert tok.token_to_id("<s>") == 1
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "add_bos_token": True, "add_eos_token": False, "legacy": False}
    return tok, cfg, None


TOKENIZERS = [("gpt2", build_gpt2), ("llama3", build_llama3), ("qwen2", build_qwen2),
              ("digits", build_digits), ("spm-llama2", build_spm_llama2),
              ("metaspace", build_metaspace)]


def tokenizer_config(tok, cfg):
    added = {}
    j = json.loads(tok.to_str())
    for a in j["added_tokens"]:
        added[str(a["id"])] = {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                 "single_word", "special")}
    out = {"added_tokens_decoder": added}
    out.update(cfg)
    out.update({"clean_up_tokenization_spaces": False, "model_max_length": 2048,
                "tokenizer_class": "PreTrainedTokenizerFast"})
    return out


def expected_for(tok, texts):
    ids, ids_ns, dec, dec_skip = [], [], [], []
    for t in texts:
        a = tok.encode(t, add_special_tokens=True).ids
        b = tok.encode(t, add_special_tokens=False).ids
        ids.append(a)
        ids_ns.append(b)
        dec.append(tok.decode(b, skip_special_tokens=False))
        dec_skip.append(tok.decode(a, skip_special_tokens=True))
    return {"ids": ids, "ids_no_special": ids_ns, "decoded": dec, "decoded_skip": dec_skip}


def write_expected(path, exp):
    # One list per line keeps the file small and diffable.
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        keys = ["ids", "ids_no_special", "decoded", "decoded_skip"]
        for ki, k in enumerate(keys):
            f.write(" %s: [\n" % json.dumps(k))
            for i, v in enumerate(exp[k]):
                f.write("  " + json.dumps(v, ensure_ascii=False, separators=(",", ":")))
                f.write(",\n" if i + 1 < len(exp[k]) else "\n")
            f.write(" ]" + (",\n" if ki + 1 < len(keys) else "\n"))
        f.write("}\n")


def make_tokenizers(out, texts, corpus):
    tdir = os.path.join(out, "tokenizers")
    os.makedirs(tdir, exist_ok=True)
    write_json(os.path.join(tdir, "texts.json"), texts)
    with open(os.path.join(tdir, "corpus.txt"), "w", encoding="utf-8") as f:
        for line in corpus:
            f.write(line.replace("\n", "\\n").replace("\r", "\\r") + "\n")
    result = {}
    for name, build in TOKENIZERS:
        try:
            result[name] = make_one_tokenizer(tdir, name, build, texts, corpus)
        except Exception:  # noqa: BLE001
            fail("tokenizer " + name)
    return result


def make_one_tokenizer(tdir, name, build, texts, corpus):
    if True:
        tok, cfg, edit = build(corpus)
        d = os.path.join(tdir, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "tokenizer.json")
        j = json.loads(tok.to_str())
        if edit:
            edit(j)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=2)
            f.write("\n")
        tok2 = Tokenizer.from_file(path)
        for t in texts:  # round trip through the file must not change anything
            for sp in (True, False):
                e1 = tok.encode(t, add_special_tokens=sp).ids
                e2 = tok2.encode(t, add_special_tokens=sp).ids
                if e1 != e2:
                    if not edit:
                        raise RuntimeError("tokenizer %s: round trip changed %r" % (name, t))
                    log("  %s: post-edit changed the ids of %r" % (name, t))
        tcfg = tokenizer_config(tok2, cfg)
        write_json(os.path.join(d, "tokenizer_config.json"), tcfg, indent=2)
        exp = expected_for(tok2, texts)
        write_expected(os.path.join(d, "expected.json"), exp)
        check_transformers_tokenizer(name, d, texts, exp)
        log("tokenizer %-11s vocab %d (with added %d), merges %d" % (
            name, tok2.get_vocab_size(False), tok2.get_vocab_size(True),
            len(j["model"]["merges"])))
        return (tok2, d)


def check_transformers_tokenizer(name, d, texts, exp):
    """Informational: does transformers' fast tokenizer give the same ids?"""
    try:
        from transformers import PreTrainedTokenizerFast
        ht = PreTrainedTokenizerFast.from_pretrained(d)
        bad = [i for i, t in enumerate(texts)
               if ht(t, add_special_tokens=True)["input_ids"] != exp["ids"][i]]
        log("  transformers tokenizer %s: %d/%d texts differ %s" % (
            name, len(bad), len(texts), bad[:8]))
    except Exception as e:  # noqa: BLE001
        log("  transformers tokenizer %s: could not check: %r" % (name, e))


# ---------------------------------------------------------------------------------------------
# 3. Eval texts

EVAL_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little girl named Lily. She loved to play outside.",
    "In 2024 the model was trained on 1,234 examples; the loss fell to 0.125.",
    "def add(a, b):\n    return a + b\n",
    "I'm sure you're right, DON'T worry, we'll see.",
    "Caf\u00e9 cr\u00e8me and \u4f60\u597d\u4e16\u754c \U0001F600 are all text too.",
    "  Indented text\twith tabs\nand newlines.\n",
    "Visit https://example.com/docs?id=42 for more.",
]

STORIES = [
    "Once upon a time, there was a little girl named Lily. She loved to play in the park with "
    "her red ball. One day, the ball rolled into a big puddle. Lily was sad. Her mom came and "
    "helped her get the ball. Lily smiled and said, \"Thank you, Mom!\"",
    "Tom had a small dog named Max. Max liked to run and jump. One day, Max saw a cat in the "
    "garden. He barked and ran after it. The cat climbed up a tree. Tom laughed and gave Max a "
    "big hug.",
    "There was a big red car. The car liked to go fast on the road. One day, it rained and the "
    "road was wet. The car went slow and was careful. It got home safe and was happy.",
    "Sue wanted to bake a cake with her dad. They got eggs, milk and flour. They mixed it all "
    "in a big bowl. The cake was yummy. Sue shared it with her friends.",
    "A little bird lived in a tall tree. Every morning, the bird sang a happy song. The other "
    "animals liked to listen. One day, the bird was sick and could not sing. The animals "
    "brought food and the bird felt better.",
    "Ben found a shiny rock in the sand. He showed it to his sister. \"Look, it is so pretty!\" "
    "he said. They put the rock in a box and kept it as a treasure.",
]


def write_jsonl(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        for t in lines:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# 4. Tiny models

def rope_kwargs(theta, scaling):
    if TF_MAJOR >= 5:
        rp = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            rp = dict(scaling)
            rp["rope_theta"] = theta
        return {"rope_parameters": rp}
    return {"rope_theta": theta, "rope_scaling": scaling}


LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def base_kwargs(vocab, bos, eos):
    return dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                initializer_range=0.2, rms_norm_eps=1e-5, bos_token_id=bos, eos_token_id=eos,
                tie_word_embeddings=False, hidden_act="silu")


@no_grad
def randomize(model, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
        elif name.endswith(".bias"):
            p.copy_(0.2 * torch.randn(p.shape, generator=g))


def round_up(n, m=8):
    return (n + m - 1) // m * m


def model_specs(toks):
    t_l3 = toks["llama3"][0]
    t_g2 = toks["gpt2"][0]
    l3 = (round_up(t_l3.get_vocab_size(True)), t_l3.token_to_id("<|begin_of_text|>"),
          t_l3.token_to_id("<|end_of_text|>"))
    g2 = (round_up(t_g2.get_vocab_size(True)), t_g2.token_to_id("<|endoftext|>"),
          t_g2.token_to_id("<|endoftext|>"))
    T = transformers
    specs = []

    def add(name, cls, cfgcls, tokname, vb, extra, seed, T_len=32, dtype=None, shard=None):
        kw = base_kwargs(*vb)
        kw.update(extra)
        specs.append(dict(name=name, cls=cls, cfgcls=cfgcls, tok=tokname, kw=kw, seed=seed,
                          T=T_len, dtype=dtype, shard=shard))

    add("llama-f32", T.LlamaForCausalLM, T.LlamaConfig, "llama3", l3,
        rope_kwargs(10000.0, None), 1)
    add("llama-bf16", T.LlamaForCausalLM, T.LlamaConfig, "llama3", l3,
        rope_kwargs(10000.0, None), 2, dtype=torch.bfloat16)
    add("llama-tied", T.LlamaForCausalLM, T.LlamaConfig, "llama3", l3,
        dict(rope_kwargs(10000.0, None), tie_word_embeddings=True, num_key_value_heads=4), 3)
    add("llama-rope3", T.LlamaForCausalLM, T.LlamaConfig, "llama3", l3,
        rope_kwargs(500000.0, LLAMA3_SCALING), 4, T_len=96)
    add("llama-sharded", T.LlamaForCausalLM, T.LlamaConfig, "llama3", l3,
        rope_kwargs(10000.0, None), 1, shard="150KB")
    add("mistral", T.MistralForCausalLM, T.MistralConfig, "llama3", l3,
        dict(rope_kwargs(10000.0, None), sliding_window=None), 5)
    add("qwen2", T.Qwen2ForCausalLM, T.Qwen2Config, "gpt2", g2,
        dict(rope_kwargs(1000000.0, None), use_sliding_window=False, rms_norm_eps=1e-6), 6)
    add("qwen3", T.Qwen3ForCausalLM, T.Qwen3Config, "gpt2", g2,
        dict(rope_kwargs(1000000.0, None), head_dim=32, use_sliding_window=False,
             attention_bias=False, rms_norm_eps=1e-6), 7)
    return specs


def load_f32(cls, d):
    m = cls.from_pretrained(d, attn_implementation="eager")
    return m.float().eval()


@no_grad
def eval_nll(model, tok, lines):
    total, count = 0.0, 0
    for t in lines:
        ids = tok.encode(t, add_special_tokens=True).ids[:2048]
        if len(ids) < 2:
            continue
        x = torch.tensor([ids], dtype=torch.long)
        logits = model(x).logits[0].float()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = x[0, 1:]
        nll = -lp.gather(1, tgt[:, None])[:, 0]
        total += float(nll.double().sum())
        count += len(ids) - 1
    mean = total / count
    return {"nll": mean, "ppl": math.exp(mean), "tokens": count}


@no_grad
def greedy(model, prompt_ids, n):
    ids = list(prompt_ids)
    new = []
    for _ in range(n):
        logits = model(torch.tensor([ids], dtype=torch.long)).logits[0, -1]
        nxt = int(torch.argmax(logits))
        new.append(nxt)
        ids.append(nxt)
    return new


def test_input(tok, T):
    rows = []
    for start in (0, 3):
        ids = []
        k = start
        while len(ids) < T:
            ids.extend(tok.encode(EVAL_LINES[k % len(EVAL_LINES)] + " " + PROSE[k % len(PROSE)],
                                  add_special_tokens=(len(ids) == 0)).ids)
            k += 1
        rows.append(ids[:T])
    return torch.tensor(rows, dtype=torch.long)


def record_model(model, d, tok, T, notes):
    x = test_input(tok, T)
    with torch.no_grad():
        logits = model(x).logits.float().contiguous()
    safetensors.torch.save_file({"input_ids": x.to(torch.int32).contiguous(), "logits": logits},
                                os.path.join(d, "reference.safetensors"),
                                metadata={"transformers_version": transformers.__version__})
    prompt = tok.encode("Once upon a time", add_special_tokens=True).ids
    ref = {"transformers_version": transformers.__version__, "versions": VERSIONS,
           "input_ids_shape": list(x.shape), "logits_shape": list(logits.shape),
           "eval": eval_nll(model, tok, EVAL_LINES),
           "eval_file": "eval/eval.jsonl",
           "greedy": {"prompt_ids": prompt, "new_ids": greedy(model, prompt, 16)},
           "notes": notes}
    write_json(os.path.join(d, "reference.json"), ref, indent=1)
    return logits, ref


def other_spelling(cfg):
    """Rewrite a config.json dict in the other transformers spelling (v4 <-> v5)."""
    c = dict(cfg)
    if "rope_parameters" in c or "dtype" in c:
        # v5 spelling -> v4: torch_dtype, rope_theta, rope_scaling
        if "dtype" in c:
            c["torch_dtype"] = c.pop("dtype")
        rp = c.pop("rope_parameters", None)
        if rp is not None:
            rp = dict(rp)
            c["rope_theta"] = rp.pop("rope_theta")
            c["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
        return c, "v4 (torch_dtype, rope_theta, rope_scaling)"
    if "torch_dtype" in c:
        c["dtype"] = c.pop("torch_dtype")
    rs = c.pop("rope_scaling", None)
    rp = dict(rs) if rs else {"rope_type": "default"}
    if "type" in rp and "rope_type" not in rp:
        rp["rope_type"] = rp.pop("type")
    rp["rope_theta"] = c.pop("rope_theta", 10000.0)
    c["rope_parameters"] = rp
    return c, "v5 (dtype, rope_parameters)"


def make_models(out, toks):
    mdir = os.path.join(out, "models")
    os.makedirs(mdir, exist_ok=True)
    summary = {}
    for s in model_specs(toks):
        try:
            make_one_model(mdir, s, toks, summary, out)
        except Exception:  # noqa: BLE001
            fail("model " + s["name"])
    try:
        make_t5keys(mdir, toks, summary)
    except Exception:  # noqa: BLE001
        fail("model llama-t5keys")


def make_one_model(mdir, s, toks, summary, out):
    if True:
        name = s["name"]
        d = os.path.join(mdir, name)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        torch.manual_seed(s["seed"])
        cfg = s["cfgcls"](**s["kw"])
        model = s["cls"](cfg).float().eval()
        randomize(model, s["seed"])
        if s["dtype"] is not None:
            model = model.to(s["dtype"])
        kw = {"safe_serialization": True}
        if s["shard"]:
            kw["max_shard_size"] = s["shard"]
        try:
            model.save_pretrained(d, **kw)
        except TypeError:
            kw.pop("safe_serialization")
            model.save_pretrained(d, **kw)
        tdir = toks[s["tok"]][1]
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tdir, f), os.path.join(d, f))
        loaded = load_f32(s["cls"], d)
        notes = {"tokenizer": "tokenizers/%s" % s["tok"]}
        if s["dtype"] is not None:
            notes["compute"] = "bf16 weights loaded, model.float(), f32 compute"
        # the saved model must reproduce the in-memory one
        x = test_input(toks[s["tok"]][0], s["T"])
        with torch.no_grad():
            a = model.float()(x).logits
            b = loaded(x).logits
        notes["max_abs_diff_vs_unsaved"] = float((a - b).abs().max())
        tok = toks[s["tok"]][0]
        logits, ref = record_model(loaded, d, tok, s["T"], notes)
        log("model %-13s files %s logits %s nll %.5f ppl %.3f greedy %s" % (
            name, sorted(os.listdir(d)), list(logits.shape), ref["eval"]["nll"],
            ref["eval"]["ppl"], ref["greedy"]["new_ids"][:6]))
        summary[name] = (d, logits, s)
        if name == "llama-rope3":
            # scaling must matter for this test sequence
            with open(os.path.join(d, "config.json")) as f:
                c = json.load(f)
            log("  rope3 config keys:", {k: c.get(k) for k in
                                         ("rope_scaling", "rope_parameters", "rope_theta")})
            plain = dict(c)
            for k in ("rope_scaling",):
                plain.pop(k, None)
            if "rope_parameters" in plain:
                plain["rope_parameters"] = {"rope_type": "default",
                                            "rope_theta": c["rope_parameters"]["rope_theta"]}
            pd = os.path.join(out, "_tmp_plain")
            shutil.copytree(d, pd)
            write_json(os.path.join(pd, "config.json"), plain, indent=2)
            pm = load_f32(s["cls"], pd)
            with torch.no_grad():
                diff = float((pm(x).logits - logits).abs().max())
            shutil.rmtree(pd)
            log("  rope3: max |logits(scaled) - logits(unscaled)| = %.4g" % diff)
            if diff < 1e-3:
                raise RuntimeError("llama3 rope scaling has no effect on the test sequence")
            ref["notes"]["max_abs_diff_vs_no_rope_scaling"] = diff
            write_json(os.path.join(d, "reference.json"), ref, indent=1)


def make_t5keys(mdir, toks, summary):
    # llama-t5keys: llama-rope3 with config.json in the other spelling
    src, src_logits, s = summary["llama-rope3"]
    d = os.path.join(mdir, "llama-t5keys")
    if os.path.isdir(d):
        shutil.rmtree(d)
    shutil.copytree(src, d)
    for f in ("reference.json", "reference.safetensors"):
        os.remove(os.path.join(d, f))
    with open(os.path.join(src, "config.json")) as f:
        c = json.load(f)
    c2, spelling = other_spelling(c)
    write_json(os.path.join(d, "config.json"), c2, indent=2)
    loaded = load_f32(s["cls"], d)
    tok = toks[s["tok"]][0]
    logits, ref = record_model(loaded, d, tok, s["T"],
                               {"tokenizer": "tokenizers/llama3",
                                "config_spelling": spelling, "copy_of": "llama-rope3"})
    diff = float((logits - src_logits).abs().max())
    ref["notes"]["max_abs_diff_vs_llama_rope3"] = diff
    write_json(os.path.join(d, "reference.json"), ref, indent=1)
    log("model llama-t5keys spelling %s, max diff vs rope3 %.3g" % (spelling, diff))
    if diff > 1e-5:
        raise RuntimeError("llama-t5keys does not load to the same logits as llama-rope3")


# ---------------------------------------------------------------------------------------------
# 5. TinyStories

def probe_skip_special(tok, tdir):
    """Informational: how decode(skip_special_tokens=True) treats this file's specials."""
    try:
        ids = tok.encode("Hi there.", add_special_tokens=True).ids + [2]
        log("  tinystories decode skip=True  %r" % tok.decode(ids, skip_special_tokens=True))
        log("  tinystories decode skip=False %r" % tok.decode(ids, skip_special_tokens=False))
        for i, a in tok.get_added_tokens_decoder().items():
            log("  added %d %r special=%s normalized=%s" % (i, a.content, a.special, a.normalized))
        j = json.loads(tok.to_str())
        for a in j["added_tokens"]:
            a["normalized"] = False
        t2 = Tokenizer.from_str(json.dumps(j))
        log("  with normalized=false: skip=True %r" % t2.decode(ids, skip_special_tokens=True))
        from transformers import PreTrainedTokenizerFast
        ht = PreTrainedTokenizerFast.from_pretrained(tdir)
        log("  transformers decode skip=True %r" % ht.decode(ids, skip_special_tokens=True))
        log("  transformers encode %s" % ht("Hi there.")["input_ids"])
    except Exception as e:  # noqa: BLE001
        log("  probe failed: %r" % e)


def make_tinystories(out, tdir, texts):
    tok = Tokenizer.from_file(os.path.join(tdir, "tokenizer.json"))
    d = os.path.join(out, "tokenizers", "tinystories")
    os.makedirs(d, exist_ok=True)
    write_expected(os.path.join(d, "expected.json"), expected_for(tok, texts))

    probe_skip_special(tok, tdir)

    from safetensors import safe_open
    model = transformers.LlamaForCausalLM.from_pretrained(tdir, attn_implementation="eager")
    model = model.float().eval()
    with safe_open(os.path.join(tdir, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        lm = f.get_tensor("lm_head.weight") if "lm_head.weight" in keys else None
    notes = {}
    if lm is not None:
        e = model.model.embed_tokens.weight
        same = bool(torch.equal(e, lm)) and bool(torch.equal(model.lm_head.weight, lm))
        notes["embed_tokens_equals_file_lm_head"] = same
        if not same:
            raise RuntimeError("tinystories: transformers did not tie embed_tokens to lm_head")
    ts = os.path.join(out, "tinystories")
    os.makedirs(ts, exist_ok=True)
    new = greedy(model, [1], 40)
    story = STORIES[0]
    ids = tok.encode(story, add_special_tokens=True).ids[:24]
    x = torch.tensor([ids], dtype=torch.long)
    with torch.no_grad():
        logits = model(x).logits.float().contiguous()
    safetensors.torch.save_file({"input_ids": x.to(torch.int32).contiguous(), "logits": logits},
                                os.path.join(ts, "reference.safetensors"),
                                metadata={"transformers_version": transformers.__version__})
    ref = {"transformers_version": transformers.__version__, "versions": VERSIONS,
           "greedy": {"prompt_ids": [1], "new_ids": new,
                      "text": tok.decode(new, skip_special_tokens=True),
                      "text_with_special": tok.decode([1] + new, skip_special_tokens=False)},
           "eval": eval_nll(model, tok, STORIES), "eval_file": "eval/stories.jsonl",
           "logits": {"story_index": 0, "input_ids": ids, "shape": list(logits.shape)},
           "notes": notes}
    write_json(os.path.join(ts, "reference.json"), ref, indent=1)
    log("tinystories greedy: %r" % ref["greedy"]["text"])
    log("tinystories eval: %s" % ref["eval"])
    if not ref["greedy"]["text"].startswith("Once upon a time"):
        log("WARNING: tinystories greedy text does not start with 'Once upon a time'")


# ---------------------------------------------------------------------------------------------
# 6. Self-check without torch: recompute the reference logits and greedy tokens in plain
# Python (float64) from the safetensors files, following FORMATS.md section 6. This checks the
# fixtures and the spec the C forward pass follows against each other.

def st_load(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    data = b[8 + n:]
    out = {}
    for k, v in h.items():
        a, e = v["data_offsets"]
        raw = data[a:e]
        if v["dtype"] == "F32":
            vals = list(struct.unpack("<%df" % (len(raw) // 4), raw))
        elif v["dtype"] == "BF16":
            u = struct.unpack("<%dH" % (len(raw) // 2), raw)
            vals = list(struct.unpack("<%df" % len(u),
                                      struct.pack("<%dI" % len(u), *[x << 16 for x in u])))
        elif v["dtype"] == "I32":
            vals = list(struct.unpack("<%di" % (len(raw) // 4), raw))
        else:
            raise ValueError("%s: dtype %s" % (k, v["dtype"]))
        shp = v["shape"]
        if len(shp) == 2:
            vals = [vals[i * shp[1]:(i + 1) * shp[1]] for i in range(shp[0])]
        out[k] = (shp, vals)
    return out


def py_load_model(d):
    w = {}
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        for fn in sorted(set(wm.values())):
            w.update(st_load(os.path.join(d, fn)))
        if set(wm) != set(w):
            raise ValueError("%s: index and shards name different tensors" % d)
    else:
        w = st_load(os.path.join(d, "model.safetensors"))
    return {k: v[1] for k, v in w.items()}


def _matvec(w, x, b=None):
    r = [sum(wi * xi for wi, xi in zip(row, x)) for row in w]
    return [a + c for a, c in zip(r, b)] if b else r


def _rms(x, w, eps):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * s * g for v, g in zip(x, w)]


def _f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def _inv_freqs(cfg, hd):
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    sc = cfg.get("rope_scaling")
    if not sc and rp.get("rope_type", "default") != "default":
        sc = rp
    inv = [1.0 / theta ** (2 * i / hd) for i in range(hd // 2)]
    if sc and (sc.get("rope_type") or sc.get("type")) == "llama3":
        f, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
        old = sc["original_max_position_embeddings"]
        out = []
        for v in inv:
            wl = 2 * math.pi / v
            if wl < old / hi:
                out.append(v)
            elif wl > old / lo:
                out.append(v / f)
            else:
                s = (old / wl - lo) / (hi - lo)
                out.append((1 - s) * v / f + s * v)
        inv = out
    return [_f32(v) for v in inv]


def _rope(x, pos, inv):
    h = len(x) // 2
    out = list(x)
    for i in range(h):
        a = _f32(pos * inv[i])
        c, s = math.cos(a), math.sin(a)
        out[i] = x[i] * c - x[i + h] * s
        out[i + h] = x[i + h] * c + x[i] * s
    return out


def py_forward(cfg, w, ids):
    hs, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or hs // nh
    eps = cfg["rms_norm_eps"]
    inv = _inv_freqs(cfg, hd)
    emb = w.get("model.embed_tokens.weight") or w["lm_head.weight"]
    head = w.get("lm_head.weight") or w["model.embed_tokens.weight"]
    xs = [list(emb[t]) for t in ids]
    n = len(ids)
    for layer in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % layer

        def g(name):
            return w.get(p + name)
        qs, ks, vs = [], [], []
        for t in range(n):
            xn = _rms(xs[t], g("input_layernorm.weight"), eps)
            q = _matvec(g("self_attn.q_proj.weight"), xn, g("self_attn.q_proj.bias"))
            k = _matvec(g("self_attn.k_proj.weight"), xn, g("self_attn.k_proj.bias"))
            v = _matvec(g("self_attn.v_proj.weight"), xn, g("self_attn.v_proj.bias"))
            qh = [q[h * hd:(h + 1) * hd] for h in range(nh)]
            kh = [k[h * hd:(h + 1) * hd] for h in range(nkv)]
            if g("self_attn.q_norm.weight"):
                qh = [_rms(a, g("self_attn.q_norm.weight"), eps) for a in qh]
                kh = [_rms(a, g("self_attn.k_norm.weight"), eps) for a in kh]
            qs.append([_rope(a, t, inv) for a in qh])
            ks.append([_rope(a, t, inv) for a in kh])
            vs.append([v[h * hd:(h + 1) * hd] for h in range(nkv)])
        rep, scale = nh // nkv, hd ** -0.5
        for t in range(n):
            att = []
            for h in range(nh):
                kv = h // rep
                sc = [sum(a * b for a, b in zip(qs[t][h], ks[j][kv])) * scale
                      for j in range(t + 1)]
                m = max(sc)
                e = [math.exp(z - m) for z in sc]
                z = sum(e)
                o = [0.0] * hd
                for j in range(t + 1):
                    pj = e[j] / z
                    for d in range(hd):
                        o[d] += pj * vs[j][kv][d]
                att.extend(o)
            ao = _matvec(g("self_attn.o_proj.weight"), att, g("self_attn.o_proj.bias"))
            xs[t] = [a + b for a, b in zip(xs[t], ao)]
            xn = _rms(xs[t], g("post_attention_layernorm.weight"), eps)
            gate = _matvec(g("mlp.gate_proj.weight"), xn)
            up = _matvec(g("mlp.up_proj.weight"), xn)
            mid = [a / (1 + math.exp(-a)) * b for a, b in zip(gate, up)]
            xs[t] = [a + b for a, b in zip(xs[t], _matvec(g("mlp.down_proj.weight"), mid))]
    return [_matvec(head, _rms(x, w["model.norm.weight"], eps)) for x in xs]


def py_check(model_dir, ref_dir, tol=1e-4):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(ref_dir, "reference.json")) as f:
        rj = json.load(f)
    w = py_load_model(model_dir)
    ref = st_load(os.path.join(ref_dir, "reference.safetensors"))
    (ishape, ids), (lshape, logits) = ref["input_ids"], ref["logits"]
    rows, n = ishape
    nv = lshape[2]
    worst = 0.0
    for r in range(rows):
        out = py_forward(cfg, w, ids[r])
        for t in range(n):
            base = (r * n + t) * nv
            for v in range(nv):
                worst = max(worst, abs(out[t][v] - logits[base + v]))
    p, new = rj["greedy"]["prompt_ids"], rj["greedy"]["new_ids"]
    out = py_forward(cfg, w, p + new[:-1])
    am = [max(range(len(o)), key=o.__getitem__) for o in out[len(p) - 1:]]
    ok = worst <= tol and am == new
    log("check %-28s logits max|diff| %.3g, greedy %s%s" % (
        os.path.basename(os.path.normpath(ref_dir)), worst,
        "same" if am == new else "DIFFERENT", "" if ok else "  <- FAILED"))
    if not ok:
        FAILURES.append("check " + ref_dir)


def check_all(out, tinystories):
    mdir = os.path.join(out, "models")
    for name in sorted(os.listdir(mdir)) if os.path.isdir(mdir) else []:
        try:
            py_check(os.path.join(mdir, name), os.path.join(mdir, name))
        except Exception:  # noqa: BLE001
            fail("check " + name)
    ts = os.path.join(out, "tinystories")
    if tinystories and os.path.isdir(ts):
        try:
            py_check(tinystories, ts)
        except Exception:  # noqa: BLE001
            fail("check tinystories")


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (tests/data)")
    ap.add_argument("--tinystories", default=None,
                    help="folder of the TinyStories-656K model (../shared/models/tinystories-656k)")
    ap.add_argument("--skip-models", action="store_true", help="leave out the tiny models")
    ap.add_argument("--check", action="store_true",
                    help="only re-check existing fixtures in plain Python (needs no torch)")
    args = ap.parse_args()
    out = args.out
    if not args.check:
        import_libs()
        log("versions:", json.dumps(VERSIONS))
        os.makedirs(out, exist_ok=True)
        texts = make_texts()
        corpus = make_corpus(texts)
        os.makedirs(os.path.join(out, "eval"), exist_ok=True)
        write_jsonl(os.path.join(out, "eval", "eval.jsonl"), EVAL_LINES)
        write_jsonl(os.path.join(out, "eval", "stories.jsonl"), STORIES)
        toks = make_tokenizers(out, texts, corpus)
        if args.tinystories:
            try:
                make_tinystories(out, args.tinystories, texts)
            except Exception:  # noqa: BLE001
                fail("tinystories")
        if not args.skip_models:
            make_models(out, toks)
        write_json(os.path.join(out, "versions.json"), VERSIONS, indent=1)
    check_all(out, args.tinystories)
    if FAILURES:
        log("FAILURES: " + ", ".join(FAILURES))
        sys.exit(1)
    log("done")


if __name__ == "__main__":
    main()
