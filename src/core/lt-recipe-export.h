/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-recipe-export: a Lathe run configuration written as the config file of a cluster trainer,
 * so a run that outgrows one machine moves to axolotl, LLaMA-Factory or torchtune (which
 * distribute through DeepSpeed / FSDP) instead of Lathe growing its own distributed engine.
 *
 * The output is YAML in the keys each tool documents:
 *   axolotl        base_model, adapter (lora/qlora), lora_r/alpha/dropout, peft_use_dora,
 *                  lora_target_modules / lora_target_linear, peft_layers_to_transform,
 *                  load_in_4bit/8bit, datasets (+ test_datasets), rl (dpo/orpo), rl_beta,
 *                  orpo_alpha, qat {weight_dtype, group_size, fake_quant_after_n_steps}, …
 *   llama-factory  model_name_or_path, stage (pt/sft/dpo), finetuning_type, lora_rank/alpha/
 *                  dropout/target, use_dora, quantization_bit, dataset + dataset_dir (the
 *                  dataset_info.json entry to add is printed as a comment), pref_beta/pref_loss…
 *   torchtune      the recipe's model builder, tokenizer, checkpointer, dataset, optimizer,
 *                  lr_scheduler, loss, … (`tune run <recipe> --config FILE`).
 * Conversions: LoRA alpha = Lathe's (mlx-lm's) scale × rank (PEFT scales by alpha / r);
 * Adam = AdamW with weight decay 0; Lathe's max_grad_norm 0 (no clipping) is written as 0,
 * which the HF Trainer also reads as no clipping.
 *
 * A setting the target cannot express is never dropped silently: it is added to the
 * @unsupported list ("key: why") and written as a comment at the top of the file. */
#pragma once

#include <glib.h>

#include "lt-config.h"
#include "lt-dataset.h"
#include "lt-run.h"

G_BEGIN_DECLS

typedef enum
{
  LT_RECIPE_AXOLOTL,
  LT_RECIPE_LLAMA_FACTORY,
  LT_RECIPE_TORCHTUNE,
} LtRecipeTarget;

/* "axolotl", "llama-factory", "torchtune"; -1 when unknown. */
int lt_recipe_target_from_string (const char *s);
const char *lt_recipe_target_to_string (LtRecipeTarget target);

/* The YAML text for @target. @model: the base model's config.json (for layer indices and,
 * for torchtune, the model builder; may be NULL, then those settings are listed as
 * unsupported). @format: the training data's format. @unsupported (may be NULL) receives one
 * "key: reason" string (owned) per setting that could not be expressed. */
char *lt_recipe_export (const LtRunConfig *cfg, const LtConfig *model, LtDataFormat format,
                        LtRecipeTarget target, GPtrArray *unsupported);

G_END_DECLS
