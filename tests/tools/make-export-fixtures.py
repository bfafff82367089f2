#!/usr/bin/env python3
"""Record references for Lathe's exports (issue 7): real transformers / PEFT load what
`lathe fuse` wrote, and their logits are kept for the C tests (tests/core/test-export.c).

Inputs (made on the developer machine with the built `lathe`, see tests/tools/README.md):
  LATHE/hf-<model>-<kind>-<dtype>/   `lathe fuse --export-hf DIR --dtype f32|bf16`
  LATHE/hf-llama-base-f32/           the base converted without an adapter
  LATHE/peft-<model>-<kind>/         `lathe fuse --export-peft DIR`

For every HF folder: AutoModelForCausalLM.from_pretrained(DIR, dtype=float32) (bf16 weights
are upcast, the forward runs in f32) and its logits on fixed input ids.
For every PEFT folder: the base model (tests/data/models/<model>) + PeftModel.from_pretrained,
its logits, and merge_and_unload(): the largest |weight difference| between PEFT's merged
weights and Lathe's own fused f32 HF export of the same adapter (Lathe's fuse = PEFT's merge).

Writes OUT/reference.safetensors (logits.<case>: F32 [2, T, V]) and OUT/reference.json (ids,
versions, per case the source and weight differences). CPU, float32, TF32 off, deterministic.

Usage: python3 tests/tools/make-export-fixtures.py --lathe LATHE --data tests/data --out OUT
"""
import argparse
import json
import os
import sys

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import save_file, load_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

T = 12


def ids_for(vocab):
    # two fixed sequences of T ids (no padding), deterministic
    return torch.tensor([[(7 * i + 3) % vocab for i in range(T)],
                         [(11 * i + 5) % vocab for i in range(T)]], dtype=torch.long)


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lathe", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    tensors = {}
    cases = {}
    failed = False
    for name in sorted(os.listdir(args.lathe)):
        path = os.path.join(args.lathe, name)
        try:
            if name.startswith("hf-"):
                model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
                ids = ids_for(model.config.vocab_size)
                tensors["logits." + name] = logits_of(model, ids)
                cases[name] = {"source": "transformers", "class": type(model).__name__}
            elif name.startswith("peft-"):
                base_name = name[len("peft-"):].rsplit("-", 1)[0]
                base_dir = os.path.join(args.data, "models", base_name)
                base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
                model = PeftModel.from_pretrained(base, path).eval()
                ids = ids_for(base.config.vocab_size)
                tensors["logits." + name] = logits_of(model, ids)
                info = {"source": "peft", "base": base_name,
                        "use_dora": bool(model.peft_config["default"].use_dora)}
                merged = model.merge_and_unload()
                fused_dir = os.path.join(args.lathe, "hf-" + name[len("peft-"):] + "-f32")
                if os.path.isdir(fused_dir):
                    lathe_w = load_file(os.path.join(fused_dir, "model.safetensors"))
                    sd = merged.state_dict()
                    diff = 0.0
                    rel = 0.0
                    for k, v in lathe_w.items():
                        ref = sd[k].float()
                        d = (v.float() - ref).abs().max().item()
                        diff = max(diff, d)
                        rel = max(rel, d / max(ref.abs().max().item(), 1e-30))
                    info["merged_vs_lathe_fused"] = {"max_abs": diff, "max_rel": rel,
                                                     "tensors": len(lathe_w)}
                    print(f"{name}: PEFT merge vs Lathe fuse max |dW| {diff:.3g}")
                cases[name] = info
            else:
                continue
            print(f"{name}: logits {tuple(tensors['logits.' + name].shape)}")
        except Exception as e:  # record and go on
            failed = True
            cases[name] = {"error": repr(e)}
            print(f"{name}: FAILED {e!r}", file=sys.stderr)

    ids_meta = {"T": T, "rule": "[(7*i+3) % V for i < T], [(11*i+5) % V for i < T]"}
    save_file(tensors, os.path.join(args.out, "reference.safetensors"))
    ref = {
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "safetensors": safetensors.__version__},
        "ids": ids_meta,
        "cases": cases,
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
