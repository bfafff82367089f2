#!/usr/bin/env python3
"""Record DPO / ORPO references for lt-preference (Lathe issue 8).

Model: tests/data/models/llama-f32 with the PEFT LoRA adapter tests/data/train/llama-f32-lora
(policy = base + adapter; reference = the same model under `with model.disable_adapter():`).
Pairs: PAIRS below, encoded with the `tokenizers` library from the model's tokenizer.json: the
prompt with the post-processor (BOS), each completion without special tokens, EOS appended.
The token id lists are recorded, so the C test feeds the same ids.

Losses follow TRL's definitions, written out here:
  DPO  logits = (pc - pr) - (rc - rr), with p/r the policy/reference sums of completion
       log-probs (IPO: means per completion token, as TRL divides by the completion length);
       sigmoid: -logσ(β·logits)(1-ls) - logσ(-β·logits)·ls; hinge: relu(1 - β·logits);
       ipo: (logits - 1/(2β))²; loss = mean over pairs; rewards β·(p - ref).
  ORPO pc, pr = mean completion log-probs; log odds = (pc - pr) - (log1p(-e^pc) - log1p(-e^pr));
       loss = NLL(chosen) - β·mean(logσ(log odds)), NLL = mean CE over all chosen completion
       tokens of the batch.
For each case: the loss, the per-sequence log-prob sums and the gradients of every layer-0
adapter tensor (PEFT names). CPU, float32.

Usage: python3 make-preference-fixtures.py --data tests/data --out DIR
"""
import argparse
import json
import os

import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

PAIRS = [
    ("The cat sat on", " the mat and purred.", " a dog, barking loudly at nothing."),
    ("Once upon a time", " there was a small bird.", " it rained."),
]
BETA = 0.1
CASES = [
    ("dpo-sigmoid", "sigmoid", 0.0),
    ("dpo-sigmoid-ls", "sigmoid", 0.1),
    ("dpo-hinge", "hinge", 0.0),
    ("dpo-ipo", "ipo", 0.0),
    ("orpo", "orpo", 0.0),
]


def seq_logps(model, prompt, completion):
    """Sum and count of the completion tokens' log-probs, and the per-token CE sum."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, :-1].float()
    tgt = ids[0, 1:]
    lp = torch.log_softmax(logits, -1).gather(-1, tgt[:, None])[:, 0]
    lp = lp[len(prompt) - 1:]
    return lp.sum(), len(completion)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_default_dtype(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True)
    mdir = os.path.join(args.data, "models", "llama-f32")
    tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
    eos = json.load(open(os.path.join(mdir, "config.json")))["eos_token_id"]
    pairs = []
    for p, c, r in PAIRS:
        pi = tok.encode(p, add_special_tokens=True).ids
        ci = tok.encode(c, add_special_tokens=False).ids + [eos]
        ri = tok.encode(r, add_special_tokens=False).ids + [eos]
        pairs.append({"prompt": p, "chosen": c, "rejected": r,
                      "prompt_ids": pi, "chosen_ids": ci, "rejected_ids": ri})

    base = AutoModelForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(args.data, "train", "llama-f32-lora"),
                                      is_trainable=True)
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    out = {"beta": BETA, "pairs": pairs, "cases": {}}
    os.makedirs(args.out, exist_ok=True)
    with torch.no_grad(), model.disable_adapter():
        ref = [(seq_logps(model, q["prompt_ids"], q["chosen_ids"])[0].item(),
                seq_logps(model, q["prompt_ids"], q["rejected_ids"])[0].item()) for q in pairs]
    for name, kind, ls in CASES:
        model.zero_grad()
        pol = [(seq_logps(model, q["prompt_ids"], q["chosen_ids"]),
                seq_logps(model, q["prompt_ids"], q["rejected_ids"])) for q in pairs]
        pc = torch.stack([a[0] for a, _ in pol])
        pr = torch.stack([b[0] for _, b in pol])
        nc = torch.tensor([float(a[1]) for a, _ in pol])
        nr = torch.tensor([float(b[1]) for _, b in pol])
        rc = torch.tensor([a for a, _ in ref])
        rr = torch.tensor([b for _, b in ref])
        rec = {"loss_type": kind, "label_smoothing": ls}
        if kind == "orpo":
            mc, mr = pc / nc, pr / nr
            nll = -pc.sum() / nc.sum()
            log_odds = (mc - mr) - (torch.log1p(-torch.exp(mc)) - torch.log1p(-torch.exp(mr)))
            ratio = F.logsigmoid(log_odds)
            loss = nll - (BETA * ratio).mean()
            rec.update(nll=nll.item(), log_odds_ratio=ratio.mean().item(),
                       accuracy=(mc > mr).float().mean().item())
        else:
            if kind == "ipo":
                a, b, c, d = pc / nc, pr / nr, rc / nc, rr / nr
            else:
                a, b, c, d = pc, pr, rc, rr
            logits = (a - b) - (c - d)
            if kind == "sigmoid":
                losses = (-F.logsigmoid(BETA * logits) * (1 - ls)
                          - F.logsigmoid(-BETA * logits) * ls)
            elif kind == "hinge":
                losses = torch.relu(1 - BETA * logits)
            else:
                losses = (logits - 1 / (2 * BETA)) ** 2
            loss = losses.mean()
            ch = BETA * (a - c).detach()
            rj = BETA * (b - d).detach()
            rec.update(rewards_chosen=ch.mean().item(), rewards_rejected=rj.mean().item(),
                       accuracy=(ch > rj).float().mean().item(),
                       margin=(ch - rj).mean().item())
        loss.backward()
        rec.update(loss=loss.item(), policy_chosen=pc.tolist(), policy_rejected=pr.tolist(),
                   ref_chosen=rc.tolist(), ref_rejected=rr.tolist())
        grads = {n: p.grad.detach().clone().contiguous() for n, p in params.items()
                 if ".layers.0." in n}
        save_file(grads, os.path.join(args.out, f"grads-{name}.safetensors"))
        out["cases"][name] = rec
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
