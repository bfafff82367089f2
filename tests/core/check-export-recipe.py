#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""`lathe export-recipe`: each target's file parses as YAML and holds the keys its tool
documents, with the run's values converted (LoRA alpha = scale x rank, Adam = AdamW with no
weight decay, the last N layers as axolotl's indices); settings a target cannot express are
listed at the top of the file and on stderr, never dropped. TAP output."""
import json
import os
import subprocess
import sys
import tempfile

import yaml

cli = os.environ["LATHE_CLI"]
data = os.environ["LATHE_TEST_DATA"]
model = os.path.join(data, "models", "llama-f32")  # 2 layers
results = []


def check(name, cond, detail=""):
    results.append((name, bool(cond), detail))


def export(cfg, target, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        p = subprocess.run([cli, "export-recipe", "--to", target, path, *extra],
                           capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr


base = {"model": model, "data": os.path.join(data, "train", "train.jsonl"),
        "adapter_path": "runs/fox", "train_type": "dora", "quantization": "4bit",
        "lora_parameters": {"rank": 8, "scale": 2.0, "dropout": 0.05,
                            "keys": ["self_attn.q_proj", "self_attn.v_proj"]},
        "num_layers": 1, "learning_rate": 2e-4, "lr_schedule": "cosine", "warmup_steps": 5,
        "iters": 120, "batch_size": 4, "gradient_accumulation_steps": 2,
        "max_seq_length": 512, "optimizer": "adam", "mask_prompt": True, "seed": 7,
        "qat_enable": True, "qat_bits": 4, "qat_group_size": 32, "qat_start_step": 10,
        "qat_interval": 5}

# axolotl
rc, out, err = export(base, "axolotl")
check("axolotl exits 0", rc == 0, err)
y = yaml.safe_load(out)
check("axolotl base_model", y["base_model"] == model)
check("axolotl qlora on a 4-bit base", y["adapter"] == "qlora" and y["load_in_4bit"] is True)
check("axolotl lora_alpha = scale x rank", y["lora_r"] == 8 and y["lora_alpha"] == 16.0)
check("axolotl target modules", y["lora_target_modules"] == ["q_proj", "v_proj"])
check("axolotl DoRA", y["peft_use_dora"] is True)
check("axolotl last 1 of 2 layers", y.get("peft_layers_to_transform") == [1], y.get("peft_layers_to_transform"))
check("axolotl dataset", y["datasets"][0]["path"].endswith("train.jsonl")
      and y["datasets"][0]["type"] == "completion" and y["datasets"][0]["ds_type"] == "json")
check("axolotl schedule", y["lr_scheduler"] == "cosine" and y["warmup_steps"] == 5
      and y["max_steps"] == 120 and y["learning_rate"] == 2e-4)
check("axolotl adam as adamw without decay", y["optimizer"] == "adamw_torch"
      and y["weight_decay"] == 0.0)
check("axolotl mask prompt", y["train_on_inputs"] is False)
check("axolotl qat", y["qat"] == {"weight_dtype": "int4", "group_size": 32,
                                  "fake_quant_after_n_steps": 10}, y.get("qat"))
check("axolotl lists what it cannot express", "qat_interval" in err and
      "# Not expressed: qat_interval" in out and "quantization" in err, err)

# DPO on preference pairs
pref = dict(base, train_mode="dpo", beta=0.2, train_type="lora", quantization="none",
            qat_enable=False, data=os.path.join(data, "preference", "tinystories"))
rc, out, err = export(pref, "axolotl")
y = yaml.safe_load(out)
check("axolotl dpo", rc == 0 and y["rl"] == "dpo" and y["rl_beta"] == 0.2
      and y["datasets"][0]["type"]["field_chosen"] == "chosen", err)
check("axolotl validation set", y["test_datasets"][0]["path"].endswith("valid.jsonl"))
check("axolotl no load_in_4bit without quantization", "load_in_4bit" not in y)

# LLaMA-Factory
rc, out, err = export(base, "llama-factory")
y = yaml.safe_load(out)
check("llama-factory exits 0", rc == 0, err)
check("llama-factory keys", y["model_name_or_path"] == model and y["stage"] == "pt"
      and y["finetuning_type"] == "lora" and y["use_dora"] is True
      and y["lora_target"] == "q_proj,v_proj" and y["quantization_bit"] == 4
      and y["cutoff_len"] == 512 and y["per_device_train_batch_size"] == 4, y)
check("llama-factory dataset_info entry", '"lathe_train": {"file_name"' in out
      and y["dataset"] == "lathe_train")
check("llama-factory lists num_layers and QAT", "num_layers" in err and "qat_enable" in err, err)
rc, out, err = export(pref, "llama-factory")
y = yaml.safe_load(out)
check("llama-factory dpo", y["stage"] == "dpo" and y["pref_beta"] == 0.2
      and y["pref_loss"] == "sigmoid" and '"ranking": true' in out)

# torchtune: the fixture's shape has no builder, so it is named and listed
rc, out, err = export(base, "torchtune")
y = yaml.safe_load(out)
check("torchtune exits 0", rc == 0, err)
check("torchtune lora", y["model"]["lora_rank"] == 8 and y["model"]["lora_alpha"] == 16.0
      and y["model"]["lora_attn_modules"] == ["q_proj", "v_proj"]
      and y["model"]["apply_lora_to_mlp"] is False and y["model"]["use_dora"] is True, y["model"])
check("torchtune unknown builder listed", "CHOOSE_BUILDER" in y["model"]["_component_"]
      and "no torchtune model builder" in err)
check("torchtune optimizer", y["optimizer"]["_component_"] == "torch.optim.AdamW"
      and y["optimizer"]["lr"] == 2e-4 and y["optimizer"]["weight_decay"] == 0.0)
check("torchtune steps", y["max_steps_per_epoch"] == 120 and y["batch_size"] == 4
      and y["gradient_accumulation_steps"] == 2)
check("torchtune launch line", "tune run --nproc_per_node N qat_lora_finetune_distributed" in out)

# packing: each target's own key, off unless the run packs
packed = dict(base, packing=True)
for target, get in (("axolotl", lambda y: y["sample_packing"]),
                    ("llama-factory", lambda y: (y["packing"], y.get("neat_packing"))),
                    ("torchtune", lambda y: y["dataset"]["packed"])):
    rc0, out0, err0 = export(base, target)
    rc1, out1, err1 = export(packed, target)
    off, on = get(yaml.safe_load(out0)), get(yaml.safe_load(out1))
    want_off, want_on = ((False, None), (True, True)) if target == "llama-factory" else (False, True)
    check(f"{target} packing", rc0 == 0 and rc1 == 0 and off == want_off and on == want_on,
          f"{off} {on} {err1}")

# errors
rc, out, err = export(base, "deepspeed")
check("unknown target refused", rc == 2 and "unknown trainer" in err and out == "", err)
p = subprocess.run([cli, "export-recipe", "--to", "axolotl", "/nonexistent/run.json"],
                   capture_output=True, text=True)
check("missing file refused", p.returncode == 2 and "lathe export-recipe:" in p.stderr,
      p.stderr)

print("TAP version 13")
print(f"1..{len(results)}")
for i, (name, ok, detail) in enumerate(results, 1):
    print(f"{'ok' if ok else 'not ok'} {i} {name}")
    if not ok and detail:
        for line in str(detail).splitlines()[:20]:
            print(f"# {line}")
sys.exit(0 if all(ok for _, ok, _ in results) else 1)
