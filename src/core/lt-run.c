/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run: the run configuration (ARCHITECTURE.md §4).
 *
 * One table (keys[]) drives everything: applying JSON, writing JSON, the equivalent command
 * line, the CLI's flags and its --help. A key is added by adding one row (and its struct
 * field). */
#include "config.h"

#include "lt-run.h"

#include "lt-qat.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <glib/gi18n-lib.h>

#include "lt-error.h"
#include "lt-json.h"

/* ---- enums ---- */

enum
{
  ENUM_NONE = -1,
  ENUM_TRAIN_MODE,
  ENUM_TRAIN_TYPE,
  ENUM_QUANTIZATION,
  ENUM_LR_SCHEDULE,
  ENUM_OPTIMIZER,
  ENUM_DPO_LOSS_TYPE,
  ENUM_QAT_MODE,
  ENUM_COMPUTE_DTYPE,
};

static const char *const train_mode_names[] = { "sft", "dpo", "orpo", NULL };
static const char *const train_type_names[] = { "lora", "dora", "full", NULL };
static const char *const quantization_names[] = { "none", "4bit", "6bit", "8bit", "mxfp4",
                                                  "nf4", NULL };
static const char *const lr_schedule_names[] = { "constant", "cosine", "linear", NULL };
static const char *const optimizer_names[] = { "adamw", "adam", "sgd", NULL };
static const char *const dpo_loss_type_names[] = { "sigmoid", "hinge", "ipo", NULL };
/* lt-qat's modes: the first LtQuantMode values, in their order */
static const char *const qat_mode_names[] = { "symmetric", "affine", "mxfp4", "nf4", NULL };
static const char *const compute_dtype_names[] = { "auto", "f32", "bf16", NULL };

static const char *const *const enum_names[] = {
  train_mode_names, train_type_names, quantization_names, lr_schedule_names, optimizer_names,
  dpo_loss_type_names, qat_mode_names, compute_dtype_names,
};

static int
names_lookup (const char *const *names, const char *s)
{
  if (s == NULL)
    return -1;
  for (int i = 0; names[i] != NULL; i++)
    if (strcmp (names[i], s) == 0)
      return i;
  return -1;
}

static const char *
names_get (const char *const *names, int v)
{
  for (int i = 0; names[i] != NULL; i++)
    if (i == v)
      return names[i];
  return NULL;
}

const char *
lt_train_mode_to_string (LtTrainMode v)
{
  return names_get (train_mode_names, v);
}

int
lt_train_mode_from_string (const char *s)
{
  return names_lookup (train_mode_names, s);
}

const char *
lt_train_type_to_string (LtTrainType v)
{
  return names_get (train_type_names, v);
}

int
lt_train_type_from_string (const char *s)
{
  return names_lookup (train_type_names, s);
}

const char *
lt_quantization_to_string (LtQuantization v)
{
  return names_get (quantization_names, v);
}

int
lt_quantization_from_string (const char *s)
{
  return names_lookup (quantization_names, s);
}

const char *
lt_lr_schedule_to_string (LtLrSchedule v)
{
  return names_get (lr_schedule_names, v);
}

int
lt_lr_schedule_from_string (const char *s)
{
  return names_lookup (lr_schedule_names, s);
}

const char *
lt_compute_dtype_choice_to_string (LtComputeDTypeChoice v)
{
  return names_get (compute_dtype_names, v);
}

int
lt_compute_dtype_choice_from_string (const char *s)
{
  return names_lookup (compute_dtype_names, s);
}

const char *
lt_optimizer_to_string (LtOptimizerKind v)
{
  return names_get (optimizer_names, v);
}

int
lt_optimizer_from_string (const char *s)
{
  return names_lookup (optimizer_names, s);
}

void
lt_quantization_get_params (LtQuantization q, int *bits, int *group_size)
{
  int b = 0, g = 0;

  switch (q)
    {
    case LT_QUANTIZATION_4BIT:
      b = 4, g = 128;
      break;
    case LT_QUANTIZATION_6BIT:
      b = 6, g = 128;
      break;
    case LT_QUANTIZATION_8BIT:
      b = 8, g = 128;
      break;
    case LT_QUANTIZATION_MXFP4:
      b = 4, g = 32;
      break;
    case LT_QUANTIZATION_NF4:
      b = 4, g = 64;
      break;
    case LT_QUANTIZATION_NONE:
    default:
      break;
    }
  if (bits)
    *bits = b;
  if (group_size)
    *group_size = g;
}

/* ---- the key table ---- */

#define OFF(field) G_STRUCT_OFFSET (LtRunConfig, field)
#define ROW(k, f, t, arg, desc, field) \
  { k, f, t, NULL, arg, desc, OFF (field), ENUM_NONE, 0, FALSE }
#define ROW_NULLABLE(k, f, arg, desc, field) \
  { k, f, LT_RUN_KEY_STRING, NULL, arg, desc, OFF (field), ENUM_NONE, 0, TRUE }
#define ROW_ENUM(k, f, e, arg, desc, field) \
  { k, f, LT_RUN_KEY_ENUM, NULL, arg, desc, OFF (field), e, 0, FALSE }
#define ROW_LOAD_IN(k, f, q, desc) \
  { k, f, LT_RUN_KEY_BOOLEAN, "quantization", NULL, desc, 0, ENUM_NONE, q, FALSE }

static const LtRunKeyInfo keys[] = {
  ROW_NULLABLE ("model", "model", "PATH", N_("Model folder (Hugging Face layout)"), model),
  ROW_NULLABLE ("data", "data", "PATH",
                N_("Data folder with train.jsonl/valid.jsonl, or one JSONL file"), data),
  ROW ("adapter_path", "adapter-path", LT_RUN_KEY_STRING, "PATH",
       N_("Run folder to write adapters and checkpoints to"), adapter_path),
  ROW_NULLABLE ("resume_adapter_file", "resume-adapter-file", "FILE",
                N_("Adapter file to resume training from"), resume_adapter_file),
  ROW_ENUM ("train_mode", "train-mode", ENUM_TRAIN_MODE, "sft|dpo|orpo",
            N_("Training objective"), train_mode),
  ROW_ENUM ("train_type", "train-type", ENUM_TRAIN_TYPE, "lora|dora|full",
            N_("What is trained: LoRA, DoRA or every weight"), train_type),
  ROW_ENUM ("quantization", "quantization", ENUM_QUANTIZATION, "none|4bit|6bit|8bit|mxfp4|nf4",
            N_("Load-time quantization of the frozen base"), quantization),
  ROW ("lora_parameters.rank", "rank", LT_RUN_KEY_INT, "N", N_("LoRA rank"), lora_rank),
  ROW ("lora_parameters.scale", "scale", LT_RUN_KEY_DOUBLE, "X", N_("LoRA scale"), lora_scale),
  ROW ("lora_parameters.dropout", "dropout", LT_RUN_KEY_DOUBLE, "P",
       N_("LoRA dropout probability"), lora_dropout),
  { "lora_parameters.keys", "lora-keys", LT_RUN_KEY_STRV, NULL, "K1,K2",
    N_("Layers inside a block to adapt, comma-separated (unset: every linear layer)"),
    OFF (lora_keys), ENUM_NONE, 0, TRUE },
  ROW ("num_layers", "num-layers", LT_RUN_KEY_INT, "N",
       N_("Adapt the last N blocks (-1: all)"), num_layers),
  ROW ("batch_size", "batch-size", LT_RUN_KEY_INT, "N", N_("Examples per batch"), batch_size),
  ROW ("iters", "iters", LT_RUN_KEY_INT, "N", N_("Training steps (0: use epochs)"), iters),
  ROW ("epochs", "epochs", LT_RUN_KEY_INT, "N",
       N_("Passes over the data; when > 0 it wins over iters"), epochs),
  ROW ("learning_rate", "learning-rate", LT_RUN_KEY_DOUBLE, "X", N_("Peak learning rate"),
       learning_rate),
  ROW_ENUM ("lr_schedule", "lr-schedule", ENUM_LR_SCHEDULE, "constant|cosine|linear",
            N_("Learning-rate schedule after warmup"), lr_schedule),
  ROW ("warmup_steps", "warmup-steps", LT_RUN_KEY_INT, "N",
       N_("Linear warmup steps from 0"), warmup_steps),
  ROW_ENUM ("optimizer", "optimizer", ENUM_OPTIMIZER, "adamw|adam|sgd", N_("Optimizer"),
            optimizer),
  ROW ("optimizer_config.weight_decay", "weight-decay", LT_RUN_KEY_DOUBLE, "X",
       N_("Weight decay (AdamW, SGD)"), weight_decay),
  ROW ("optimizer_config.beta1", "beta1", LT_RUN_KEY_DOUBLE, "X",
       N_("First moment decay (Adam, AdamW)"), beta1),
  ROW ("optimizer_config.beta2", "beta2", LT_RUN_KEY_DOUBLE, "X",
       N_("Second moment decay (Adam, AdamW)"), beta2),
  ROW ("optimizer_config.eps", "eps", LT_RUN_KEY_DOUBLE, "X",
       N_("Denominator epsilon (Adam, AdamW)"), eps),
  ROW ("optimizer_config.momentum", "momentum", LT_RUN_KEY_DOUBLE, "X", N_("SGD momentum"),
       momentum),
  ROW ("max_grad_norm", "max-grad-norm", LT_RUN_KEY_DOUBLE, "X",
       N_("Clip the gradient norm to this (0: no clipping)"), max_grad_norm),
  ROW ("gradient_accumulation_steps", "gradient-accumulation-steps", LT_RUN_KEY_INT, "N",
       N_("Batches per optimizer step"), gradient_accumulation_steps),
  ROW ("max_seq_length", "max-seq-length", LT_RUN_KEY_INT, "N",
       N_("Longest sequence in tokens; longer examples are truncated"), max_seq_length),
  ROW ("mask_prompt", "mask-prompt", LT_RUN_KEY_BOOLEAN, NULL,
       N_("Train on completions only, not on prompts"), mask_prompt),
  ROW ("grad_checkpoint", "grad-checkpoint", LT_RUN_KEY_BOOLEAN, NULL,
       N_("Recompute activations in the backward pass to save memory"), grad_checkpoint),
  ROW ("packing", "packing", LT_RUN_KEY_BOOLEAN, NULL,
       N_("Pack short examples into batches of batch_size × max_seq_length tokens (SFT)"),
       packing),
  ROW ("seed", "seed", LT_RUN_KEY_INT64, "N", N_("Random seed"), seed),
  ROW ("shuffle", "shuffle", LT_RUN_KEY_BOOLEAN, NULL, N_("Shuffle the training data"),
       shuffle),
  ROW ("steps_per_report", "steps-per-report", LT_RUN_KEY_INT, "N",
       N_("Report the training loss every N steps"), steps_per_report),
  ROW ("steps_per_eval", "steps-per-eval", LT_RUN_KEY_INT, "N",
       N_("Validate every N steps (0: never)"), steps_per_eval),
  ROW ("save_every", "save-every", LT_RUN_KEY_INT, "N",
       N_("Save a checkpoint every N steps (0: only at the end)"), save_every),
  ROW ("val_batches", "val-batches", LT_RUN_KEY_INT, "N",
       N_("Validation batches per evaluation (-1: the whole set)"), val_batches),
  ROW ("beta", "beta", LT_RUN_KEY_DOUBLE, "X", N_("DPO beta / ORPO lambda"), beta),
  ROW_ENUM ("dpo_loss_type", "dpo-loss-type", ENUM_DPO_LOSS_TYPE, "sigmoid|hinge|ipo",
            N_("DPO loss"), dpo_loss_type),
  ROW ("label_smoothing", "label-smoothing", LT_RUN_KEY_DOUBLE, "X",
       N_("DPO label smoothing (sigmoid loss, 0 ≤ x < 0.5)"), label_smoothing),
  ROW ("qat_enable", "qat-enable", LT_RUN_KEY_BOOLEAN, NULL,
       N_("Quantization-aware training"), qat_enable),
  ROW ("qat_bits", "qat-bits", LT_RUN_KEY_INT, "N", N_("QAT bits (2–8)"), qat_bits),
  ROW ("qat_group_size", "qat-group-size", LT_RUN_KEY_INT, "N",
       N_("QAT group size (0: per tensor)"), qat_group_size),
  ROW_ENUM ("qat_mode", "qat-mode", ENUM_QAT_MODE, "symmetric|affine|mxfp4|nf4",
            N_("QAT grid, as the export stores it"), qat_mode),
  ROW ("qat_learn_grid", "qat-learn-grid", LT_RUN_KEY_BOOLEAN, NULL,
       N_("Learn the QAT grid's scales and biases (LSQ)"), qat_learn_grid),
  ROW ("qat_grid_lr_scale", "qat-grid-lr-scale", LT_RUN_KEY_DOUBLE, "X",
       N_("The learned QAT grid's learning rate, as a multiple of the run's"),
       qat_grid_lr_scale),
  ROW ("qat_start_step", "qat-start-step", LT_RUN_KEY_INT, "N",
       N_("First step with fake quantization"), qat_start_step),
  ROW ("qat_interval", "qat-interval", LT_RUN_KEY_INT, "N",
       N_("Re-quantize every N steps"), qat_interval),
  { "sample_prompts", "sample-prompts", LT_RUN_KEY_STRV, NULL, "P1,P2|FILE.jsonl",
    N_("Prompts to generate from during the run, into samples.jsonl (or a JSONL file of "
       "\"prompt\" lines; unset: none)"),
    OFF (sample_prompts), ENUM_NONE, 0, TRUE },
  ROW ("steps_per_sample", "steps-per-sample", LT_RUN_KEY_INT, "N",
       N_("Generate the samples every N steps (0: at each evaluation)"), steps_per_sample),
  ROW ("sample_max_tokens", "sample-max-tokens", LT_RUN_KEY_INT, "N",
       N_("Tokens generated per sample"), sample_max_tokens),
  ROW_ENUM ("compute_dtype", "compute-dtype", ENUM_COMPUTE_DTYPE, "auto|f32|bf16",
            N_("Precision of the matrix products (auto: bf16 where the CPU has AMX or "
               "AVX512-BF16)"), compute_dtype),
  ROW ("compute_device", "compute-device", LT_RUN_KEY_STRING, "auto|cpu|vulkan|vulkan:N",
       N_("Where the training step runs (auto: the CPU for now; vulkan: the first GPU, "
          "vulkan:N the Nth of `lathe devices`; LoRA only)"), compute_device),
  /* Aliases (other spellings). */
  { "fine_tune_type", "fine-tune-type", LT_RUN_KEY_ENUM, "train_type", "lora|dora|full",
    N_("Same as --train-type (mlx-lm's name)"), OFF (train_type), ENUM_TRAIN_TYPE, 0, FALSE },
  { "grad_accumulation_steps", "grad-accumulation-steps", LT_RUN_KEY_INT,
    "gradient_accumulation_steps", "N", N_("Same as --gradient-accumulation-steps (mlx-lm's name)"),
    OFF (gradient_accumulation_steps), ENUM_NONE, 0, FALSE },
  { "device", "device", LT_RUN_KEY_STRING, "compute_device", "auto|cpu|vulkan|vulkan:N",
    N_("Same as --compute-device"), OFF (compute_device), ENUM_NONE, 0, FALSE },
  ROW_LOAD_IN ("load_in_4bits", "load-in-4bits", LT_QUANTIZATION_4BIT,
               N_("Same as --quantization 4bit")),
  ROW_LOAD_IN ("load_in_6bits", "load-in-6bits", LT_QUANTIZATION_6BIT,
               N_("Same as --quantization 6bit")),
  ROW_LOAD_IN ("load_in_8bits", "load-in-8bits", LT_QUANTIZATION_8BIT,
               N_("Same as --quantization 8bit")),
  ROW_LOAD_IN ("load_in_mxfp4", "load-in-mxfp4", LT_QUANTIZATION_MXFP4,
               N_("Same as --quantization mxfp4")),
};

const LtRunKeyInfo *
lt_run_config_get_keys (gsize *n_keys)
{
  if (n_keys)
    *n_keys = G_N_ELEMENTS (keys);
  return keys;
}

const LtRunKeyInfo *
lt_run_config_lookup_key (const char *key_or_flag)
{
  g_return_val_if_fail (key_or_flag != NULL, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    if (strcmp (keys[i].key, key_or_flag) == 0 || strcmp (keys[i].flag, key_or_flag) == 0)
      return &keys[i];
  return NULL;
}

static const LtRunKeyInfo *
lookup_json_key (const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    if (strcmp (keys[i].key, key) == 0)
      return &keys[i];
  return NULL;
}

#define FIELD(cfg, info, type) ((type *) (void *) ((char *) (cfg) + (info)->offset))
#define CFIELD(cfg, info, type) \
  ((type const *) (const void *) ((const char *) (cfg) + (info)->offset))

/* ---- new / copy / free / equal ---- */

LtRunConfig *
lt_run_config_new (void)
{
  LtRunConfig *cfg = g_new0 (LtRunConfig, 1);

  cfg->model = NULL;
  cfg->data = NULL;
  cfg->adapter_path = g_strdup ("adapters");
  cfg->resume_adapter_file = NULL;
  cfg->train_mode = LT_TRAIN_MODE_SFT;
  cfg->train_type = LT_TRAIN_TYPE_LORA;
  cfg->quantization = LT_QUANTIZATION_NONE;
  cfg->lora_rank = 8;
  cfg->lora_scale = 20.0;
  cfg->lora_dropout = 0.0;
  cfg->lora_keys = NULL;
  cfg->num_layers = 16;
  cfg->learning_rate = 1e-5;
  cfg->lr_schedule = LT_LR_SCHEDULE_CONSTANT;
  cfg->warmup_steps = 0;
  cfg->iters = 1000;
  cfg->epochs = 0;
  cfg->batch_size = 4;
  cfg->gradient_accumulation_steps = 1;
  cfg->max_seq_length = 2048;
  cfg->mask_prompt = FALSE;
  cfg->grad_checkpoint = FALSE;
  cfg->packing = FALSE;
  cfg->seed = 0;
  cfg->shuffle = TRUE;
  cfg->optimizer = LT_OPTIMIZER_ADAM;
  cfg->weight_decay = 0.0;
  cfg->beta1 = 0.9;
  cfg->beta2 = 0.999;
  cfg->eps = 1e-8;
  cfg->momentum = 0.0;
  cfg->max_grad_norm = 0.0;
  cfg->steps_per_report = 10;
  cfg->steps_per_eval = 200;
  cfg->save_every = 100;
  cfg->val_batches = 25;
  cfg->beta = 0.1;
  cfg->dpo_loss_type = 0;
  cfg->label_smoothing = 0.0;
  cfg->steps_per_sample = 0;
  cfg->sample_max_tokens = 64;
  cfg->compute_dtype = LT_COMPUTE_DTYPE_AUTO;
  cfg->compute_device = g_strdup ("auto");
  cfg->qat_enable = FALSE;
  cfg->qat_bits = 8;
  cfg->qat_group_size = 64;
  cfg->qat_start_step = 1;
  cfg->qat_interval = 1;
  cfg->qat_learn_grid = FALSE;
  cfg->qat_grid_lr_scale = 0.3;
  return cfg;
}

LtRunConfig *
lt_run_config_copy (const LtRunConfig *cfg)
{
  LtRunConfig *c;

  g_return_val_if_fail (cfg != NULL, NULL);
  c = g_memdup2 (cfg, sizeof *cfg);
  c->model = g_strdup (cfg->model);
  c->data = g_strdup (cfg->data);
  c->adapter_path = g_strdup (cfg->adapter_path);
  c->resume_adapter_file = g_strdup (cfg->resume_adapter_file);
  c->lora_keys = g_strdupv (cfg->lora_keys);
  c->sample_prompts = g_strdupv (cfg->sample_prompts);
  c->compute_device = g_strdup (cfg->compute_device);
  return c;
}

void
lt_run_config_free (LtRunConfig *cfg)
{
  if (cfg == NULL)
    return;
  g_free (cfg->model);
  g_free (cfg->data);
  g_free (cfg->adapter_path);
  g_free (cfg->resume_adapter_file);
  g_strfreev (cfg->lora_keys);
  g_strfreev (cfg->sample_prompts);
  g_free (cfg->compute_device);
  g_free (cfg);
}

static gboolean
strv_equal0 (char **a, char **b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return g_strv_equal ((const char *const *) a, (const char *const *) b);
}

static gboolean
key_equal (const LtRunKeyInfo *info, const LtRunConfig *a, const LtRunConfig *b)
{
  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
      return g_strcmp0 (*CFIELD (a, info, char *), *CFIELD (b, info, char *)) == 0;
    case LT_RUN_KEY_STRV:
      return strv_equal0 (*CFIELD (a, info, char **), *CFIELD (b, info, char **));
    case LT_RUN_KEY_INT:
      return *CFIELD (a, info, int) == *CFIELD (b, info, int);
    case LT_RUN_KEY_ENUM:
      return *CFIELD (a, info, int) == *CFIELD (b, info, int);
    case LT_RUN_KEY_INT64:
      return *CFIELD (a, info, gint64) == *CFIELD (b, info, gint64);
    case LT_RUN_KEY_DOUBLE:
      return *CFIELD (a, info, double) == *CFIELD (b, info, double);
    case LT_RUN_KEY_BOOLEAN:
      return !*CFIELD (a, info, gboolean) == !*CFIELD (b, info, gboolean);
    default:
      g_assert_not_reached ();
    }
}

gboolean
lt_run_config_equal (const LtRunConfig *a, const LtRunConfig *b)
{
  g_return_val_if_fail (a != NULL && b != NULL, FALSE);
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    if (keys[i].alias_of == NULL && !key_equal (&keys[i], a, b))
      return FALSE;
  return TRUE;
}

/* ---- values to text ---- */

char *
lt_run_config_dup_value_string (const LtRunConfig *cfg, const char *key)
{
  const LtRunKeyInfo *info;

  g_return_val_if_fail (cfg != NULL && key != NULL, NULL);
  info = lt_run_config_lookup_key (key);
  g_return_val_if_fail (info != NULL, NULL);
  if (info->quant != 0)
    return g_strdup ((int) cfg->quantization == info->quant ? "true" : "false");

  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
      return g_strdup (*CFIELD (cfg, info, char *));
    case LT_RUN_KEY_STRV:
      {
        char **v = *CFIELD (cfg, info, char **);
        return v ? g_strjoinv (",", v) : NULL;
      }
    case LT_RUN_KEY_INT:
      return g_strdup_printf ("%d", *CFIELD (cfg, info, int));
    case LT_RUN_KEY_INT64:
      return g_strdup_printf ("%" G_GINT64_FORMAT, *CFIELD (cfg, info, gint64));
    case LT_RUN_KEY_DOUBLE:
      return lt_json_format_double (*CFIELD (cfg, info, double));
    case LT_RUN_KEY_BOOLEAN:
      return g_strdup (*CFIELD (cfg, info, gboolean) ? "true" : "false");
    case LT_RUN_KEY_ENUM:
      return g_strdup (names_get (enum_names[info->enum_id], *CFIELD (cfg, info, int)));
    default:
      g_assert_not_reached ();
    }
}

/* ---- applying JSON ---- */

/* Where a run configuration's key sits: no file (the caller adds it), the key path @key,
 * LT_ERROR_INVALID_ARGUMENT (settings the user wrote). */
#define RUN_KEY(key) (&(const LtJsonAt) { NULL, (key), LT_ERROR_INVALID_ARGUMENT })

static gboolean
type_error (GError **error, const char *key, const char *expected, JsonNode *node)
{
  return lt_json_wrong_type (RUN_KEY (key), NULL, expected, node, error);
}

static gboolean
get_number (JsonNode *node, const char *key, gboolean accept_string, double *out,
            GError **error)
{
  if (accept_string && lt_json_holds (node, G_TYPE_STRING))
    {
      const char *s = json_node_get_string (node);
      char *end = NULL;

      errno = 0;
      *out = g_ascii_strtod (s, &end);
      if (*s == '\0' || end == NULL || *end != '\0' || errno == ERANGE)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       _("key “%s”: expected a number, got “%s”"), key, s);
          return FALSE;
        }
    }
  else if (!lt_json_node_double (RUN_KEY (key), node, out, error))
    return FALSE;

  if (!isfinite (*out))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   _("key “%s”: expected a finite number"), key);
      return FALSE;
    }
  return TRUE;
}

static gboolean
enum_value_error (GError **error, const char *key, int enum_id, const char *value)
{
  g_autofree char *expected = g_strjoinv (", ", (char **) enum_names[enum_id]);

  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               _("key “%s”: unknown value “%s” (expected one of %s)"), key, value, expected);
  return FALSE;
}

/* Sets one table key from a JSON node. @key is the name for messages. */
static gboolean
apply_key (LtRunConfig *cfg, const LtRunKeyInfo *info, const char *key, JsonNode *node,
           GError **error)
{
  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
      {
        char **field = FIELD (cfg, info, char *);

        if (info->nullable && JSON_NODE_HOLDS_NULL (node))
          {
            g_clear_pointer (field, g_free);
            return TRUE;
          }
        if (!lt_json_holds (node, G_TYPE_STRING))
          return type_error (error, key, _("a string"), node);
        g_free (*field);
        *field = g_strdup (json_node_get_string (node));
        return TRUE;
      }
    case LT_RUN_KEY_STRV:
      {
        char ***field = FIELD (cfg, info, char **);
        JsonArray *array;
        GStrvBuilder *b;

        if (info->nullable && JSON_NODE_HOLDS_NULL (node))
          {
            g_clear_pointer (field, g_strfreev);
            return TRUE;
          }
        if (!JSON_NODE_HOLDS_ARRAY (node))
          return type_error (error, key, _("an array of strings"), node);
        array = json_node_get_array (node);
        for (guint i = 0; i < json_array_get_length (array); i++)
          if (!lt_json_holds (json_array_get_element (array, i), G_TYPE_STRING))
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           _("key “%s”: expected an array of strings, got %s at index %u"),
                           key, lt_json_type_name (json_array_get_element (array, i)), i);
              return FALSE;
            }
        b = g_strv_builder_new ();
        for (guint i = 0; i < json_array_get_length (array); i++)
          g_strv_builder_add (b, json_array_get_string_element (array, i));
        g_strfreev (*field);
        *field = g_strv_builder_end (b);
        g_strv_builder_unref (b);
        return TRUE;
      }
    case LT_RUN_KEY_INT:
      {
        gint64 v;

        if (!lt_json_node_int (RUN_KEY (key), node, G_MININT, G_MAXINT, &v, error))
          return FALSE;
        *FIELD (cfg, info, int) = (int) v;
        return TRUE;
      }
    case LT_RUN_KEY_INT64:
      {
        gint64 v;

        if (!lt_json_node_int (RUN_KEY (key), node, G_MININT64, G_MAXINT64, &v, error))
          return FALSE;
        *FIELD (cfg, info, gint64) = v;
        return TRUE;
      }
    case LT_RUN_KEY_DOUBLE:
      {
        double v;
        /* mlx-lm's YAML loader reads 1e-5 as a string; accept that spelling for the lr. */
        gboolean accept_string = strcmp (info->key, "learning_rate") == 0;

        if (!get_number (node, key, accept_string, &v, error))
          return FALSE;
        *FIELD (cfg, info, double) = v;
        return TRUE;
      }
    case LT_RUN_KEY_BOOLEAN:
      if (!lt_json_holds (node, G_TYPE_BOOLEAN))
        return type_error (error, key, _("a boolean"), node);
      *FIELD (cfg, info, gboolean) = json_node_get_boolean (node);
      return TRUE;
    case LT_RUN_KEY_ENUM:
      {
        int v;

        if (!lt_json_holds (node, G_TYPE_STRING))
          return type_error (error, key, _("a string"), node);
        v = names_lookup (enum_names[info->enum_id], json_node_get_string (node));
        if (v < 0)
          return enum_value_error (error, key, info->enum_id, json_node_get_string (node));
        *FIELD (cfg, info, int) = v;
        return TRUE;
      }
    default:
      g_assert_not_reached ();
    }
}

static gboolean
unknown_key_error (GError **error, const char *key)
{
  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, _("unknown key “%s”"), key);
  return FALSE;
}

static gboolean
apply_lora_parameters (LtRunConfig *cfg, JsonNode *node, GError **error)
{
  JsonObject *obj;
  g_autoptr (GList) members = NULL;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return type_error (error, "lora_parameters", _("an object"), node);
  obj = json_node_get_object (node);
  members = json_object_get_members (obj);
  for (GList *l = members; l != NULL; l = l->next)
    {
      g_autofree char *key = g_strconcat ("lora_parameters.", (const char *) l->data, NULL);
      const LtRunKeyInfo *info = lookup_json_key (key);

      if (info == NULL)
        return unknown_key_error (error, key);
      if (!apply_key (cfg, info, key, json_object_get_member (obj, l->data), error))
        return FALSE;
    }
  return TRUE;
}

/* optimizer_config: the sections share fields; track who set what to catch conflicts. */
typedef struct
{
  const char *name;   /* "weight_decay", "beta1", … */
  double value;
  char *set_by;       /* the JSON key that set it */
} SharedField;

static gboolean
set_shared (SharedField *fields, gsize n, const char *name, double value, const char *key,
            GError **error)
{
  for (gsize i = 0; i < n; i++)
    if (strcmp (fields[i].name, name) == 0)
      {
        if (fields[i].set_by != NULL && fields[i].value != value)
          {
            g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                         _("key “%s”: conflicts with “%s” (the optimizer sections share "
                           "this value)"), key, fields[i].set_by);
            return FALSE;
          }
        fields[i].value = value;
        g_free (fields[i].set_by);
        fields[i].set_by = g_strdup (key);
        return TRUE;
      }
  g_assert_not_reached ();
}

static gboolean
apply_optimizer_section (SharedField *fields, gsize n_fields, const char *section,
                         JsonNode *node, GError **error)
{
  static const struct
  {
    const char *section;
    const char *allowed[4];
  } sections[] = {
    { "adamw", { "weight_decay", "betas", "eps", NULL } },
    { "adam", { "betas", "eps", NULL } },
    { "sgd", { "momentum", "weight_decay", NULL } },
  };
  g_autofree char *prefix = g_strconcat ("optimizer_config.", section, NULL);
  const char *const *allowed = NULL;
  g_autoptr (GList) members = NULL;
  JsonObject *obj;

  for (gsize i = 0; i < G_N_ELEMENTS (sections); i++)
    if (strcmp (sections[i].section, section) == 0)
      allowed = sections[i].allowed;
  if (allowed == NULL)
    return unknown_key_error (error, prefix);
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return type_error (error, prefix, _("an object"), node);

  obj = json_node_get_object (node);
  members = json_object_get_members (obj);
  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *name = l->data;
      JsonNode *m = json_object_get_member (obj, name);
      g_autofree char *key = g_strconcat (prefix, ".", name, NULL);

      if (!g_strv_contains (allowed, name))
        return unknown_key_error (error, key);
      if (strcmp (name, "betas") == 0)
        {
          JsonArray *a;
          double b[2];

          if (!JSON_NODE_HOLDS_ARRAY (m))
            return type_error (error, key, _("an array of two numbers"), m);
          a = json_node_get_array (m);
          if (json_array_get_length (a) != 2)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           _("key “%s”: expected an array of two numbers, got %u elements"),
                           key, json_array_get_length (a));
              return FALSE;
            }
          for (guint i = 0; i < 2; i++)
            {
              g_autofree char *ekey = g_strdup_printf ("%s[%u]", key, i);
              if (!get_number (json_array_get_element (a, i), ekey, FALSE, &b[i], error))
                return FALSE;
            }
          if (!set_shared (fields, n_fields, "beta1", b[0], key, error)
              || !set_shared (fields, n_fields, "beta2", b[1], key, error))
            return FALSE;
        }
      else
        {
          double v;
          if (!get_number (m, key, FALSE, &v, error)
              || !set_shared (fields, n_fields, name, v, key, error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
apply_optimizer_config (LtRunConfig *cfg, JsonNode *node, GError **error)
{
  SharedField fields[] = {
    { "weight_decay", cfg->weight_decay, NULL },
    { "beta1", cfg->beta1, NULL },
    { "beta2", cfg->beta2, NULL },
    { "eps", cfg->eps, NULL },
    { "momentum", cfg->momentum, NULL },
  };
  g_autoptr (GList) members = NULL;
  JsonObject *obj;
  gboolean ok = TRUE;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return type_error (error, "optimizer_config", _("an object"), node);
  obj = json_node_get_object (node);
  members = json_object_get_members (obj);
  for (GList *l = members; l != NULL && ok; l = l->next)
    ok = apply_optimizer_section (fields, G_N_ELEMENTS (fields), l->data,
                                  json_object_get_member (obj, l->data), error);
  if (ok)
    {
      cfg->weight_decay = fields[0].value;
      cfg->beta1 = fields[1].value;
      cfg->beta2 = fields[2].value;
      cfg->eps = fields[3].value;
      cfg->momentum = fields[4].value;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
    g_free (fields[i].set_by);
  return ok;
}

/* mlx-lm's {"name", "arguments", "warmup", "warmup_init"} form. */
static gboolean
apply_lr_schedule_object (LtRunConfig *cfg, JsonObject *obj, GError **error)
{
  g_autoptr (GList) members = json_object_get_members (obj);
  JsonNode *name_node = json_object_get_member (obj, "name");
  const char *name;
  int schedule;

  for (GList *l = members; l != NULL; l = l->next)
    {
      const char *m = l->data;
      if (strcmp (m, "name") != 0 && strcmp (m, "arguments") != 0 && strcmp (m, "warmup") != 0
          && strcmp (m, "warmup_init") != 0)
        {
          g_autofree char *key = g_strconcat ("lr_schedule.", m, NULL);
          return unknown_key_error (error, key);
        }
    }

  if (name_node == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   _("key “lr_schedule”: the object needs a “name”"));
      return FALSE;
    }
  if (!lt_json_holds (name_node, G_TYPE_STRING))
    return type_error (error, "lr_schedule.name", _("a string"), name_node);
  name = json_node_get_string (name_node);
  if (strcmp (name, "cosine_decay") == 0)
    schedule = LT_LR_SCHEDULE_COSINE;
  else if (strcmp (name, "linear_schedule") == 0)
    schedule = LT_LR_SCHEDULE_LINEAR;
  else
    schedule = lt_lr_schedule_from_string (name);
  if (schedule < 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   _("key “lr_schedule.name”: unsupported schedule “%s” (expected one of "
                     "cosine_decay, linear_schedule, constant, cosine, linear)"), name);
      return FALSE;
    }
  cfg->lr_schedule = schedule;

  if (json_object_has_member (obj, "arguments"))
    {
      JsonNode *n = json_object_get_member (obj, "arguments");
      JsonArray *a;

      if (!JSON_NODE_HOLDS_ARRAY (n))
        return type_error (error, "lr_schedule.arguments", _("an array of numbers"), n);
      a = json_node_get_array (n);
      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          g_autofree char *key = g_strdup_printf ("lr_schedule.arguments[%u]", i);
          double v;

          if (!get_number (json_array_get_element (a, i), key, TRUE, &v, error))
            return FALSE;
          if (i == 0)
            cfg->learning_rate = v; /* mlx-lm: the first argument is the initial rate */
        }
    }
  if (json_object_has_member (obj, "warmup"))
    {
      gint64 v;
      if (!lt_json_node_int (RUN_KEY ("lr_schedule.warmup"), json_object_get_member (obj, "warmup"),
                             G_MININT, G_MAXINT, &v, error))
        return FALSE;
      cfg->warmup_steps = (int) v;
    }
  if (json_object_has_member (obj, "warmup_init"))
    {
      double v;
      if (!get_number (json_object_get_member (obj, "warmup_init"), "lr_schedule.warmup_init",
                       TRUE, &v, error))
        return FALSE;
      if (v != 0.0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       _("key “lr_schedule.warmup_init”: Lathe warms up from 0, got %g"), v);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
apply_lr_schedule (LtRunConfig *cfg, const LtRunKeyInfo *info, JsonNode *node, GError **error)
{
  if (JSON_NODE_HOLDS_OBJECT (node))
    return apply_lr_schedule_object (cfg, json_node_get_object (node), error);
  if (JSON_NODE_HOLDS_NULL (node)) /* mlx-lm's default: no schedule */
    {
      cfg->lr_schedule = LT_LR_SCHEDULE_CONSTANT;
      return TRUE;
    }
  if (!lt_json_holds (node, G_TYPE_STRING))
    return type_error (error, "lr_schedule", _("a string or an object"), node);
  return apply_key (cfg, info, "lr_schedule", node, error);
}

/* mlx-lm keys with no meaning for Lathe that an mlx-lm config carries. */
static gboolean
apply_mlx_flag (const char *key, JsonNode *node, gboolean accepted, const char *why,
                GError **error)
{
  if (!lt_json_holds (node, G_TYPE_BOOLEAN))
    return type_error (error, key, _("a boolean"), node);
  if (json_node_get_boolean (node) != accepted)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "key “%s”: %s", key, why);
      return FALSE;
    }
  return TRUE;
}

static gboolean
apply_json_to (LtRunConfig *cfg, JsonObject *obj, GError **error)
{
  g_autoptr (GList) members = json_object_get_members (obj);
  const LtRunKeyInfo *load_in_true = NULL;  /* the load_in_* key that is true */
  GPtrArray *load_in_false = g_ptr_array_new (); /* load_in_* keys that are false */
  const char *train_type_key = NULL;
  int train_type_value = -1;
  const char *accum_key = NULL;
  int accum_value = 0;
  gboolean ok = TRUE;

  for (GList *l = members; l != NULL && ok; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);
      const LtRunKeyInfo *info = lookup_json_key (name);

      if (strcmp (name, "lora_parameters") == 0)
        ok = apply_lora_parameters (cfg, node, error);
      else if (strcmp (name, "optimizer_config") == 0)
        ok = apply_optimizer_config (cfg, node, error);
      else if (strcmp (name, "lr_schedule") == 0)
        continue; /* below, so that its arguments[0] wins over "learning_rate" (mlx-lm) */
      else if (strcmp (name, "train") == 0)
        ok = apply_mlx_flag (name, node, TRUE, _("every Lathe run trains; “false” is not "
                                                 "supported"), error);
      else if (strcmp (name, "test") == 0)
        ok = apply_mlx_flag (name, node, FALSE, _("Lathe has no test pass; use “lathe eval”"),
                             error);
      else if (info == NULL || strchr (name, '.') != NULL)
        ok = unknown_key_error (error, name);
      else if (info->quant != 0)
        {
          if (!lt_json_holds (node, G_TYPE_BOOLEAN))
            ok = type_error (error, name, _("a boolean"), node);
          else if (!json_node_get_boolean (node))
            g_ptr_array_add (load_in_false, (gpointer) info);
          else if (load_in_true != NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           _("keys “%s” and “%s” are both true; choose one quantization"),
                           load_in_true->key, name);
              ok = FALSE;
            }
          else
            load_in_true = info;
        }
      else
        {
          ok = apply_key (cfg, info, name, node, error);
          if (ok && info->offset == OFF (train_type))
            {
              if (train_type_key != NULL && train_type_value != (int) cfg->train_type)
                {
                  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                               _("keys “%s” and “%s” disagree"), train_type_key, name);
                  ok = FALSE;
                }
              train_type_key = name;
              train_type_value = cfg->train_type;
            }
          if (ok && info->offset == OFF (gradient_accumulation_steps))
            {
              if (accum_key != NULL && accum_value != cfg->gradient_accumulation_steps)
                {
                  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                               _("keys “%s” and “%s” disagree"), accum_key, name);
                  ok = FALSE;
                }
              accum_key = name;
              accum_value = cfg->gradient_accumulation_steps;
            }
        }
    }

  if (ok && json_object_has_member (obj, "lr_schedule"))
    ok = apply_lr_schedule (cfg, lookup_json_key ("lr_schedule"),
                            json_object_get_member (obj, "lr_schedule"), error);

  /* load_in_* after everything else, so their order against "quantization" does not matter. */
  if (ok)
    {
      gboolean has_q = json_object_has_member (obj, "quantization");

      if (load_in_true != NULL)
        {
          if (has_q && (int) cfg->quantization != load_in_true->quant)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           _("keys “quantization” and “%s” disagree"), load_in_true->key);
              ok = FALSE;
            }
          else
            cfg->quantization = load_in_true->quant;
        }
      for (guint i = 0; ok && i < load_in_false->len; i++)
        {
          const LtRunKeyInfo *info = g_ptr_array_index (load_in_false, i);
          if ((int) cfg->quantization != info->quant)
            continue;
          if (has_q)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           _("keys “quantization” and “%s” disagree"), info->key);
              ok = FALSE;
            }
          else
            cfg->quantization = LT_QUANTIZATION_NONE;
        }
    }
  g_ptr_array_unref (load_in_false);
  return ok;
}

gboolean
lt_run_config_apply_json (LtRunConfig *cfg, JsonObject *obj, GError **error)
{
  g_autoptr (LtRunConfig) tmp = NULL;
  LtRunConfig swap;

  g_return_val_if_fail (cfg != NULL, FALSE);
  g_return_val_if_fail (obj != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  tmp = lt_run_config_copy (cfg);
  if (!apply_json_to (tmp, obj, error))
    return FALSE;
  /* Swap contents so the old strings are freed with tmp. */
  swap = *cfg;
  *cfg = *tmp;
  *tmp = swap;
  return TRUE;
}

static gboolean
set_value_from_string (LtRunConfig *cfg, const LtRunKeyInfo *info, const char *value,
                       GError **error)
{
  g_autoptr (JsonNode) node = NULL;

  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
    case LT_RUN_KEY_ENUM:
      node = json_node_init_string (json_node_alloc (), value);
      break;
    case LT_RUN_KEY_STRV:
      {
        JsonArray *a = json_array_new ();
        if (*value != '\0')
          {
            g_auto (GStrv) parts = g_strsplit (value, ",", -1);
            for (char **p = parts; *p != NULL; p++)
              json_array_add_string_element (a, *p);
          }
        node = json_node_init_array (json_node_alloc (), a);
        json_array_unref (a);
        break;
      }
    case LT_RUN_KEY_INT:
    case LT_RUN_KEY_INT64:
      {
        gint64 v;
        if (!g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, &v, NULL))
          {
            g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                         _("key “%s”: expected an integer, got “%s”"), info->key, value);
            return FALSE;
          }
        node = json_node_init_int (json_node_alloc (), v);
        break;
      }
    case LT_RUN_KEY_DOUBLE:
      {
        char *end = NULL;
        double v;

        errno = 0;
        v = g_ascii_strtod (value, &end);
        if (*value == '\0' || *end != '\0' || errno == ERANGE)
          {
            g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                         _("key “%s”: expected a number, got “%s”"), info->key, value);
            return FALSE;
          }
        node = json_node_init_double (json_node_alloc (), v);
        break;
      }
    case LT_RUN_KEY_BOOLEAN:
      {
        gboolean v;
        if (g_ascii_strcasecmp (value, "true") == 0 || strcmp (value, "1") == 0
            || g_ascii_strcasecmp (value, "yes") == 0)
          v = TRUE;
        else if (g_ascii_strcasecmp (value, "false") == 0 || strcmp (value, "0") == 0
                 || g_ascii_strcasecmp (value, "no") == 0)
          v = FALSE;
        else
          {
            g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                         _("key “%s”: expected true or false, got “%s”"), info->key, value);
            return FALSE;
          }
        node = json_node_init_boolean (json_node_alloc (), v);
        break;
      }
    default:
      g_assert_not_reached ();
    }

  if (info->quant != 0)
    {
      g_autoptr (JsonObject) obj = json_object_new ();
      json_object_set_member (obj, info->key, g_steal_pointer (&node));
      return lt_run_config_apply_json (cfg, obj, error);
    }
  else
    {
      g_autoptr (LtRunConfig) tmp = lt_run_config_copy (cfg);
      LtRunConfig swap;

      if (!apply_key (tmp, info, info->key, node, error))
        return FALSE;
      swap = *cfg;
      *cfg = *tmp;
      *tmp = swap;
      return TRUE;
    }
}

gboolean
lt_run_config_set_from_string (LtRunConfig *cfg, const char *key, const char *value,
                               GError **error)
{
  const LtRunKeyInfo *info;

  g_return_val_if_fail (cfg != NULL && key != NULL && value != NULL, FALSE);
  info = lt_run_config_lookup_key (key);
  if (info == NULL)
    return unknown_key_error (error, key);
  return set_value_from_string (cfg, info, value, error);
}

/* ---- files ---- */

static LtRunConfig *
from_parser (JsonParser *parser, const char *name, GError **error)
{
  JsonNode *root = json_parser_get_root (parser);
  g_autoptr (LtRunConfig) cfg = NULL;
  g_autoptr (GError) local = NULL;

  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   _("%s: expected a JSON object at the top level"), name);
      return NULL;
    }
  cfg = lt_run_config_new ();
  if (!lt_run_config_apply_json (cfg, json_node_get_object (root), &local))
    {
      g_set_error (error, LT_ERROR, local->code, "%s: %s", name, local->message);
      return NULL;
    }
  return g_steal_pointer (&cfg);
}

LtRunConfig *
lt_run_config_new_from_file (const char *path, GError **error)
{
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) local = NULL;
  g_autofree char *contents = NULL;
  gsize len = 0;

  g_return_val_if_fail (path != NULL, NULL);
  if (!g_file_get_contents (path, &contents, &len, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return NULL;
    }
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, contents, (gssize) len, &local))
    {
      /* json-glib writes "<data>:LINE:COL: Parse error: …"; name the file instead. */
      const char *msg = local->message;
      if (g_str_has_prefix (msg, "<data>"))
        msg += strlen ("<data>");
      else
        msg = NULL;
      if (msg != NULL)
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s%s", path, msg);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s", path, local->message);
      return NULL;
    }
  return from_parser (parser, path, error);
}

LtRunConfig *
lt_run_config_new_from_data (const char *json, gssize len, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (json != NULL, NULL);
  if (!json_parser_load_from_data (parser, json, len, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s", local->message);
      return NULL;
    }
  return from_parser (parser, "<data>", error);
}

/* ---- writing ---- */

static JsonNode *
key_to_node (const LtRunConfig *cfg, const LtRunKeyInfo *info)
{
  JsonNode *node = json_node_alloc ();

  switch (info->type)
    {
    case LT_RUN_KEY_STRING:
      {
        const char *s = *CFIELD (cfg, info, char *);
        return s ? json_node_init_string (node, s) : json_node_init_null (node);
      }
    case LT_RUN_KEY_STRV:
      {
        char **v = *CFIELD (cfg, info, char **);
        JsonArray *a;

        if (v == NULL)
          return json_node_init_null (node);
        a = json_array_new ();
        for (char **p = v; *p != NULL; p++)
          json_array_add_string_element (a, *p);
        json_node_init_array (node, a);
        json_array_unref (a);
        return node;
      }
    case LT_RUN_KEY_INT:
      return json_node_init_int (node, *CFIELD (cfg, info, int));
    case LT_RUN_KEY_INT64:
      return json_node_init_int (node, *CFIELD (cfg, info, gint64));
    case LT_RUN_KEY_DOUBLE:
      return json_node_init_double (node, *CFIELD (cfg, info, double));
    case LT_RUN_KEY_BOOLEAN:
      return json_node_init_boolean (node, *CFIELD (cfg, info, gboolean));
    case LT_RUN_KEY_ENUM:
      return json_node_init_string (node, names_get (enum_names[info->enum_id],
                                                     *CFIELD (cfg, info, int)));
    default:
      g_assert_not_reached ();
    }
}

static JsonArray *
betas_array (const LtRunConfig *cfg)
{
  JsonArray *a = json_array_new ();
  json_array_add_double_element (a, cfg->beta1);
  json_array_add_double_element (a, cfg->beta2);
  return a;
}

JsonNode *
lt_run_config_to_json (const LtRunConfig *cfg)
{
  JsonObject *root, *lora = NULL, *oc = NULL, *adamw, *adam, *sgd;

  g_return_val_if_fail (cfg != NULL, NULL);
  root = json_object_new ();
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const LtRunKeyInfo *info = &keys[i];

      if (info->alias_of != NULL)
        continue;
      if (g_str_has_prefix (info->key, "lora_parameters."))
        {
          if (lora == NULL)
            {
              lora = json_object_new ();
              json_object_set_object_member (root, "lora_parameters", lora);
            }
          json_object_set_member (lora, info->key + strlen ("lora_parameters."),
                                  key_to_node (cfg, info));
        }
      else if (g_str_has_prefix (info->key, "optimizer_config."))
        {
          if (oc != NULL)
            continue;
          oc = json_object_new ();
          adamw = json_object_new ();
          json_object_set_double_member (adamw, "weight_decay", cfg->weight_decay);
          json_object_set_array_member (adamw, "betas", betas_array (cfg));
          json_object_set_double_member (adamw, "eps", cfg->eps);
          adam = json_object_new ();
          json_object_set_array_member (adam, "betas", betas_array (cfg));
          json_object_set_double_member (adam, "eps", cfg->eps);
          sgd = json_object_new ();
          json_object_set_double_member (sgd, "momentum", cfg->momentum);
          json_object_set_double_member (sgd, "weight_decay", cfg->weight_decay);
          json_object_set_object_member (oc, "adamw", adamw);
          json_object_set_object_member (oc, "adam", adam);
          json_object_set_object_member (oc, "sgd", sgd);
          json_object_set_object_member (root, "optimizer_config", oc);
        }
      else
        json_object_set_member (root, info->key, key_to_node (cfg, info));
    }
  /* json_node_init_object takes its own reference: the whole tree leaked on every call (found
   * by fuzz-run-config: out of memory after 1.4 M runs) */
  JsonNode *node = json_node_init_object (json_node_alloc (), root);
  json_object_unref (root);
  return node;
}

char *
lt_run_config_to_string (const LtRunConfig *cfg, gboolean pretty)
{
  g_autoptr (JsonNode) root = NULL;

  g_return_val_if_fail (cfg != NULL, NULL);
  root = lt_run_config_to_json (cfg);
  return lt_json_to_string (root, pretty);
}

gboolean
lt_run_config_save (const LtRunConfig *cfg, const char *path, GError **error)
{
  g_autofree char *text = NULL;
  g_autofree char *with_nl = NULL;
  g_autoptr (GError) local = NULL;

  g_return_val_if_fail (cfg != NULL && path != NULL, FALSE);
  text = lt_run_config_to_string (cfg, TRUE);
  with_nl = g_strconcat (text, "\n", NULL);
  if (!g_file_set_contents_full (path, with_nl, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                 0666, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s", local->message);
      return FALSE;
    }
  return TRUE;
}

/* ---- the command line ---- */

GStrv
lt_run_config_to_argv (const LtRunConfig *cfg)
{
  g_autoptr (LtRunConfig) def = lt_run_config_new ();
  GStrvBuilder *b = g_strv_builder_new ();
  GStrv argv;

  g_return_val_if_fail (cfg != NULL, NULL);
  g_strv_builder_add (b, "lathe");
  g_strv_builder_add (b, "train");
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      const LtRunKeyInfo *info = &keys[i];
      g_autofree char *value = NULL;

      if (info->alias_of != NULL || key_equal (info, cfg, def))
        continue;
      if (info->type == LT_RUN_KEY_BOOLEAN)
        {
          g_autofree char *flag = g_strdup_printf (*CFIELD (cfg, info, gboolean) ? "--%s"
                                                                                : "--no-%s",
                                                   info->flag);
          g_strv_builder_add (b, flag);
          continue;
        }
      value = lt_run_config_dup_value_string (cfg, info->key);
      if (value == NULL) /* a NULL string where the default has one: no flag says that */
        continue;
      g_autofree char *flag = g_strconcat ("--", info->flag, NULL);
      g_strv_builder_add (b, flag);
      g_strv_builder_add (b, value);
    }
  argv = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  return argv;
}
