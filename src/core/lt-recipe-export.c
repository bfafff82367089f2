/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-core"
#include "config.h"

#include "lt-recipe-export.h"

#include <math.h>
#include <string.h>

/* ---- a small YAML emitter: block mappings, flow lists, quoted strings ---- */

typedef struct
{
  GString *s;
  int indent;
} Yaml;

static void
y_key (Yaml *y, const char *key)
{
  for (int i = 0; i < y->indent; i++)
    g_string_append (y->s, "  ");
  g_string_append_printf (y->s, "%s:", key);
}

static void
y_quoted (GString *s, const char *v)
{
  g_string_append_c (s, '"');
  for (const char *p = v; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (s, '\\');
      if (*p == '\n')
        g_string_append (s, "\\n");
      else
        g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

static void
y_str (Yaml *y, const char *key, const char *v)
{
  y_key (y, key);
  g_string_append_c (y->s, ' ');
  if (v == NULL)
    g_string_append (y->s, "null");
  else
    y_quoted (y->s, v);
  g_string_append_c (y->s, '\n');
}

/* An identifier-like value written bare (component names, enum values). */
static void
y_word (Yaml *y, const char *key, const char *v)
{
  y_key (y, key);
  g_string_append_printf (y->s, " %s\n", v);
}

static void
y_int (Yaml *y, const char *key, gint64 v)
{
  y_key (y, key);
  g_string_append_printf (y->s, " %" G_GINT64_FORMAT "\n", v);
}

static void
y_bool (Yaml *y, const char *key, gboolean v)
{
  y_word (y, key, v ? "true" : "false");
}

/* Shortest text that reads back to the same double, always with a '.' or an exponent so YAML
 * parsers take it as a float (PyYAML needs "1.0e-05", not "1e-05"). */
static char *
num_text (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  GString *t;

  /* the shortest of %.15g … %.17g that reads back exactly (2e-4, not 2.0000000000000001e-04) */
  for (int digits = 15; digits <= 17; digits++)
    {
      g_ascii_formatd (buf, sizeof buf, digits == 15 ? "%.15g" : digits == 16 ? "%.16g" : "%.17g",
                       v);
      if (g_ascii_strtod (buf, NULL) == v)
        break;
    }
  t = g_string_new (buf);
  if (strchr (buf, 'e') != NULL && strchr (buf, '.') == NULL)
    g_string_insert (t, strchr (buf, 'e') - buf, ".0");
  else if (strchr (buf, '.') == NULL && strchr (buf, 'e') == NULL && isfinite (v))
    g_string_append (t, ".0");
  return g_string_free (t, FALSE);
}

static void
y_double (Yaml *y, const char *key, double v)
{
  g_autofree char *t = num_text (v);
  y_key (y, key);
  g_string_append_printf (y->s, " %s\n", t);
}

static void
y_list (Yaml *y, const char *key, const char *const *items, gboolean quote)
{
  y_key (y, key);
  g_string_append (y->s, " [");
  for (int i = 0; items[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append (y->s, ", ");
      if (quote)
        y_quoted (y->s, items[i]);
      else
        g_string_append (y->s, items[i]);
    }
  g_string_append (y->s, "]\n");
}

static void
y_open (Yaml *y, const char *key)
{
  y_key (y, key);
  g_string_append_c (y->s, '\n');
  y->indent++;
}

static void
y_close (Yaml *y)
{
  y->indent--;
}

static void
y_comment (Yaml *y, const char *text)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    g_string_append_printf (y->s, "#%s%s\n", lines[i][0] ? " " : "", lines[i]);
}

/* ---- shared facts of a run ---- */

typedef struct
{
  const LtRunConfig *cfg;
  const LtConfig *model;
  LtDataFormat format;
  GPtrArray *unsupported;  /* char* */
  char *train_file;        /* data/train.jsonl, or the data file itself */
  char *valid_file;        /* data/valid.jsonl when the data is a folder holding one, or NULL */
  char *name;              /* the run folder's base name */
  GPtrArray *modules;      /* char*: "q_proj", … (NULL-terminated); empty = every linear */
} Run;

static void
unsupported (Run *r, const char *key, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static void
unsupported (Run *r, const char *key, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *why = NULL;

  va_start (ap, fmt);
  why = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_ptr_array_add (r->unsupported, g_strdup_printf ("%s: %s", key, why));
}

static void
run_init (Run *r, const LtRunConfig *cfg, const LtConfig *model, LtDataFormat format,
          GPtrArray *unsupported_out)
{
  const char *data = cfg->data ? cfg->data : "data";

  r->cfg = cfg;
  r->model = model;
  r->format = format;
  r->unsupported = unsupported_out;
  if (g_str_has_suffix (data, ".jsonl"))
    {
      r->train_file = g_strdup (data);
      r->valid_file = NULL;
    }
  else
    {
      r->train_file = g_build_filename (data, "train.jsonl", NULL);
      r->valid_file = g_build_filename (data, "valid.jsonl", NULL);
      if (!g_file_test (r->valid_file, G_FILE_TEST_EXISTS))
        g_clear_pointer (&r->valid_file, g_free);
    }
  r->name = g_path_get_basename (cfg->adapter_path ? cfg->adapter_path : "adapters");
  r->modules = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; cfg->lora_keys != NULL && cfg->lora_keys[i] != NULL; i++)
    {
      const char *dot = strrchr (cfg->lora_keys[i], '.');
      g_ptr_array_add (r->modules, g_strdup (dot ? dot + 1 : cfg->lora_keys[i]));
    }
  g_ptr_array_add (r->modules, NULL);
}

static void
run_clear (Run *r)
{
  g_free (r->train_file);
  g_free (r->valid_file);
  g_free (r->name);
  g_ptr_array_unref (r->modules);
}

static gboolean
all_modules (const Run *r)
{
  return r->modules->len <= 1;
}

static gboolean
is_adapter (const Run *r)
{
  return r->cfg->train_type != LT_TRAIN_TYPE_FULL;
}

static double
lora_alpha (const Run *r)
{
  return r->cfg->lora_scale * r->cfg->lora_rank;
}

/* The indices of the trained blocks (the last num_layers), NULL-terminated strings; NULL when
 * every block trains. */
static GStrv
trained_layers (Run *r, const char *key)
{
  int L, first;
  GStrv out;

  if (r->cfg->num_layers < 0)
    return NULL;
  if (r->model == NULL)
    {
      unsupported (r, key, "the last %d layers: the model's config.json was not readable, so "
                   "the layer indices are unknown (every layer is trained)", r->cfg->num_layers);
      return NULL;
    }
  L = r->model->num_hidden_layers;
  if (r->cfg->num_layers == 0 || r->cfg->num_layers >= L)
    return NULL;
  first = L - r->cfg->num_layers;
  out = g_new0 (char *, r->cfg->num_layers + 1);
  for (int i = first; i < L; i++)
    out[i - first] = g_strdup_printf ("%d", i);
  return out;
}

static void
length (Yaml *y, const Run *r, const char *epochs_key, const char *steps_key)
{
  if (r->cfg->epochs > 0)
    y_int (y, epochs_key, r->cfg->epochs);
  else
    y_int (y, steps_key, r->cfg->iters);
}

/* The load-time quantization as bitsandbytes' 4/8-bit loading (what the cluster trainers
 * offer); 0 when none. */
static int
bnb_bits (Run *r, const char *key)
{
  switch (r->cfg->quantization)
    {
    case LT_QUANTIZATION_NONE:
      return 0;
    case LT_QUANTIZATION_4BIT:
      unsupported (r, key, "Lathe's 4bit is symmetric int4 with group 128; the target loads "
                   "4-bit through bitsandbytes (NF4), the nearest it offers");
      return 4;
    case LT_QUANTIZATION_NF4:
      return 4;
    case LT_QUANTIZATION_8BIT:
      unsupported (r, key, "Lathe's 8bit is symmetric int8 with group 128; the target loads "
                   "8-bit through bitsandbytes (LLM.int8), the nearest it offers");
      return 8;
    case LT_QUANTIZATION_6BIT:
    case LT_QUANTIZATION_MXFP4:
    default:
      unsupported (r, key, "%s has no counterpart (bitsandbytes loads 4 or 8 bits only); "
                   "written without load-time quantization",
                   lt_quantization_to_string (r->cfg->quantization));
      return 0;
    }
}

/* ---- axolotl ---- */

static void
write_axolotl (Yaml *y, Run *r)
{
  const LtRunConfig *c = r->cfg;
  int bits = is_adapter (r) ? bnb_bits (r, "quantization") : 0;

  y_str (y, "base_model", c->model);
  if (bits == 4)
    y_bool (y, "load_in_4bit", TRUE);
  else if (bits == 8)
    y_bool (y, "load_in_8bit", TRUE);
  if (is_adapter (r))
    {
      g_auto (GStrv) layers = trained_layers (r, "num_layers");
      y_word (y, "adapter", bits == 4 ? "qlora" : "lora");
      y_int (y, "lora_r", c->lora_rank);
      y_double (y, "lora_alpha", lora_alpha (r));
      y_double (y, "lora_dropout", c->lora_dropout);
      if (all_modules (r))
        y_bool (y, "lora_target_linear", TRUE);
      else
        y_list (y, "lora_target_modules", (const char *const *) r->modules->pdata, FALSE);
      if (c->train_type == LT_TRAIN_TYPE_DORA)
        y_bool (y, "peft_use_dora", TRUE);
      if (layers != NULL)
        y_list (y, "peft_layers_to_transform", (const char *const *) layers, FALSE);
    }
  else if (c->num_layers >= 0)
    unsupported (r, "num_layers", "full fine-tuning of only the last %d layers (axolotl trains "
                 "every layer; freeze the others with unfrozen_parameters by hand)",
                 c->num_layers);

  if (c->train_mode != LT_TRAIN_MODE_SFT)
    {
      y_word (y, "rl", c->train_mode == LT_TRAIN_MODE_ORPO ? "orpo"
                       : c->dpo_loss_type == 2 ? "ipo" : "dpo");
      if (c->train_mode == LT_TRAIN_MODE_DPO)
        {
          y_double (y, "rl_beta", c->beta);
          if (c->dpo_loss_type == 1)
            unsupported (r, "dpo_loss_type", "hinge is not an axolotl rl type (sigmoid DPO "
                         "written)");
          if (c->label_smoothing != 0.0)
            unsupported (r, "label_smoothing", "axolotl has no DPO label smoothing key");
        }
      else
        y_double (y, "orpo_alpha", c->beta);
    }

  y_open (y, "datasets");
  g_string_append_printf (y->s, "%*s- path: ", 2 * (y->indent - 1), "");
  y_quoted (y->s, r->train_file);
  g_string_append_c (y->s, '\n');
  y_word (y, "ds_type", "json");
  y_word (y, "split", "train");
  switch (r->format)
    {
    case LT_DATA_FORMAT_TEXT:
      y_word (y, "type", "completion");
      y_word (y, "field", "text");
      break;
    case LT_DATA_FORMAT_COMPLETIONS:
      y_open (y, "type");
      y_word (y, "field_instruction", "prompt");
      y_word (y, "field_output", "completion");
      y_str (y, "format", "{instruction}");
      y_str (y, "no_input_format", "{instruction}");
      y_close (y);
      break;
    case LT_DATA_FORMAT_CHAT:
      y_word (y, "type", "chat_template");
      y_word (y, "field_messages", "messages");
      y_word (y, "chat_template", "tokenizer_default");
      break;
    case LT_DATA_FORMAT_PREFERENCE:
    default:
      y_open (y, "type");
      y_word (y, "field_prompt", "prompt");
      y_word (y, "field_system", "system");
      y_word (y, "field_chosen", "chosen");
      y_word (y, "field_rejected", "rejected");
      y_str (y, "prompt_format", "{prompt}");
      y_str (y, "chosen_format", "{chosen}");
      y_str (y, "rejected_format", "{rejected}");
      y_close (y);
      break;
    }
  y_close (y);
  if (r->valid_file != NULL)
    {
      y_open (y, "test_datasets");
      g_string_append_printf (y->s, "%*s- path: ", 2 * (y->indent - 1), "");
      y_quoted (y->s, r->valid_file);
      g_string_append_c (y->s, '\n');
      y_word (y, "ds_type", "json");
      y_word (y, "split", "train");
      y_close (y);
    }
  else
    y_double (y, "val_set_size", 0.0);

  y_int (y, "sequence_len", c->max_seq_length);
  y_bool (y, "sample_packing", c->packing); /* multipack: per-sequence attention */
  y_bool (y, "train_on_inputs", !c->mask_prompt);
  y_int (y, "micro_batch_size", c->batch_size);
  y_int (y, "gradient_accumulation_steps", c->gradient_accumulation_steps);
  length (y, r, "num_epochs", "max_steps");
  y_double (y, "learning_rate", c->learning_rate);
  y_word (y, "lr_scheduler", c->lr_schedule == LT_LR_SCHEDULE_COSINE ? "cosine"
                             : c->lr_schedule == LT_LR_SCHEDULE_LINEAR ? "linear"
                             : c->warmup_steps > 0 ? "constant_with_warmup" : "constant");
  y_int (y, "warmup_steps", c->warmup_steps);
  switch (c->optimizer)
    {
    case LT_OPTIMIZER_SGD:
      y_word (y, "optimizer", "sgd");
      if (c->momentum != 0.0)
        unsupported (r, "optimizer_config.momentum", "axolotl's sgd has no momentum key");
      y_double (y, "weight_decay", c->weight_decay);
      break;
    case LT_OPTIMIZER_ADAM:
    case LT_OPTIMIZER_ADAMW:
    default:
      y_word (y, "optimizer", "adamw_torch");
      y_double (y, "weight_decay", c->optimizer == LT_OPTIMIZER_ADAM ? 0.0 : c->weight_decay);
      y_double (y, "adam_beta1", c->beta1);
      y_double (y, "adam_beta2", c->beta2);
      y_double (y, "adam_epsilon", c->eps);
      break;
    }
  y_double (y, "max_grad_norm", c->max_grad_norm);
  y_bool (y, "gradient_checkpointing", c->grad_checkpoint);
  y_int (y, "seed", c->seed);
  if (!c->shuffle)
    unsupported (r, "shuffle", "axolotl always shuffles the training set");
  y_int (y, "logging_steps", c->steps_per_report);
  if (c->steps_per_eval > 0)
    y_int (y, "eval_steps", c->steps_per_eval);
  if (c->save_every > 0)
    y_int (y, "save_steps", c->save_every);
  if (c->qat_enable)
    {
      if (c->qat_bits != 4 && c->qat_bits != 8)
        unsupported (r, "qat_bits", "%d-bit fake quantization (axolotl's weight_dtype is int4 "
                     "or int8; int%d written)", c->qat_bits, c->qat_bits < 6 ? 4 : 8);
      y_open (y, "qat");
      y_word (y, "weight_dtype", c->qat_bits < 6 ? "int4" : "int8");
      if (c->qat_group_size > 0)
        y_int (y, "group_size", c->qat_group_size);
      else
        unsupported (r, "qat_group_size", "one scale per tensor (axolotl fake-quantizes per "
                     "group; its default group of 32 applies)");
      y_int (y, "fake_quant_after_n_steps", c->qat_start_step);
      y_close (y);
      if (c->qat_interval != 1)
        unsupported (r, "qat_interval", "scales refreshed every %d steps (torchao recomputes "
                     "them at every step)", c->qat_interval);
    }
  y_str (y, "output_dir", r->name);
}

/* ---- LLaMA-Factory ---- */

static void
write_llama_factory (Yaml *y, Run *r)
{
  const LtRunConfig *c = r->cfg;
  int bits = is_adapter (r) ? bnb_bits (r, "quantization") : 0;
  const char *stage = r->format == LT_DATA_FORMAT_TEXT ? "pt"
                      : c->train_mode == LT_TRAIN_MODE_SFT ? "sft" : "dpo";

  y_comment (y, " Register the data in DATASET_DIR/dataset_info.json (LLaMA-Factory reads "
                "datasets by name):");
  {
    g_autoptr (GString) entry = g_string_new ("   \"lathe_train\": {\"file_name\": ");
    y_quoted (entry, r->train_file);
    switch (r->format)
      {
      case LT_DATA_FORMAT_TEXT:
        g_string_append (entry, ", \"columns\": {\"prompt\": \"text\"}}");
        break;
      case LT_DATA_FORMAT_COMPLETIONS:
        g_string_append (entry, ", \"columns\": {\"prompt\": \"prompt\", \"response\": "
                                "\"completion\"}}");
        break;
      case LT_DATA_FORMAT_CHAT:
        g_string_append (entry, ", \"formatting\": \"sharegpt\", \"columns\": {\"messages\": "
                                "\"messages\"}, \"tags\": {\"role_tag\": \"role\", "
                                "\"content_tag\": \"content\", \"user_tag\": \"user\", "
                                "\"assistant_tag\": \"assistant\", \"system_tag\": "
                                "\"system\"}}");
        break;
      case LT_DATA_FORMAT_PREFERENCE:
      default:
        g_string_append (entry, ", \"ranking\": true, \"columns\": {\"prompt\": \"prompt\", "
                                "\"chosen\": \"chosen\", \"rejected\": \"rejected\", "
                                "\"system\": \"system\"}}");
        break;
      }
    y_comment (y, entry->str);
  }
  g_string_append_c (y->s, '\n');

  y_str (y, "model_name_or_path", c->model);
  y_word (y, "stage", stage);
  y_bool (y, "do_train", TRUE);
  y_word (y, "finetuning_type", is_adapter (r) ? "lora" : "full");
  if (is_adapter (r))
    {
      y_int (y, "lora_rank", c->lora_rank);
      y_double (y, "lora_alpha", lora_alpha (r));
      y_double (y, "lora_dropout", c->lora_dropout);
      if (all_modules (r))
        y_word (y, "lora_target", "all");
      else
        {
          g_autofree char *joined = g_strjoinv (",", (char **) r->modules->pdata);
          y_word (y, "lora_target", joined);
        }
      if (c->train_type == LT_TRAIN_TYPE_DORA)
        y_bool (y, "use_dora", TRUE);
      if (bits > 0)
        {
          y_int (y, "quantization_bit", bits);
          y_word (y, "quantization_method", "bnb");
        }
    }
  if (c->num_layers >= 0 && (r->model == NULL || c->num_layers < r->model->num_hidden_layers))
    unsupported (r, "num_layers", "training only the last %d layers (LLaMA-Factory's LoRA "
                 "and full methods train every layer)", c->num_layers);
  if (c->train_mode != LT_TRAIN_MODE_SFT)
    {
      static const char *const losses[] = { "sigmoid", "hinge", "ipo" };
      y_double (y, "pref_beta", c->beta);
      y_word (y, "pref_loss", c->train_mode == LT_TRAIN_MODE_ORPO ? "orpo"
                              : losses[CLAMP (c->dpo_loss_type, 0, 2)]);
      if (c->label_smoothing != 0.0)
        y_double (y, "dpo_label_smoothing", c->label_smoothing);
    }
  if (c->qat_enable)
    unsupported (r, "qat_enable", "LLaMA-Factory has no quantization-aware training");

  y_word (y, "dataset", "lathe_train");
  y_str (y, "dataset_dir", "DATASET_DIR");
  y_word (y, "template", "default");
  y_int (y, "cutoff_len", c->max_seq_length);
  /* LLaMA-Factory packs pre-training data unless told; neat_packing keeps attention inside
   * each example, as Lathe's packing does */
  y_bool (y, "packing", c->packing);
  if (c->packing)
    y_bool (y, "neat_packing", TRUE);
  y_bool (y, "train_on_prompt", !c->mask_prompt);
  y_bool (y, "overwrite_cache", TRUE);
  if (r->valid_file != NULL)
    unsupported (r, "data", "the validation file %s: register it as a second dataset and set "
                 "eval_dataset (LLaMA-Factory can also split with val_size)", r->valid_file);

  y_str (y, "output_dir", r->name);
  y_int (y, "logging_steps", c->steps_per_report);
  if (c->save_every > 0)
    y_int (y, "save_steps", c->save_every);
  y_int (y, "per_device_train_batch_size", c->batch_size);
  y_int (y, "gradient_accumulation_steps", c->gradient_accumulation_steps);
  y_double (y, "learning_rate", c->learning_rate);
  if (c->epochs > 0)
    y_double (y, "num_train_epochs", c->epochs);
  else
    y_int (y, "max_steps", c->iters);
  y_word (y, "lr_scheduler_type", c->lr_schedule == LT_LR_SCHEDULE_COSINE ? "cosine"
                                  : c->lr_schedule == LT_LR_SCHEDULE_LINEAR ? "linear"
                                  : c->warmup_steps > 0 ? "constant_with_warmup" : "constant");
  y_int (y, "warmup_steps", c->warmup_steps);
  if (c->optimizer == LT_OPTIMIZER_SGD)
    {
      y_word (y, "optim", "sgd");
      if (c->momentum != 0.0)
        unsupported (r, "optimizer_config.momentum", "the HF Trainer's sgd has no momentum");
    }
  else
    {
      y_word (y, "optim", "adamw_torch");
      y_double (y, "adam_beta1", c->beta1);
      y_double (y, "adam_beta2", c->beta2);
      y_double (y, "adam_epsilon", c->eps);
    }
  y_double (y, "weight_decay", c->optimizer == LT_OPTIMIZER_ADAM ? 0.0 : c->weight_decay);
  y_double (y, "max_grad_norm", c->max_grad_norm);
  y_bool (y, "gradient_checkpointing", c->grad_checkpoint);
  y_int (y, "seed", c->seed);
  if (!c->shuffle)
    unsupported (r, "shuffle", "the HF Trainer always shuffles the training set");
  y_bool (y, "bf16", TRUE);
}

/* ---- torchtune ---- */

typedef struct
{
  LtArch arch;
  int hidden, layers;
  const char *family;   /* torchtune.models.<family> */
  const char *builder;  /* <builder> / lora_<builder> / qlora_<builder> */
  gboolean has_qlora;
  const char *model_type;
} TuneModel;

/* torchtune's builders for the shapes Lathe loads (hidden size, layers). */
static const TuneModel tune_models[] = {
  { LT_ARCH_LLAMA, 2048, 16, "llama3_2", "llama3_2_1b", TRUE, "LLAMA3_2" },
  { LT_ARCH_LLAMA, 3072, 28, "llama3_2", "llama3_2_3b", TRUE, "LLAMA3_2" },
  { LT_ARCH_LLAMA, 4096, 32, "llama3_1", "llama3_1_8b", TRUE, "LLAMA3" },
  { LT_ARCH_MISTRAL, 4096, 32, "mistral", "mistral_7b", TRUE, "MISTRAL" },
  { LT_ARCH_QWEN2, 896, 24, "qwen2_5", "qwen2_5_0_5b", FALSE, "QWEN2" },
  { LT_ARCH_QWEN2, 1536, 28, "qwen2_5", "qwen2_5_1_5b", FALSE, "QWEN2" },
  { LT_ARCH_QWEN2, 2048, 36, "qwen2_5", "qwen2_5_3b", FALSE, "QWEN2" },
  { LT_ARCH_QWEN2, 3584, 28, "qwen2_5", "qwen2_5_7b", FALSE, "QWEN2" },
  { LT_ARCH_QWEN3, 1024, 28, "qwen3", "qwen3_0_6b", FALSE, "QWEN3" },
  { LT_ARCH_QWEN3, 2048, 28, "qwen3", "qwen3_1_7b", FALSE, "QWEN3" },
  { LT_ARCH_QWEN3, 2560, 36, "qwen3", "qwen3_4b", FALSE, "QWEN3" },
  { LT_ARCH_QWEN3, 4096, 36, "qwen3", "qwen3_8b", FALSE, "QWEN3" },
};

static const TuneModel *
tune_model (const LtConfig *m)
{
  if (m == NULL)
    return NULL;
  for (gsize i = 0; i < G_N_ELEMENTS (tune_models); i++)
    if (tune_models[i].arch == m->arch && tune_models[i].hidden == m->hidden_size
        && tune_models[i].layers == m->num_hidden_layers)
      return &tune_models[i];
  return NULL;
}

static gboolean
has_module (const Run *r, const char *name)
{
  if (all_modules (r))
    return TRUE;
  for (guint i = 0; i + 1 < r->modules->len; i++)
    if (strcmp (r->modules->pdata[i], name) == 0)
      return TRUE;
  return FALSE;
}

static const char *
tune_recipe (const Run *r)
{
  const LtRunConfig *c = r->cfg;

  if (c->qat_enable)
    return is_adapter (r) ? "qat_lora_finetune_distributed" : "qat_distributed";
  if (c->train_mode == LT_TRAIN_MODE_DPO)
    return is_adapter (r) ? "lora_dpo_distributed" : "full_dpo_distributed";
  return is_adapter (r) ? "lora_finetune_distributed" : "full_finetune_distributed";
}

static void
write_torchtune (Yaml *y, Run *r)
{
  const LtRunConfig *c = r->cfg;
  const TuneModel *tm = tune_model (r->model);
  int bits = is_adapter (r) ? bnb_bits (r, "quantization") : 0;
  g_autofree char *component = NULL;

  if (c->train_mode == LT_TRAIN_MODE_ORPO)
    unsupported (r, "train_mode", "torchtune has no ORPO recipe (a DPO recipe is written)");
  if (tm == NULL)
    unsupported (r, "model", "no torchtune model builder is known for this shape (%s, hidden "
                 "%d, %d layers): replace CHOOSE_BUILDER with one of torchtune.models",
                 r->model ? r->model->architecture : "config.json unreadable",
                 r->model ? r->model->hidden_size : 0, r->model ? r->model->num_hidden_layers : 0);
  if (bits == 8 || (bits == 4 && tm != NULL && !tm->has_qlora))
    unsupported (r, "quantization", "torchtune offers QLoRA (NF4) only for some models; "
                 "written without load-time quantization");
  component = g_strdup_printf ("torchtune.models.%s.%s%s", tm ? tm->family : "CHOOSE_FAMILY",
                               !is_adapter (r) ? "" : (bits == 4 && tm && tm->has_qlora)
                                                        ? "qlora_" : "lora_",
                               tm ? tm->builder : "CHOOSE_BUILDER");

  {
    g_autofree char *launch = g_strdup_printf (" Launch: tune run --nproc_per_node N %s "
                                               "--config THIS_FILE", tune_recipe (r));
    y_comment (y, launch);
  }
  g_string_append_c (y->s, '\n');
  y_str (y, "output_dir", r->name);
  y_open (y, "model");
  y_word (y, "_component_", component);
  if (is_adapter (r))
    {
      const char *attn[] = { "q_proj", "k_proj", "v_proj", "output_proj" };
      const char *lathe_attn[] = { "q_proj", "k_proj", "v_proj", "o_proj" };
      g_autoptr (GPtrArray) chosen = g_ptr_array_new ();
      gboolean mlp = has_module (r, "gate_proj") || has_module (r, "up_proj")
                     || has_module (r, "down_proj");

      for (int i = 0; i < 4; i++)
        if (has_module (r, lathe_attn[i]))
          g_ptr_array_add (chosen, (gpointer) attn[i]);
      g_ptr_array_add (chosen, NULL);
      if (mlp && !(has_module (r, "gate_proj") && has_module (r, "up_proj")
                   && has_module (r, "down_proj")))
        unsupported (r, "lora_parameters.keys", "torchtune adapts all three MLP projections or "
                     "none (apply_lora_to_mlp)");
      y_list (y, "lora_attn_modules", (const char *const *) chosen->pdata, TRUE);
      y_bool (y, "apply_lora_to_mlp", mlp);
      y_bool (y, "apply_lora_to_output", FALSE);
      y_int (y, "lora_rank", c->lora_rank);
      y_double (y, "lora_alpha", lora_alpha (r));
      y_double (y, "lora_dropout", c->lora_dropout);
      if (c->train_type == LT_TRAIN_TYPE_DORA)
        y_bool (y, "use_dora", TRUE);
    }
  y_close (y);
  if (c->num_layers >= 0 && (r->model == NULL || c->num_layers < r->model->num_hidden_layers))
    unsupported (r, "num_layers", "training only the last %d layers (torchtune's builders "
                 "adapt every layer)", c->num_layers);

  y_open (y, "tokenizer");
  if (tm != NULL && (tm->arch == LT_ARCH_QWEN2 || tm->arch == LT_ARCH_QWEN3))
    {
      g_autofree char *tok = g_strdup_printf ("torchtune.models.%s.%s_tokenizer", tm->family,
                                              tm->family);
      g_autofree char *vocab = g_build_filename (c->model, "vocab.json", NULL);
      g_autofree char *merges = g_build_filename (c->model, "merges.txt", NULL);
      y_word (y, "_component_", tok);
      y_str (y, "path", vocab);
      y_str (y, "merges_file", merges);
    }
  else
    {
      g_autofree char *path = g_build_filename (c->model, "original", "tokenizer.model", NULL);
      y_word (y, "_component_", tm && tm->arch == LT_ARCH_MISTRAL
                                  ? "torchtune.models.mistral.mistral_tokenizer"
                                  : "torchtune.models.llama3.llama3_tokenizer");
      y_str (y, "path", path);
    }
  y_int (y, "max_seq_len", c->max_seq_length);
  y_close (y);

  y_open (y, "checkpointer");
  y_word (y, "_component_", "torchtune.training.FullModelHFCheckpointer");
  y_str (y, "checkpoint_dir", c->model);
  y_list (y, "checkpoint_files", (const char *const[]) { "model.safetensors", NULL }, TRUE);
  y_word (y, "model_type", tm ? tm->model_type : "CHOOSE_MODEL_TYPE");
  y_str (y, "output_dir", r->name);
  y_close (y);
  y_bool (y, "resume_from_checkpoint", FALSE);

  y_open (y, "dataset");
  switch (r->format)
    {
    case LT_DATA_FORMAT_TEXT:
      y_word (y, "_component_", "torchtune.datasets.text_completion_dataset");
      y_word (y, "column", "text");
      break;
    case LT_DATA_FORMAT_COMPLETIONS:
      y_word (y, "_component_", "torchtune.datasets.instruct_dataset");
      y_open (y, "column_map");
      y_word (y, "input", "prompt");
      y_word (y, "output", "completion");
      y_close (y);
      y_bool (y, "train_on_input", !c->mask_prompt);
      break;
    case LT_DATA_FORMAT_CHAT:
      y_word (y, "_component_", "torchtune.datasets.chat_dataset");
      y_word (y, "conversation_column", "messages");
      y_word (y, "conversation_style", "openai");
      y_bool (y, "train_on_input", !c->mask_prompt);
      break;
    case LT_DATA_FORMAT_PREFERENCE:
    default:
      y_word (y, "_component_", "torchtune.datasets.preference_dataset");
      unsupported (r, "data", "torchtune's preference_dataset takes chosen/rejected as message "
                   "lists; string prompt/chosen/rejected pairs need a column_map or conversion");
      break;
    }
  y_word (y, "source", "json");
  y_str (y, "data_files", r->train_file);
  y_word (y, "split", "train");
  y_bool (y, "packed", c->packing); /* PackedDataset: block-causal mask */
  y_close (y);
  y_int (y, "seed", c->seed);
  y_bool (y, "shuffle", c->shuffle);
  if (r->valid_file != NULL)
    unsupported (r, "data", "the validation file %s (torchtune recipes evaluate only through "
                 "a separate validation dataset block)", r->valid_file);

  y_open (y, "optimizer");
  if (c->optimizer == LT_OPTIMIZER_SGD)
    {
      y_word (y, "_component_", "torch.optim.SGD");
      y_double (y, "momentum", c->momentum);
    }
  else
    {
      y_word (y, "_component_", "torch.optim.AdamW");
      g_autofree char *b1 = num_text (c->beta1);
      g_autofree char *b2 = num_text (c->beta2);
      y_key (y, "betas");
      g_string_append_printf (y->s, " [%s, %s]\n", b1, b2);
      y_double (y, "eps", c->eps);
      y_bool (y, "fused", TRUE);
    }
  y_double (y, "lr", c->learning_rate);
  y_double (y, "weight_decay", c->optimizer == LT_OPTIMIZER_ADAM ? 0.0 : c->weight_decay);
  y_close (y);
  y_open (y, "lr_scheduler");
  y_word (y, "_component_", "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup");
  if (c->lr_schedule != LT_LR_SCHEDULE_COSINE)
    {
      unsupported (r, "lr_schedule", "%s (torchtune's recipes ship a cosine schedule with "
                   "warm-up; cosine written)", lt_lr_schedule_to_string (c->lr_schedule));
    }
  y_int (y, "num_warmup_steps", c->warmup_steps);
  y_close (y);
  y_open (y, "loss");
  y_word (y, "_component_", c->train_mode == LT_TRAIN_MODE_SFT
                              ? "torchtune.modules.loss.CEWithChunkedOutputLoss"
                              : "torchtune.rlhf.loss.DPOLoss");
  if (c->train_mode != LT_TRAIN_MODE_SFT)
    {
      y_double (y, "beta", c->beta);
      y_double (y, "label_smoothing", c->label_smoothing);
    }
  y_close (y);

  if (c->epochs > 0)
    y_int (y, "epochs", c->epochs);
  else
    {
      y_int (y, "epochs", 1);
      y_int (y, "max_steps_per_epoch", c->iters);
    }
  y_int (y, "batch_size", c->batch_size);
  y_int (y, "gradient_accumulation_steps", c->gradient_accumulation_steps);
  if (c->max_grad_norm > 0)
    y_double (y, "clip_grad_norm", c->max_grad_norm);
  else
    y_word (y, "clip_grad_norm", "null");
  y_bool (y, "enable_activation_checkpointing", c->grad_checkpoint);
  y_word (y, "dtype", "bf16");
  y_word (y, "device", "cuda");
  y_int (y, "log_every_n_steps", c->steps_per_report);
  if (c->qat_enable)
    {
      y_open (y, "quantizer");
      y_word (y, "_component_", "torchtune.training.quantization.Int4WeightOnlyQATQuantizer");
      y_int (y, "groupsize", c->qat_group_size > 0 ? c->qat_group_size : 256);
      y_close (y);
      y_int (y, "fake_quant_after_n_steps", c->qat_start_step);
      if (c->qat_bits != 4)
        unsupported (r, "qat_bits", "%d-bit fake quantization (torchtune's weight-only QAT "
                     "quantizer is 4-bit)", c->qat_bits);
      if (c->qat_interval != 1)
        unsupported (r, "qat_interval", "scales refreshed every %d steps", c->qat_interval);
    }
}

/* ---- entry points ---- */

static const char *const target_names[] = { "axolotl", "llama-factory", "torchtune" };

int
lt_recipe_target_from_string (const char *s)
{
  for (gsize i = 0; s != NULL && i < G_N_ELEMENTS (target_names); i++)
    if (strcmp (s, target_names[i]) == 0)
      return (int) i;
  return -1;
}

const char *
lt_recipe_target_to_string (LtRecipeTarget target)
{
  g_return_val_if_fail ((gsize) target < G_N_ELEMENTS (target_names), NULL);
  return target_names[target];
}

char *
lt_recipe_export (const LtRunConfig *cfg, const LtConfig *model, LtDataFormat format,
                  LtRecipeTarget target, GPtrArray *unsupported_out)
{
  g_autoptr (GPtrArray) missing = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GString) body = g_string_new (NULL);
  GString *out = g_string_new (NULL);
  Yaml y = { body, 0 };
  Run r;

  g_return_val_if_fail (cfg != NULL, NULL);
  run_init (&r, cfg, model, format, missing);
  switch (target)
    {
    case LT_RECIPE_AXOLOTL:
      write_axolotl (&y, &r);
      break;
    case LT_RECIPE_LLAMA_FACTORY:
      write_llama_factory (&y, &r);
      break;
    case LT_RECIPE_TORCHTUNE:
    default:
      write_torchtune (&y, &r);
      break;
    }

  g_string_append_printf (out, "# %s recipe written by Lathe from the run %s\n",
                          target_names[target], r.name);
  if (target == LT_RECIPE_AXOLOTL)
    g_string_append (out, "# Launch: axolotl train THIS_FILE (several GPUs: add "
                          "`deepspeed: deepspeed_configs/zero2.json`, or an fsdp_config, and\n"
                          "# run `accelerate launch -m axolotl.cli.train THIS_FILE`)\n");
  else if (target == LT_RECIPE_LLAMA_FACTORY)
    g_string_append (out, "# Launch: llamafactory-cli train THIS_FILE (several GPUs: "
                          "FORCE_TORCHRUN=1, with `deepspeed: examples/deepspeed/\n"
                          "# ds_z2_config.json` for DeepSpeed)\n");
  for (guint i = 0; i < missing->len; i++)
    g_string_append_printf (out, "# Not expressed: %s\n", (const char *) missing->pdata[i]);
  g_string_append (out, body->str);
  if (unsupported_out != NULL)
    for (guint i = 0; i < missing->len; i++)
      g_ptr_array_add (unsupported_out, g_strdup (missing->pdata[i]));
  run_clear (&r);
  return g_string_free (out, FALSE);
}
