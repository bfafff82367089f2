#!/usr/bin/env python3
"""GPTQ reference for tests/core/test-calibrate.c (issue 13).

GPTQ written from the paper (Frantar et al. 2022, Algorithm 1; dead columns, damping and the
block layout as AutoGPTQ), in PyTorch, float32 on the CPU, with the group-wise quantizers of
Lathe's src/core/lt-quant.h reproduced exactly (MLX affine; symmetric). A group's parameters
come from its current, error-updated columns when the group starts; the block size is rounded
up to a multiple of the group size (lt-calibrate.h). Affine dequantization is
fmaf (scale, q, bias), emulated in float64 (the product is exact there).

The fixture layer: W (64, 128) random normal; X (256, 128) correlated normal rows with three
outlier channels (x25) and one dead channel (all zero). Writes OUT/gptq-fixture.safetensors:
W, X and per case C: C.codes (U8), C.deq, C.scales, C.biases (F32); one metadata entry,
"fixture", a JSON object {"source", "cases": {C: {options, err_gptq}}} with
err_gptq = ||X (What - W)^T||^2 / (n * rows) in float64 (one key: the safetensors library
writes several in hash order, and test-safetensors rewrites every fixture byte for byte).

  python3 make-gptq-fixture.py OUT          PyTorch + safetensors (on the device machine)
  python3 make-gptq-fixture.py --check DIR  NumPy only (skipped without it): runs the same
                                            reference code on NumPy arrays from DIR's W and X,
                                            compares codes and errors, prints RTN's error too
The device call sends the part above the "--check" marker (comments and docstrings stripped by
ast.unparse, raw deflate, base85; the command is limited to 2000 characters) and calls make(OUT).
"""
import json
import struct
import sys

CASES = [("a4g32", "affine", 4, 32, 128), ("a3g64b32", "affine", 3, 64, 32),
         ("a2g64", "affine", 2, 64, 128), ("s4g32", "symmetric", 4, 32, 128)]
DAMP = 0.01


def f32(x):  # a python float rounded to float32
    return struct.unpack("f", struct.pack("f", x))[0]


def qparams(t, wg, mode, bits):  # lt-quant.h's group rule: wg (rows, g) -> scale, bias (rows)
    if mode == "affine":
        mx, mn = wg.amax(1), wg.amin(1)
        mask = mn.abs() > mx.abs()
        s = t.clip((mx - mn) / float(2 ** bits - 1), f32(1e-7), None)
        s = t.where(mask, s, -s)
        edge = t.where(mask, mn, mx)
        q0 = t.round(edge / s)
        return t.where(q0 != 0, edge / q0, s), t.where(q0 != 0, edge, s * 0)
    qmax = float(2 ** (bits - 1) - 1)
    s = wg.abs().amax(1) / qmax
    return s, s * (-qmax - 1)


def quant(t, w, s, b, mode, bits):  # -> code (as float), the dequantized value
    if mode == "affine":
        q = t.clip(t.round((w - b) / s), 0.0, float(2 ** bits - 1))
        return q, (s.double() * q.double() + b.double()).float()
    qmax = float(2 ** (bits - 1) - 1)
    Q = t.clip(t.where(s == 0, w * 0, t.round(w / s)), -qmax - 1, qmax)
    return Q + (qmax + 1), Q * s


def gptq(t, W, H, mode, bits, g, block):
    W, H = W.clone(), H.clone()
    rows, cols = W.shape
    diag = 0.0
    for i in range(cols):  # dead columns
        if float(H[i, i]) == 0.0:
            H[i, i] = 1.0
            W[:, i] = 0.0
        diag += float(H[i, i])
    lam = f32(DAMP * diag / cols)
    for i in range(cols):
        H[i, i] = H[i, i] + lam
    U = t.linalg.cholesky(t.cholesky_inverse(t.linalg.cholesky(H)), upper=True)
    eb = -(-block // g) * g
    codes, S, Bi = t.zeros(rows, cols), t.zeros(rows, cols // g), t.zeros(rows, cols // g)
    for i1 in range(0, cols, eb):
        i2 = min(i1 + eb, cols)
        err = t.zeros(rows, i2 - i1)
        for j in range(i1, i2):
            if j % g == 0:  # the group's parameters from its current columns
                s, b = qparams(t, W[:, j:j + g], mode, bits)
                S[:, j // g], Bi[:, j // g] = s, b
            w = W[:, j].clone()
            code, deq = quant(t, w, s, b, mode, bits)
            e = (w - deq) / U[j, j]
            codes[:, j], W[:, j], err[:, j - i1] = code, deq, e
            W[:, j + 1:i2] -= e[:, None] * U[j, j + 1:i2][None, :]
        W[:, i2:] -= err @ U[i1:i2, i2:]  # lazy batch update
    return codes, W, S, Bi


def out_err(X, W, What):
    d = X.double() @ (What.double() - W.double()).T
    return float((d * d).sum()) / (X.shape[0] * W.shape[0])


def run_cases(t, W, X):
    H = (X.T @ X) * (2.0 / X.shape[0])
    res = {}
    for name, mode, bits, g, block in CASES:
        codes, deq, S, Bi = gptq(t, W, H, mode, bits, g, block)
        res[name] = (codes, deq, S, Bi, dict(mode=mode, bits=bits, group_size=g, block_size=block,
                                             damp=DAMP, err_gptq=out_err(X, W, deq)))
    return res


def make(out):
    import torch as t
    from safetensors.numpy import save_file
    gen = t.Generator().manual_seed(1234)
    W = t.randn(64, 128, generator=gen) * 0.02
    A = t.eye(128) + 0.35 * t.randn(128, 128, generator=gen) / 128 ** 0.5
    X = t.randn(256, 128, generator=gen) @ A
    X[:, [5, 40, 99]] *= 25.0
    X[:, 77] = 0.0
    tensors, cases = {"W": W.numpy(), "X": X.numpy()}, {}
    for name, (codes, deq, S, Bi, m) in run_cases(t, W, X).items():
        tensors.update({name + ".codes": codes.numpy().astype("uint8"), name + ".deq": deq.numpy(),
                        name + ".scales": S.numpy(), name + ".biases": Bi.numpy()})
        cases[name] = m
        print(name, m)
    meta = {"source": "make-gptq-fixture.py, torch " + t.__version__, "cases": cases}
    save_file(tensors, out + "/gptq-fixture.safetensors", metadata={"fixture": json.dumps(meta)})


# ---- --check: the reference above on NumPy arrays (not sent to the device) ------------------


def numpy_torch():
    """A stand-in for the few torch calls the reference makes, over float32 NumPy arrays."""
    import types

    import numpy as np
    np.seterr(all="ignore")

    class A(np.ndarray):
        def clone(self):
            return self.copy()

        def float(self):
            return self.astype(np.float32)

        def double(self):
            return self.astype(np.float64)

        def amax(self, d):
            return np.amax(self, d)

        def amin(self, d):
            return np.amin(self, d)

        def abs(self):
            return np.abs(self)

    def chol(a, upper=False):
        L = np.linalg.cholesky(a).view(A)
        return L.T.copy() if upper else L

    def chol_inv(L):
        Li = np.linalg.inv(L).view(A)
        return Li.T @ Li

    t = types.SimpleNamespace(
        A=A, clip=np.clip, round=np.round, cholesky_inverse=chol_inv,
        where=lambda c, a, b: np.asarray(np.where(c, a, b), dtype=np.float32).view(A),
        zeros=lambda r, c: np.zeros((r, c), dtype=np.float32).view(A),
        linalg=types.SimpleNamespace(cholesky=chol))
    return t


def read_st(path):
    import numpy as np
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for k, v in head.items():
        a, b = v["data_offsets"]
        dt = {"U8": np.uint8, "F32": np.float32}[v["dtype"]]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(v["shape"])
    return out, meta


def rtn(t, W, mode, bits, g):
    deq = W.clone()
    for c0 in range(0, W.shape[1], g):
        s, b = qparams(t, W[:, c0:c0 + g], mode, bits)
        for j in range(c0, c0 + g):
            deq[:, j] = quant(t, W[:, j], s, b, mode, bits)[1]
    return deq


def check(path):
    try:
        t = numpy_torch()
    except ImportError:
        print("numpy missing: check skipped")
        return 0
    ref, meta = read_st(path + "/gptq-fixture.safetensors")
    meta = json.loads(meta["fixture"])
    W, X = ref["W"].copy().view(t.A), ref["X"].copy().view(t.A)
    print("fixture:", meta["source"])
    bad = 0
    for name, (codes, deq, S, Bi, m) in run_cases(t, W, X).items():
        diff = int((ref[name + ".codes"] != codes).sum())
        r = meta["cases"][name]["err_gptq"]
        e_rtn = out_err(X, W, rtn(t, W, m["mode"], m["bits"], m["group_size"]))
        print(f"{name}: codes differing {diff}/{codes.size}; GPTQ error {m['err_gptq']:.6g} "
              f"(fixture {r:.6g}, ratio {m['err_gptq'] / r:.5f}); RTN {e_rtn:.6g}")
        bad += diff > 0 and abs(m["err_gptq"] / r - 1) > 0.01
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        sys.exit(1 if check(sys.argv[2]) else 0)
    make(sys.argv[1])
