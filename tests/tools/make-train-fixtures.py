#!/usr/bin/env python3
"""Record PEFT LoRA / DoRA training references for the training core (issue: training core).

For each tiny fixture model (tests/data/models/<name>, made by make-fixtures.py) and each
adapter kind (LoRA, DoRA), starting from a saved initial adapter with B != 0:
  - the initial adapter in PEFT layout (adapter_model.safetensors + adapter_config.json),
  - the step-0 loss and the gradients of every adapter tensor of layer 0,
  - the losses of 6 AdamW steps (batch 1, examples in file order, constant learning rate),
written to tests/data/train/<model>-<kind>/.

The loss is the mean cross-entropy over the predicted tokens of the example, each example
encoded as `lathe train` encodes a {"text": …} line: the tokenizer's post-processor (BOS where
it adds one), EOS appended when missing. Runs on CPU in float32.

Usage: python3 tests/tools/make-train-fixtures.py --data tests/data --out tests/data/train
"""
import argparse
import json
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

MODELS = ["llama-f32", "qwen3"]
RANK = 4
ALPHA = 8.0  # scale = alpha / rank = 2.0
LR = 1e-2
STEPS = 6
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def encode(tok, eos_id, text):
    ids = tok.encode(text, add_special_tokens=True).ids
    if eos_id is not None and (not ids or ids[-1] != eos_id):
        ids.append(eos_id)
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)

    lines = [json.loads(l) for l in open(os.path.join(args.out, "train.jsonl")) if l.strip()]
    for name in MODELS:
        mdir = os.path.join(args.data, "models", name)
        tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        eos = cfg.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        examples = [encode(tok, eos, l["text"]) for l in lines]
        for kind in ["lora", "dora"]:
            torch.manual_seed(7)
            model = AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32)
            model.eval()  # no dropout anywhere
            lcfg = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                              use_dora=(kind == "dora"), bias="none", task_type="CAUSAL_LM")
            model = get_peft_model(model, lcfg)
            # B != 0 so that every adapter tensor has a gradient at step 0.
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if "lora_B" in n:
                        p.copy_(torch.randn_like(p) * 0.05)
            outdir = os.path.join(args.out, f"{name}-{kind}")
            os.makedirs(outdir, exist_ok=True)
            model.save_pretrained(outdir)  # adapter_model.safetensors + adapter_config.json

            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                    weight_decay=0.01, foreach=False)
            losses, grads0 = [], {}
            for step in range(STEPS):
                ids = torch.tensor([examples[step % len(examples)]])
                out = model(input_ids=ids, labels=ids)
                opt.zero_grad()
                out.loss.backward()
                if step == 0:
                    for n, p in model.named_parameters():
                        if p.requires_grad and ".layers.0." in n:
                            key = n.replace(".default", "")
                            grads0[key] = p.grad.detach().clone().contiguous()
                losses.append(float(out.loss))
                opt.step()
            save_file(grads0, os.path.join(outdir, "grads_step0.safetensors"),
                      metadata={"format": "pt"})
            ref = {"model": name, "kind": kind, "rank": RANK, "lora_alpha": ALPHA,
                   "scale": ALPHA / RANK, "learning_rate": LR, "optimizer": "adamw",
                   "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8,
                   "batch_size": 1, "order": "file", "losses": losses,
                   "example_ids": examples[:STEPS],
                   "torch_version": torch.__version__}
            import peft, transformers
            ref["peft_version"] = peft.__version__
            ref["transformers_version"] = transformers.__version__
            with open(os.path.join(outdir, "reference.json"), "w") as f:
                json.dump(ref, f, indent=1)
            print(name, kind, ["%.6f" % l for l in losses])


if __name__ == "__main__":
    main()
