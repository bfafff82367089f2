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
/* "compute_dtype": auto picks bf16 where the CPU has AMX-BF16 or AVX512-BF16 (lt-compute.h). */
typedef enum
{
  LT_COMPUTE_DTYPE_AUTO,
  LT_COMPUTE_DTYPE_F32,
  LT_COMPUTE_DTYPE_BF16,
} LtComputeDTypeChoice;

typedef struct
{
  /* model & data */
  char *model;               /* "model": model folder */
  char *data;                /* "data": folder with train/valid.jsonl, or one file */
  char *adapter_path;        /* "adapter_path": run folder (default "adapters", as mlx-lm) */
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

  /* preference training (appended) */
  int dpo_loss_type;         /* "dpo_loss_type": 0 sigmoid, 1 hinge, 2 ipo (lt-preference) */
  double label_smoothing;    /* "label_smoothing": DPO sigmoid, default 0 */

  /* samples while training (appended) */
  char **sample_prompts;     /* "sample_prompts": prompts generated from greedily during the
                                run; one entry naming a .jsonl file reads its "prompt" lines.
                                NULL = none */
  int steps_per_sample;      /* "steps_per_sample": every N steps; 0 = at each evaluation */
  int sample_max_tokens;     /* "sample_max_tokens": tokens per sample, default 64 */

  /* QAT grid (appended) */
  int qat_mode;              /* "qat_mode": symmetric|affine|mxfp4|nf4 (the LtQuantMode values
                                0..3, lt-qat); default symmetric */
  /* precision of the matrix products (appended) */
  LtComputeDTypeChoice compute_dtype; /* "compute_dtype": auto|f32|bf16 (lt-compute.h) */
  /* where the training step runs (appended) */
  char *compute_device;      /* "compute_device": auto|cpu|vulkan|vulkan:N (lt-vulkan-model.h);
                                auto is the CPU in this stage; default "auto" */
  /* sequence packing (appended) */
  gboolean packing;          /* "packing": a micro-batch takes consecutive examples while their
                                tokens fit batch_size × max_seq_length (lt-trainer-batch.h);
                                SFT only, default false */
  /* a learned QAT grid (appended) */
  gboolean qat_learn_grid;   /* "qat_learn_grid": the QAT grid's scales (and affine biases) are
                                trained parameters (lt-qat-grid), saved with the adapter and
                                stored by the merged export; symmetric / affine, group > 0;
                                the CPU trainer only; default false */
  double qat_grid_lr_scale;  /* "qat_grid_lr_scale": a learned grid's parameters step with the
                                run's learning rate × this (lt-optimizer), > 0; default 0.3
                                (bench-qat-export); 1: the adapter's, as before */
} LtRunConfig;

/* One problem with one key, for inline display on the form. */
typedef struct
{
  char *key;     /* the JSON key, e.g. "lora_parameters.rank", "qat_group_size", "model" */
  char *message; /* translated, user-facing */
  int code;      /* the LtError code a run reports it with; 0 = LT_ERROR_INVALID_ARGUMENT */
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

/* (Implemented in lt-run-check.c, beside the checks that need the model and the data.)
 * Range and consistency checks, every rule on the values alone (lt-run-check.h adds the model's
 * shapes and the dataset): ranges, finite numbers (a learning rate or warm-up whose schedule
 * overflows is refused), the fake quantizer's group sizes (lt_fake_quantize_group_sizes) when
 * QAT is on. With @for_start, also what a run needs (a model path, data).
 * Returns a GPtrArray of LtRunIssue (empty when valid). */
GPtrArray *lt_run_config_check (const LtRunConfig *cfg, gboolean for_start);
/* FALSE + an LT_ERROR with the first issue's "key: message" (its code, by default
 * LT_ERROR_INVALID_ARGUMENT). */
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
const char *lt_compute_dtype_choice_to_string (LtComputeDTypeChoice v);
int lt_compute_dtype_choice_from_string (const char *s);
/* Resolves @v on this machine and makes it the process's compute dtype (lt_compute_set_dtype).
 * Returns "f32" or "bf16"; *why (may be NULL) gets a static English reason for the log and
 * run.json ("requested", "auto: the CPU has AMX-BF16", …). */
const char *lt_run_apply_compute_dtype (LtComputeDTypeChoice v, const char **why);
/* The same without applying it (for a line printed before the run starts). */
const char *lt_run_describe_compute_dtype (LtComputeDTypeChoice v, const char **why);
/* Parses a compute_device value: FALSE when it is not auto, cpu, vulkan or vulkan:N (N a
 * device index); else *vulkan (may be NULL) says whether the GPU was asked for (auto: no, in
 * this stage) and *index (may be NULL) the device (0 for plain "vulkan"). */
gboolean lt_run_parse_compute_device (const char *value, gboolean *vulkan, guint *index);
/* "cpu" or "vulkan:N" for a compute_device value (newly allocated), *why (static English,
 * may be NULL) "requested" or auto's reason, for run.json and the log. */
char *lt_run_describe_compute_device (const char *value, const char **why);
/* Bits and group size of a load-time quantization (0/0 for none). */
void lt_quantization_get_params (LtQuantization q, int *bits, int *group_size);

void lt_run_issue_free (LtRunIssue *issue);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunConfig, lt_run_config_free)

/* --- Added by lt-run.c: the key table, so the CLI, the app and the JSON cannot drift. --- */

/* Defaults (mlx-lm's lora.py CONFIG_DEFAULTS where mlx-lm has the key): rank 8, scale 20.0,
 * dropout 0.0, num_layers 16, batch_size 4, iters 1000, learning_rate 1e-5,
 * steps_per_report 10, steps_per_eval 200, save_every 100, val_batches 25,
 * max_seq_length 2048, seed 0, adapter_path "adapters", optimizer "adam",
 * gradient_accumulation_steps 1, mask_prompt/grad_checkpoint false.
 * Lathe's own: model/data NULL (must be given), epochs 0, lr_schedule constant,
 * warmup_steps 0, weight_decay 0.0 (MLX's AdamW would use 0.01; Lathe uses what the recipe
 * says, 0 unless set), betas 0.9/0.999, eps 1e-8, momentum 0, max_grad_norm 0 (no clipping),
 * shuffle true, beta 0.1 (mlx-lm-lora), QAT off with bits 4, group size 64, start step 1,
 * interval 1.
 *
 * Semantics worth knowing:
 * - epochs > 0 wins over iters (iters is then ignored); both 0 is an issue.
 * - optimizer_config: {"adamw": {"weight_decay", "betas": [b1, b2], "eps"},
 *   "adam": {"betas", "eps"}, "sgd": {"momentum", "weight_decay"}}. The sections share one
 *   set of values; two sections giving one value differently is an error.
 * - lr_schedule as mlx-lm's object {"name", "arguments", "warmup", "warmup_init"}: name
 *   cosine_decay -> cosine, linear_schedule -> linear (also constant/cosine/linear);
 *   arguments[0] sets learning_rate (over a "learning_rate" key, whatever the order, as in
 *   mlx-lm, where the schedule's first argument is the rate used); warmup sets warmup_steps.
 *   The decay length and end value in arguments are not kept: Lathe's schedules decay to 0
 *   over the run's steps. A non-zero warmup_init is an error (Lathe warms up from 0).
 *   null (mlx-lm's default) means constant.
 * - load_in_4bits/6bits/8bits/mxfp4: true selects that quantization; false turns it off when
 *   it is the one selected; disagreeing with "quantization" in the same object is an error.
 * - Accepted spellings from mlx-lm: "fine_tune_type" (= train_type), "grad_accumulation_steps"
 *   (= gradient_accumulation_steps), learning_rate as a string ("1e-5", as YAML gives it),
 *   "train": true (every Lathe run trains; false is an error) and "test": false (Lathe has no
 *   test pass; true is an error). These let an mlx-lm lora_config.yaml, as JSON, load
 *   unchanged. Everything else unknown is an error naming the key. */

typedef enum
{
  LT_RUN_KEY_STRING,  /* a string; "nullable" ones also take null */
  LT_RUN_KEY_STRV,    /* a list of strings (flag: comma-separated) */
  LT_RUN_KEY_INT,
  LT_RUN_KEY_INT64,
  LT_RUN_KEY_DOUBLE,
  LT_RUN_KEY_BOOLEAN, /* flags: --flag / --no-flag */
  LT_RUN_KEY_ENUM,
} LtRunKeyType;

typedef struct
{
  const char *key;         /* JSON key; nested keys dotted: "lora_parameters.rank",
                              "optimizer_config.weight_decay" (shared by the sections) */
  const char *flag;        /* `lathe train` long flag without the dashes */
  LtRunKeyType type;
  const char *alias_of;    /* NULL, or the key this one is another spelling of */
  const char *arg;         /* placeholder for --help: "N", "PATH", "lora|dora|full" */
  const char *description; /* untranslated: pass through g_dgettext (GETTEXT_PACKAGE, …) */
  /*< private >*/
  gsize offset;
  int enum_id;
  int quant;               /* load_in_*: the LtQuantization it selects */
  gboolean nullable;
} LtRunKeyInfo;

/* Every key, in documentation order; aliases (alias_of != NULL) come last. */
const LtRunKeyInfo *lt_run_config_get_keys (gsize *n_keys);
/* By JSON key ("lora_parameters.rank") or by flag ("rank", "batch-size"); NULL if unknown. */
const LtRunKeyInfo *lt_run_config_lookup_key (const char *key_or_flag);
/* Sets one key from its command-line spelling ("8", "1e-5", "true", "a,b" for lists).
 * Errors as apply_json's; @cfg is unchanged on error. */
gboolean lt_run_config_set_from_string (LtRunConfig *cfg, const char *key, const char *value,
                                        GError **error);
/* The value of @key as set_from_string takes it back; NULL for an unset (NULL) value. */
char *lt_run_config_dup_value_string (const LtRunConfig *cfg, const char *key);
/* With a model's shapes: an issue on "qat_group_size" naming the first of @in_features that
 * the group size does not divide, or NULL (also NULL when QAT is off or per tensor). */
LtRunIssue *lt_run_config_check_group_size (const LtRunConfig *cfg, const int *in_features,
                                            int n);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtRunIssue, lt_run_issue_free)

G_END_DECLS
