#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reference fixtures for test-gguf-mix: llama-quantize's tensor types and bytes.

For three small llama models whose weights come from a fixed LCG (test-gguf-mix.c writes the
same models bit for bit), this script
  1. writes each model as an HF folder (safetensors f32, config.json, the llama3 fixture
     tokenizer) and has Lathe convert it to an f32 GGUF (`lathe fuse --gguf-type f32`);
  2. writes a synthetic importance matrix in llama-imatrix's GGUF format (same LCG);
  3. runs llama-quantize on that f32 GGUF for every file type Lathe offers, without and with
     `--imatrix`, and records each output tensor's ggml type and the SHA-256 of its bytes
     (types only for the 16-layer "deep" model, which exercises the per-layer rules).
The result is tests/data/gguf-mix/expected.json. Only the Python standard library is used.

    python3 tests/tools/make-gguf-mix-fixtures.py --lathe _build/src/cli/lathe \
        --llama-bin /tmp/llama/build/bin --out tests/data/gguf-mix/expected.json \
        --tinystories ../shared/models/tinystories-656k

With --tinystories it also runs llama-imatrix on tests/data/stories/train.jsonl's text (chunks of
128 tokens), keeps that file as tests/data/gguf-mix/tinystories.imatrix, and records
llama-quantize's output with it for four file types (cases tinystories/TYPE/llama-imatrix).
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

MODELS = {
    # name: hidden C, intermediate I, layers L, heads H, kv heads KVH, vocab V, tied, bytes?
    "wide": dict(C=256, I=512, L=2, H=4, KVH=1, V=384, tied=False, bytes=True),
    "narrow": dict(C=64, I=96, L=2, H=4, KVH=2, V=384, tied=True, bytes=True),
    "deep": dict(C=256, I=256, L=16, H=4, KVH=2, V=384, tied=True, bytes=False),
}
FTYPES = ["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m",
          "q3_k_s", "q3_k_l", "q2_k", "q2_k_s", "q5_0", "q5_1", "q4_0", "q4_1"]
# ggml type id: (block size, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
        8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
        14: (256, 210)}
M64 = (1 << 64) - 1


def f32(x):
    """x rounded to float32 (x is an exactly computed double)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


class Lcg:
    """test-gguf-input.c's random_tensor generator: u in [0, 1) with 24 bits."""

    def __init__(self, seed):
        self.s = seed

    def u(self):
        self.s = (self.s * 6364136223846793005 + 1442695040888963407) & M64
        return (self.s >> 40) / float(1 << 24)


def matrix(lcg, rows, cols, scale):
    # x = scale · (u − 0.5) · 2^−(row % 4), ×8 on every 61st element: all exact in f32
    out = []
    for r in range(rows):
        rowmul = 2.0 ** -(r % 4)
        for c in range(cols):
            v = scale * (lcg.u() - 0.5) * rowmul
            if (r * cols + c) % 61 == 0:
                v *= 8.0
            out.append(v)
    return out


def norm(lcg, n):
    return [f32(1.0 + (lcg.u() - 0.5) * 0.125) for _ in range(n)]


def model_tensors(m):
    """(HF name, shape, values) in the generation order shared with test-gguf-mix.c."""
    C, I, L, H, KVH, V = m["C"], m["I"], m["L"], m["H"], m["KVH"], m["V"]
    D = C // H
    lcg = Lcg(7)
    ts = [("model.embed_tokens.weight", [V, C], matrix(lcg, V, C, 1.0))]
    if not m["tied"]:
        ts.append(("lm_head.weight", [V, C], matrix(lcg, V, C, 0.125)))
    ts.append(("model.norm.weight", [C], norm(lcg, C)))
    for l in range(L):
        for n, r, c in (("self_attn.q_proj", H * D, C), ("self_attn.k_proj", KVH * D, C),
                        ("self_attn.v_proj", KVH * D, C), ("self_attn.o_proj", C, H * D),
                        ("mlp.gate_proj", I, C), ("mlp.up_proj", I, C),
                        ("mlp.down_proj", C, I)):
            ts.append((f"model.layers.{l}.{n}.weight", [r, c], matrix(lcg, r, c, 0.125)))
        ts.append((f"model.layers.{l}.input_layernorm.weight", [C], norm(lcg, C)))
        ts.append((f"model.layers.{l}.post_attention_layernorm.weight", [C], norm(lcg, C)))
    return ts


def imatrix_entries(m):
    """(GGUF name, sums, count): sums = u·4 + 1/16, count 100, same LCG order as the test."""
    C, I, L = m["C"], m["I"], m["L"]
    lcg = Lcg(99)
    out = []
    for l in range(L):
        for g, n in (("attn_q", C), ("attn_k", C), ("attn_v", C), ("attn_output", C),
                     ("ffn_gate", C), ("ffn_up", C), ("ffn_down", I)):
            out.append((f"blk.{l}.{g}.weight", [f32(lcg.u() * 4 + 0.0625) for _ in range(n)]))
    last = "token_embd.weight" if m["tied"] else "output.weight"
    out.append((last, [f32(lcg.u() * 4 + 0.0625) for _ in range(C)]))
    return [(n, s, 100) for n, s in out]


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, shape, vals in tensors:
        b = struct.pack(f"<{len(vals)}f", *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def write_model(dirpath, m, repo):
    os.makedirs(dirpath, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": m["C"], "intermediate_size": m["I"],
           "num_hidden_layers": m["L"], "num_attention_heads": m["H"],
           "num_key_value_heads": m["KVH"], "head_dim": m["C"] // m["H"],
           "vocab_size": m["V"], "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": m["tied"], "hidden_act": "silu",
           "torch_dtype": "float32"}
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(cfg, f)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(repo, "tests/data/tokenizers/llama3", fn), dirpath)
    write_safetensors(os.path.join(dirpath, "model.safetensors"), model_tensors(m))


# ---- GGUF (read; and the imatrix writer) ----

def gguf_str(b):
    return struct.pack("<Q", len(b)) + b


def write_imatrix(path, entries):
    kv = [(b"general.type", 8, gguf_str(b"imatrix")),
          (b"imatrix.datasets", 9, struct.pack("<IQ", 8, 1) + gguf_str(b"synthetic")),
          (b"imatrix.chunk_count", 4, struct.pack("<I", 1)),
          (b"imatrix.chunk_size", 4, struct.pack("<I", 100))]
    infos, datas, off = [], [], 0
    for name, sums, count in entries:
        for suffix, ne, vals in ((b".in_sum2", (len(sums), 1), sums),
                                 (b".counts", (1, 1), [float(count)])):
            d = struct.pack(f"<{len(vals)}f", *vals)
            infos.append(gguf_str(name.encode() + suffix) + struct.pack("<I", 2)
                         + struct.pack("<QQ", *ne) + struct.pack("<IQ", 0, off))
            d += b"\0" * (-len(d) % 32)
            datas.append(d)
            off += len(d)
    out = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(kv))
    for k, t, v in kv:
        out += gguf_str(k) + struct.pack("<I", t) + v
    out += b"".join(infos)
    out += b"\0" * (-len(out) % 32)
    with open(path, "wb") as f:
        f.write(out + b"".join(datas))


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}


def read_gguf(path):
    """{name: (type, bytes)} and the key/values."""
    b = open(path, "rb").read()
    p = 4
    ver, nt, nkv = struct.unpack_from("<IQQ", b, p)
    p += 20

    def rstr():
        nonlocal p
        (n,) = struct.unpack_from("<Q", b, p)
        s = b[p + 8:p + 8 + n]
        p += 8 + n
        return s.decode()

    def rval(t):
        nonlocal p
        if t == 8:
            return rstr()
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, p)
            p += 12
            return [rval(et) for _ in range(n)]
        fmt = SCALAR[t]
        (v,) = struct.unpack_from(fmt, b, p)
        p += struct.calcsize(fmt)
        return v

    kv = {}
    for _ in range(nkv):
        k = rstr()
        (t,) = struct.unpack_from("<I", b, p)
        p += 4
        kv[k] = rval(t)
    infos = []
    for _ in range(nt):
        name = rstr()
        (nd,) = struct.unpack_from("<I", b, p)
        p += 4
        ne = struct.unpack_from(f"<{nd}Q", b, p)
        p += 8 * nd
        t, off = struct.unpack_from("<IQ", b, p)
        p += 12
        infos.append((name, ne, t, off))
    align = kv.get("general.alignment", 32)
    base = p + (-p % align)
    out = {}
    for name, ne, t, off in infos:
        blk, size = GGML[t]
        rows = 1
        for x in ne[1:]:
            rows *= x
        n = rows * (ne[0] // blk) * size
        out[name] = (t, b[base + off:base + off + n])
    return out, kv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lathe", required=True, help="the lathe CLI (built)")
    ap.add_argument("--llama-bin", required=True, help="folder with llama-quantize")
    ap.add_argument("--out", required=True, help="expected.json to write")
    ap.add_argument("--keep", help="keep the work folder here")
    ap.add_argument("--tinystories", help="TinyStories-656K folder: also run llama-imatrix on "
                    "tests/data/stories/train.jsonl, save its file beside --out "
                    "(tinystories.imatrix) and quantize with it")
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    work = a.keep or tempfile.mkdtemp(prefix="gguf-mix-")
    os.makedirs(work, exist_ok=True)
    quantize = os.path.join(a.llama_bin, "llama-quantize")
    env = dict(os.environ, LD_LIBRARY_PATH=a.llama_bin)
    result = {"generator": "tests/tools/make-gguf-mix-fixtures.py",
              "models": {k: {x: v for x, v in m.items() if x != "bytes"}
                         for k, m in MODELS.items()},
              "cases": {}}
    for mname, m in MODELS.items():
        d = os.path.join(work, mname)
        write_model(d, m, repo)
        src = os.path.join(work, mname + "-f32.gguf")
        subprocess.run([a.lathe, "fuse", "--model", d, "--gguf-path", src, "--gguf-type", "f32",
                        "-f"], check=True, stdout=subprocess.DEVNULL)
        imat = os.path.join(work, mname + ".imatrix")
        write_imatrix(imat, imatrix_entries(m))
        for ft in FTYPES:
            for with_im in (False, True):
                if ft == "q2_k_s" and not with_im:
                    continue  # llama-quantize requires an imatrix for it
                out = os.path.join(work, f"{mname}-{ft}-{int(with_im)}.gguf")
                cmd = [quantize] + (["--imatrix", imat] if with_im else []) + [
                    src, out, ft.upper(), "1"]
                r = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
                tensors, kv = read_gguf(out)
                case = {"file_type": kv.get("general.file_type"), "tensors": {}}
                for name in sorted(tensors):
                    t, data = tensors[name]
                    case["tensors"][name] = ([t, hashlib.sha256(data).hexdigest()[:16]]
                                             if m["bytes"] else t)
                key = f"{mname}/{ft}/{'imatrix' if with_im else 'plain'}"
                result["cases"][key] = case
                os.remove(out)
        print(f"{mname}: {sum(1 for k in result['cases'] if k.startswith(mname + '/'))} cases")
    if a.tinystories:
        # a real llama-imatrix file: Lathe must read it and give llama-quantize's bytes
        src = os.path.join(work, "tinystories-f32.gguf")
        subprocess.run([a.lathe, "fuse", "--model", a.tinystories, "--gguf-path", src,
                        "--gguf-type", "f32", "-f"], check=True, stdout=subprocess.DEVNULL)
        txt = os.path.join(work, "train.txt")
        with open(os.path.join(repo, "tests/data/stories/train.jsonl")) as f, open(txt, "w") as o:
            o.write("\n".join(json.loads(l)["text"] for l in f if l.strip()))
        imat = os.path.join(os.path.dirname(os.path.abspath(a.out)), "tinystories.imatrix")
        subprocess.run([os.path.join(a.llama_bin, "llama-imatrix"), "-m", src, "-f", txt, "-c",
                        "128", "-b", "128", "-t", "1", "-o", imat], env=env, check=True,
                       capture_output=True)
        for ft in ("q4_k_m", "q4_0", "q5_1", "q3_k_m"):
            out = os.path.join(work, f"tinystories-{ft}.gguf")
            subprocess.run([quantize, "--imatrix", imat, src, out, ft.upper(), "1"], env=env,
                           check=True, capture_output=True)
            tensors, kv = read_gguf(out)
            result["cases"][f"tinystories/{ft}/llama-imatrix"] = {
                "file_type": kv.get("general.file_type"),
                "tensors": {n: [t, hashlib.sha256(d).hexdigest()[:16]]
                            for n, (t, d) in sorted(tensors.items())}}
        print("tinystories: 4 cases with llama-imatrix's file")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=0, sort_keys=True)
        f.write("\n")
    if not a.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
