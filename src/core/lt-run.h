/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run: the run configuration (ARCHITECTURE.md §4) and the run directory (§5).
 *
 * One JSON object describes a run, the same for the app, the CLI (`lathe train --config
 * run.json`, every key also a flag) and a saved recipe. Key names follow mlx-lm /
 * mlx-lm-lora. Unknown keys are an error naming the key; wrong types name the key and the
 * expected type; out-of-range values name the key and the range. Nothing is clamped. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Enum values are stable (saved in GSettings); new values go at the end. */
typedef enum { LT_TRAIN_MODE_SFT, LT_TRAIN_MODE_DPO, LT_TRAIN_MODE_ORPO } LtTrainMode;
typedef enum { LT_TRAIN_TYPE_LORA, LT_TRAIN_TYPE_DORA, LT_TRAIN_TYPE_FULL } LtTrainType;
typedef enum
{
  LT_QUANTIZATION_NONE,
  LT_QUANTIZATION_4BIT,  /* symmetric, group 128 */
  LT_QUANTIZATION_6BIT,  /* symmetric, group 128 */
  LT_QUANTIZATION_8BIT,  /* symmetric, group 128 */
  LT_QUANTIZATION_MXFP4, /* group 32 */
  LT_QUANTIZATION_NF4,   /* group 64 */
} LtQuantization;
typedef enum { LT_LR_SCHEDULE_CONSTANT, LT_LR_SCHEDULE_COSINE, LT_LR_SCHEDULE_LINEAR } LtLrSchedule;
typedef enum { LT_OPTIMIZER_ADAMW, LT_OPTIMIZER_ADAM, LT_OPTIMIZER_SGD } LtOptimizerKind;

typedef struct
{
  /* model & data */
  char *model;               /* "model": model folder */
  char *data;                /* "data": folder with train/valid.jsonl, or one file */
  char *adapter_path;        /* "adapter_path": the run folder written (default "runs/<ts>") */
  char *resume_adapter_file; /* "resume_adapter_file": may be NULL */

  /* fine-tune */
  LtTrainMode train_mode;    /* "train_mode": sft|dpo|orpo */
  LtTrainType train_type;    /* "train_type": lora|dora|full (alias "fine_tune_type") */
  LtQuantization quantization; /* "quantization": none|4bit|6bit|8bit|mxfp4|nf4;
                                  also load_in_4bits/6bits/8bits/mxfp4 booleans */
  int lora_rank;             /* "lora_parameters": {"rank", "scale", "dropout", "keys"} */
  double lora_scale;
  double lora_dropout;
  char **lora_keys;          /* NULL = all linear layers of a block */
  int num_layers;            /* "num_layers": last N blocks; -1 = all */
  double learning_rate;
  LtLrSchedule lr_schedule;  /* "lr_schedule": constant|cosine|linear (mlx-lm dict form too) */
  int warmup_steps;
  int iters;                 /* 0 = use epochs */
  int epochs;                /* 0 = use iters */
  int batch_size;
  int gradient_accumulation_steps;
  int max_seq_length;
  gboolean mask_prompt;
  gboolean grad_checkpoint;
  gint64 seed;
  gboolean shuffle;
  LtOptimizerKind optimizer;
  double weight_decay;       /* "optimizer_config": {"adamw": {"weight_decay", "betas", "eps"}} */
  double beta1, beta2, eps;
  double momentum;           /* sgd */
  double max_grad_norm;      /* 0 = no clipping */
  int steps_per_report;
  int steps_per_eval;
  int save_every;
  int val_batches;           /* -1 = the whole validation set */
  double beta;               /* DPO beta / ORPO lambda */

  /* QAT */
  gboolean qat_enable;
  int qat_bits;              /* 2–8 */
  int qat_group_size;        /* 0 = per tensor */
  int qat_start_step;        /* >= 1 */
  int qat_interval;          /* >= 1 */
} LtRunConfig;

/* One problem with one key, for inline display on the form. */
typedef struct
{
  char *key;     /* the JSON key, e.g. "lora_parameters.rank", "qat_group_size", "model" */
  char *message; /* translated, user-facing */
} LtRunIssue;

LtRunConfig *lt_run_config_new (void);     /* all defaults */
LtRunConfig *lt_run_config_copy (const LtRunConfig *cfg);
void lt_run_config_free (LtRunConfig *cfg);
gboolean lt_run_config_equal (const LtRunConfig *a, const LtRunConfig *b);

/* Applies the keys present in @obj on top of @cfg. Unknown key, wrong type or bad enum
 * string: FALSE with an LT_ERROR_INVALID_ARGUMENT error naming the key, and @cfg unchanged. */
gboolean lt_run_config_apply_json (LtRunConfig *cfg, JsonObject *obj, GError **error);
/* Parses a file (errors name the file, and the line for JSON syntax errors). */
LtRunConfig *lt_run_config_new_from_file (const char *path, GError **error);
LtRunConfig *lt_run_config_new_from_data (const char *json, gssize len, GError **error);
/* Every key, defaults filled in. */
JsonNode *lt_run_config_to_json (const LtRunConfig *cfg);
char *lt_run_config_to_string (const LtRunConfig *cfg, gboolean pretty);
/* Atomic. */
gboolean lt_run_config_save (const LtRunConfig *cfg, const char *path, GError **error);

/* Range and consistency checks. With @for_start, also what a run needs (a model path, data).
 * Returns a GPtrArray of LtRunIssue (empty when valid). */
GPtrArray *lt_run_config_check (const LtRunConfig *cfg, gboolean for_start);
/* FALSE + LT_ERROR_INVALID_ARGUMENT with the first issue's "key: message". */
gboolean lt_run_config_validate (const LtRunConfig *cfg, gboolean for_start, GError **error);

/* The equivalent command line: {"lathe", "train", "--model", …}, only non-default flags. */
GStrv lt_run_config_to_argv (const LtRunConfig *cfg);

/* Enum <-> string ("sft", "lora", "4bit", "cosine", "adamw"); -1 when unknown. */
const char *lt_train_mode_to_string (LtTrainMode v);
int lt_train_mode_from_string (const char *s);
const char *lt_train_type_to_string (LtTrainType v);
int lt_train_type_from_string (const char *s);
const char *lt_quantization_to_string (LtQuantization v);
int lt_quantization_from_string (const char *s);
const char *lt_lr_schedule_to_string (LtLrSchedule v);
int lt_lr_schedule_from_string (const char *s);
const char *lt_optimizer_to_string (LtOptimizerKind v);
int lt_optimizer_from_string (const char *s);
/* Bits and group size of a load-time quantization (0/0 for none). */
void lt_quantization_get_params (LtQuantization q, int *bits, int *group_size);

void lt_run_issue_free (LtRunIssue *issue);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunConfig, lt_run_config_free)

G_END_DECLS
