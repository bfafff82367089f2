/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-run-settings"

#include "config.h"

#include <string.h>

#include "lathe-run-settings.h"

#include "lt-model-open.h"
#include "lt-preference.h"
#include "lt-quant.h"

struct _LatheRunSettings
{
  GObject parent_instance;

  /* Keys of the run configuration that have no form field (optimizer_config, shuffle, …):
   * kept from the last configuration set, so a recipe survives a trip through the form. */
  LtRunConfig *base;

  char *model;
  char *data;
  char *adapter_path;
  guint train_mode;
  guint train_type;
  guint quantization;
  int lora_rank;
  double lora_scale;
  double lora_dropout;
  char *lora_keys;
  gboolean all_layers;
  int num_layers;
  double learning_rate;
  guint lr_schedule;
  int warmup_steps;
  guint length_unit;
  int iters;
  int epochs;
  int batch_size;
  int gradient_accumulation_steps;
  int max_seq_length;
  gboolean mask_prompt;
  gboolean grad_checkpoint;
  gint64 seed;
  guint optimizer;
  double beta;
  guint dpo_loss_type;
  guint compute_dtype;
  gboolean packing;
  gboolean qat_learn_grid;
  int steps_per_report;
  int steps_per_eval;
  int save_every;
  gboolean qat_enable;
  int qat_bits;
  int qat_group_size;
  int qat_start_step;
  int qat_interval;
  guint qat_mode;          /* LtQuantMode 0..3: symmetric, affine, mxfp4, nf4 */
  char *sample_prompts;    /* comma-separated prompts, or a .jsonl path */
  char *compute_device;    /* "auto", "cpu", "vulkan:N" (lt-run's compute_device) */
  int steps_per_sample;
};

G_DEFINE_FINAL_TYPE (LatheRunSettings, lathe_run_settings, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_MODEL,
  PROP_DATA,
  PROP_ADAPTER_PATH,
  PROP_TRAIN_MODE,
  PROP_TRAIN_TYPE,
  PROP_QUANTIZATION,
  PROP_LORA_RANK,
  PROP_LORA_SCALE,
  PROP_LORA_DROPOUT,
  PROP_LORA_KEYS,
  PROP_ALL_LAYERS,
  PROP_NUM_LAYERS,
  PROP_LEARNING_RATE,
  PROP_LR_SCHEDULE,
  PROP_WARMUP_STEPS,
  PROP_LENGTH_UNIT,
  PROP_ITERS,
  PROP_EPOCHS,
  PROP_BATCH_SIZE,
  PROP_GRADIENT_ACCUMULATION_STEPS,
  PROP_MAX_SEQ_LENGTH,
  PROP_MASK_PROMPT,
  PROP_GRAD_CHECKPOINT,
  PROP_SEED,
  PROP_OPTIMIZER,
  PROP_BETA,
  PROP_DPO_LOSS_TYPE,
  PROP_STEPS_PER_REPORT,
  PROP_STEPS_PER_EVAL,
  PROP_SAVE_EVERY,
  PROP_QAT_ENABLE,
  PROP_QAT_BITS,
  PROP_QAT_GROUP_SIZE,
  PROP_QAT_START_STEP,
  PROP_QAT_INTERVAL,
  PROP_SAMPLE_PROMPTS,
  PROP_STEPS_PER_SAMPLE,
  PROP_QAT_MODE,
  PROP_COMPUTE_DTYPE,
  PROP_PACKING,
  PROP_COMPUTE_DEVICE,
  PROP_QAT_LEARN_GRID,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* Number of values of each enum-like (guint) property; a larger value (a list position that
 * is not one, e.g. GTK_INVALID_LIST_POSITION while a model is swapped) is ignored. */
static guint
enum_n_values (guint prop_id)
{
  switch (prop_id)
    {
    case PROP_TRAIN_MODE: return LT_TRAIN_MODE_ORPO + 1;
    case PROP_TRAIN_TYPE: return LT_TRAIN_TYPE_FULL + 1;
    case PROP_QUANTIZATION: return LT_QUANTIZATION_NF4 + 1;
    case PROP_LR_SCHEDULE: return LT_LR_SCHEDULE_LINEAR + 1;
    case PROP_OPTIMIZER: return LT_OPTIMIZER_SGD + 1;
    case PROP_LENGTH_UNIT: return LATHE_LENGTH_UNIT_EPOCHS + 1;
    case PROP_DPO_LOSS_TYPE: return LT_PREF_LOSS_IPO + 1;
    case PROP_QAT_MODE: return LT_QUANT_NF4 + 1;
    case PROP_COMPUTE_DTYPE: return LT_COMPUTE_DTYPE_BF16 + 1;
    default: g_assert_not_reached ();
    }
}

static const char *
enum_to_nick (guint prop_id, guint value)
{
  if (value >= enum_n_values (prop_id))
    return NULL;

  switch (prop_id)
    {
    case PROP_TRAIN_MODE: return lt_train_mode_to_string ((LtTrainMode) value);
    case PROP_TRAIN_TYPE: return lt_train_type_to_string ((LtTrainType) value);
    case PROP_QUANTIZATION: return lt_quantization_to_string ((LtQuantization) value);
    case PROP_LR_SCHEDULE: return lt_lr_schedule_to_string ((LtLrSchedule) value);
    case PROP_OPTIMIZER: return lt_optimizer_to_string ((LtOptimizerKind) value);
    case PROP_LENGTH_UNIT: return value == LATHE_LENGTH_UNIT_EPOCHS ? "epochs" : "iterations";
    case PROP_DPO_LOSS_TYPE:
      return value == LT_PREF_LOSS_HINGE ? "hinge" : value == LT_PREF_LOSS_IPO ? "ipo" : "sigmoid";
    case PROP_QAT_MODE: return lt_quant_mode_name ((LtQuantMode) value);
    case PROP_COMPUTE_DTYPE:
      return lt_compute_dtype_choice_to_string ((LtComputeDTypeChoice) value);
    default: g_assert_not_reached ();
    }
}

static int
enum_from_nick (guint prop_id, const char *nick)
{
  switch (prop_id)
    {
    case PROP_TRAIN_MODE: return lt_train_mode_from_string (nick);
    case PROP_TRAIN_TYPE: return lt_train_type_from_string (nick);
    case PROP_QUANTIZATION: return lt_quantization_from_string (nick);
    case PROP_LR_SCHEDULE: return lt_lr_schedule_from_string (nick);
    case PROP_OPTIMIZER: return lt_optimizer_from_string (nick);
    case PROP_LENGTH_UNIT:
      if (g_strcmp0 (nick, "iterations") == 0)
        return LATHE_LENGTH_UNIT_ITERATIONS;
      if (g_strcmp0 (nick, "epochs") == 0)
        return LATHE_LENGTH_UNIT_EPOCHS;
      return -1;
    case PROP_DPO_LOSS_TYPE:
      {
        int v = lt_pref_loss_from_string (nick);
        return v <= LT_PREF_LOSS_IPO ? v : -1;
      }
    case PROP_QAT_MODE:
      {
        int v = lt_quant_mode_from_name (nick);
        return v <= LT_QUANT_NF4 ? v : -1;
      }
    case PROP_COMPUTE_DTYPE: return lt_compute_dtype_choice_from_string (nick);
    default: g_assert_not_reached ();
    }
}

/* The setter idiom: return early when nothing changed, notify by pspec. */
static void
set_string (LatheRunSettings *self, guint prop_id, char **field, const char *value)
{
  if (value == NULL)
    value = "";
  if (g_strcmp0 (*field, value) == 0)
    return;
  g_free (*field);
  *field = g_strdup (value);
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
set_int (LatheRunSettings *self, guint prop_id, int *field, int value)
{
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
set_int64 (LatheRunSettings *self, guint prop_id, gint64 *field, gint64 value)
{
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
set_uint_enum (LatheRunSettings *self, guint prop_id, guint *field, guint value)
{
  if (value >= enum_n_values (prop_id))
    return;
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
set_double (LatheRunSettings *self, guint prop_id, double *field, double value)
{
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
set_boolean (LatheRunSettings *self, guint prop_id, gboolean *field, gboolean value)
{
  value = !!value;
  if (*field == value)
    return;
  *field = value;
  g_object_notify_by_pspec (G_OBJECT (self), properties[prop_id]);
}

static void
lathe_run_settings_finalize (GObject *object)
{
  LatheRunSettings *self = (LatheRunSettings *) object;

  g_clear_pointer (&self->base, lt_run_config_free);
  g_clear_pointer (&self->model, g_free);
  g_clear_pointer (&self->data, g_free);
  g_clear_pointer (&self->adapter_path, g_free);
  g_clear_pointer (&self->lora_keys, g_free);
  g_clear_pointer (&self->sample_prompts, g_free);
  g_clear_pointer (&self->compute_device, g_free);

  G_OBJECT_CLASS (lathe_run_settings_parent_class)->finalize (object);
}

static void
lathe_run_settings_get_property (GObject    *object,
                                 guint       prop_id,
                                 GValue     *value,
                                 GParamSpec *pspec)
{
  LatheRunSettings *self = LATHE_RUN_SETTINGS (object);

  switch (prop_id)
    {
    case PROP_MODEL: g_value_set_string (value, self->model); break;
    case PROP_DATA: g_value_set_string (value, self->data); break;
    case PROP_ADAPTER_PATH: g_value_set_string (value, self->adapter_path); break;
    case PROP_COMPUTE_DEVICE: g_value_set_string (value, self->compute_device); break;
    case PROP_TRAIN_MODE: g_value_set_uint (value, self->train_mode); break;
    case PROP_TRAIN_TYPE: g_value_set_uint (value, self->train_type); break;
    case PROP_QUANTIZATION: g_value_set_uint (value, self->quantization); break;
    case PROP_LORA_RANK: g_value_set_int (value, self->lora_rank); break;
    case PROP_LORA_SCALE: g_value_set_double (value, self->lora_scale); break;
    case PROP_LORA_DROPOUT: g_value_set_double (value, self->lora_dropout); break;
    case PROP_LORA_KEYS: g_value_set_string (value, self->lora_keys); break;
    case PROP_SAMPLE_PROMPTS: g_value_set_string (value, self->sample_prompts); break;
    case PROP_STEPS_PER_SAMPLE: g_value_set_int (value, self->steps_per_sample); break;
    case PROP_ALL_LAYERS: g_value_set_boolean (value, self->all_layers); break;
    case PROP_NUM_LAYERS: g_value_set_int (value, self->num_layers); break;
    case PROP_LEARNING_RATE: g_value_set_double (value, self->learning_rate); break;
    case PROP_LR_SCHEDULE: g_value_set_uint (value, self->lr_schedule); break;
    case PROP_WARMUP_STEPS: g_value_set_int (value, self->warmup_steps); break;
    case PROP_LENGTH_UNIT: g_value_set_uint (value, self->length_unit); break;
    case PROP_ITERS: g_value_set_int (value, self->iters); break;
    case PROP_EPOCHS: g_value_set_int (value, self->epochs); break;
    case PROP_BATCH_SIZE: g_value_set_int (value, self->batch_size); break;
    case PROP_GRADIENT_ACCUMULATION_STEPS:
      g_value_set_int (value, self->gradient_accumulation_steps);
      break;
    case PROP_MAX_SEQ_LENGTH: g_value_set_int (value, self->max_seq_length); break;
    case PROP_MASK_PROMPT: g_value_set_boolean (value, self->mask_prompt); break;
    case PROP_GRAD_CHECKPOINT: g_value_set_boolean (value, self->grad_checkpoint); break;
    case PROP_PACKING: g_value_set_boolean (value, self->packing); break;
    case PROP_QAT_LEARN_GRID: g_value_set_boolean (value, self->qat_learn_grid); break;
    case PROP_SEED: g_value_set_int64 (value, self->seed); break;
    case PROP_OPTIMIZER: g_value_set_uint (value, self->optimizer); break;
    case PROP_BETA: g_value_set_double (value, self->beta); break;
    case PROP_DPO_LOSS_TYPE: g_value_set_uint (value, self->dpo_loss_type); break;
    case PROP_QAT_MODE: g_value_set_uint (value, self->qat_mode); break;
    case PROP_COMPUTE_DTYPE: g_value_set_uint (value, self->compute_dtype); break;
    case PROP_STEPS_PER_REPORT: g_value_set_int (value, self->steps_per_report); break;
    case PROP_STEPS_PER_EVAL: g_value_set_int (value, self->steps_per_eval); break;
    case PROP_SAVE_EVERY: g_value_set_int (value, self->save_every); break;
    case PROP_QAT_ENABLE: g_value_set_boolean (value, self->qat_enable); break;
    case PROP_QAT_BITS: g_value_set_int (value, self->qat_bits); break;
    case PROP_QAT_GROUP_SIZE: g_value_set_int (value, self->qat_group_size); break;
    case PROP_QAT_START_STEP: g_value_set_int (value, self->qat_start_step); break;
    case PROP_QAT_INTERVAL: g_value_set_int (value, self->qat_interval); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
lathe_run_settings_set_property (GObject      *object,
                                 guint         prop_id,
                                 const GValue *value,
                                 GParamSpec   *pspec)
{
  LatheRunSettings *self = LATHE_RUN_SETTINGS (object);

  switch (prop_id)
    {
    case PROP_MODEL:
      set_string (self, prop_id, &self->model, g_value_get_string (value));
      break;
    case PROP_DATA:
      set_string (self, prop_id, &self->data, g_value_get_string (value));
      break;
    case PROP_ADAPTER_PATH:
      set_string (self, prop_id, &self->adapter_path, g_value_get_string (value));
      break;
    case PROP_COMPUTE_DEVICE:
      set_string (self, prop_id, &self->compute_device, g_value_get_string (value));
      break;
    case PROP_TRAIN_MODE:
      set_uint_enum (self, prop_id, &self->train_mode, g_value_get_uint (value));
      break;
    case PROP_TRAIN_TYPE:
      set_uint_enum (self, prop_id, &self->train_type, g_value_get_uint (value));
      break;
    case PROP_QUANTIZATION:
      set_uint_enum (self, prop_id, &self->quantization, g_value_get_uint (value));
      break;
    case PROP_LORA_RANK:
      set_int (self, prop_id, &self->lora_rank, g_value_get_int (value));
      break;
    case PROP_LORA_SCALE:
      set_double (self, prop_id, &self->lora_scale, g_value_get_double (value));
      break;
    case PROP_LORA_DROPOUT:
      set_double (self, prop_id, &self->lora_dropout, g_value_get_double (value));
      break;
    case PROP_SAMPLE_PROMPTS:
      set_string (self, prop_id, &self->sample_prompts, g_value_get_string (value));
      break;
    case PROP_STEPS_PER_SAMPLE:
      set_int (self, prop_id, &self->steps_per_sample, g_value_get_int (value));
      break;
    case PROP_LORA_KEYS:
      set_string (self, prop_id, &self->lora_keys, g_value_get_string (value));
      break;
    case PROP_ALL_LAYERS:
      set_boolean (self, prop_id, &self->all_layers, g_value_get_boolean (value));
      break;
    case PROP_NUM_LAYERS:
      set_int (self, prop_id, &self->num_layers, g_value_get_int (value));
      break;
    case PROP_LEARNING_RATE:
      set_double (self, prop_id, &self->learning_rate, g_value_get_double (value));
      break;
    case PROP_LR_SCHEDULE:
      set_uint_enum (self, prop_id, &self->lr_schedule, g_value_get_uint (value));
      break;
    case PROP_WARMUP_STEPS:
      set_int (self, prop_id, &self->warmup_steps, g_value_get_int (value));
      break;
    case PROP_LENGTH_UNIT:
      set_uint_enum (self, prop_id, &self->length_unit, g_value_get_uint (value));
      break;
    case PROP_ITERS:
      set_int (self, prop_id, &self->iters, g_value_get_int (value));
      break;
    case PROP_EPOCHS:
      set_int (self, prop_id, &self->epochs, g_value_get_int (value));
      break;
    case PROP_BATCH_SIZE:
      set_int (self, prop_id, &self->batch_size, g_value_get_int (value));
      break;
    case PROP_GRADIENT_ACCUMULATION_STEPS:
      set_int (self, prop_id, &self->gradient_accumulation_steps, g_value_get_int (value));
      break;
    case PROP_MAX_SEQ_LENGTH:
      set_int (self, prop_id, &self->max_seq_length, g_value_get_int (value));
      break;
    case PROP_MASK_PROMPT:
      set_boolean (self, prop_id, &self->mask_prompt, g_value_get_boolean (value));
      break;
    case PROP_GRAD_CHECKPOINT:
      set_boolean (self, prop_id, &self->grad_checkpoint, g_value_get_boolean (value));
      break;
    case PROP_PACKING:
      set_boolean (self, prop_id, &self->packing, g_value_get_boolean (value));
      break;
    case PROP_QAT_LEARN_GRID:
      set_boolean (self, prop_id, &self->qat_learn_grid, g_value_get_boolean (value));
      break;
    case PROP_SEED:
      set_int64 (self, prop_id, &self->seed, g_value_get_int64 (value));
      break;
    case PROP_OPTIMIZER:
      set_uint_enum (self, prop_id, &self->optimizer, g_value_get_uint (value));
      break;
    case PROP_BETA:
      set_double (self, prop_id, &self->beta, g_value_get_double (value));
      break;
    case PROP_DPO_LOSS_TYPE:
      set_uint_enum (self, prop_id, &self->dpo_loss_type, g_value_get_uint (value));
      break;
    case PROP_QAT_MODE:
      set_uint_enum (self, prop_id, &self->qat_mode, g_value_get_uint (value));
      break;
    case PROP_COMPUTE_DTYPE:
      set_uint_enum (self, prop_id, &self->compute_dtype, g_value_get_uint (value));
      break;
    case PROP_STEPS_PER_REPORT:
      set_int (self, prop_id, &self->steps_per_report, g_value_get_int (value));
      break;
    case PROP_STEPS_PER_EVAL:
      set_int (self, prop_id, &self->steps_per_eval, g_value_get_int (value));
      break;
    case PROP_SAVE_EVERY:
      set_int (self, prop_id, &self->save_every, g_value_get_int (value));
      break;
    case PROP_QAT_ENABLE:
      set_boolean (self, prop_id, &self->qat_enable, g_value_get_boolean (value));
      break;
    case PROP_QAT_BITS:
      set_int (self, prop_id, &self->qat_bits, g_value_get_int (value));
      break;
    case PROP_QAT_GROUP_SIZE:
      set_int (self, prop_id, &self->qat_group_size, g_value_get_int (value));
      break;
    case PROP_QAT_START_STEP:
      set_int (self, prop_id, &self->qat_start_step, g_value_get_int (value));
      break;
    case PROP_QAT_INTERVAL:
      set_int (self, prop_id, &self->qat_interval, g_value_get_int (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

#define PARAM_FLAGS (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS)

static GParamSpec *
int_param (const char *name, int default_value)
{
  return g_param_spec_int (name, NULL, NULL, G_MININT, G_MAXINT, default_value, PARAM_FLAGS);
}

static GParamSpec *
double_param (const char *name, double default_value)
{
  return g_param_spec_double (name, NULL, NULL, -G_MAXDOUBLE, G_MAXDOUBLE, default_value,
                              PARAM_FLAGS);
}

static GParamSpec *
enum_param (const char *name, guint default_value)
{
  /* The range is wide on purpose: see set_uint_enum(). */
  return g_param_spec_uint (name, NULL, NULL, 0, G_MAXUINT, default_value, PARAM_FLAGS);
}

static GParamSpec *
string_param (const char *name, const char *default_value)
{
  return g_param_spec_string (name, NULL, NULL, default_value ? default_value : "",
                              PARAM_FLAGS);
}

static GParamSpec *
boolean_param (const char *name, gboolean default_value)
{
  return g_param_spec_boolean (name, NULL, NULL, default_value, PARAM_FLAGS);
}

static void
lathe_run_settings_class_init (LatheRunSettingsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = lathe_run_settings_finalize;
  object_class->get_property = lathe_run_settings_get_property;
  object_class->set_property = lathe_run_settings_set_property;

  /* Every default is the core's (lt_run_config_new: the one table the CLI's --help prints and
   * the schema's defaults equal); _init() sets the same values through set_config(). */
  {
    g_autoptr(LtRunConfig) d = lt_run_config_new ();
    g_autofree char *keys = d->lora_keys != NULL ? g_strjoinv (", ", d->lora_keys) : NULL;
    g_autofree char *prompts = d->sample_prompts != NULL ? g_strjoinv (", ", d->sample_prompts)
                                                         : NULL;

    properties[PROP_MODEL] = string_param ("model", d->model);
    properties[PROP_DATA] = string_param ("data", d->data);
    properties[PROP_ADAPTER_PATH] = string_param ("adapter-path", d->adapter_path);
    properties[PROP_TRAIN_MODE] = enum_param ("train-mode", d->train_mode);
    properties[PROP_TRAIN_TYPE] = enum_param ("train-type", d->train_type);
    properties[PROP_QUANTIZATION] = enum_param ("quantization", d->quantization);
    properties[PROP_LORA_RANK] = int_param ("lora-rank", d->lora_rank);
    properties[PROP_LORA_SCALE] = double_param ("lora-scale", d->lora_scale);
    properties[PROP_LORA_DROPOUT] = double_param ("lora-dropout", d->lora_dropout);
    properties[PROP_LORA_KEYS] = string_param ("lora-keys", keys);
    properties[PROP_ALL_LAYERS] = boolean_param ("all-layers", d->num_layers < 0);
    /* the count shown when "all layers" is off: the core's, or 16 (mlx-lm's) when it is -1 */
    properties[PROP_NUM_LAYERS] = int_param ("num-layers", d->num_layers >= 0 ? d->num_layers
                                                                               : 16);
    properties[PROP_LEARNING_RATE] = double_param ("learning-rate", d->learning_rate);
    properties[PROP_LR_SCHEDULE] = enum_param ("lr-schedule", d->lr_schedule);
    properties[PROP_WARMUP_STEPS] = int_param ("warmup-steps", d->warmup_steps);
    properties[PROP_LENGTH_UNIT] = enum_param ("length-unit", d->epochs > 0
                                                                ? LATHE_LENGTH_UNIT_EPOCHS
                                                                : LATHE_LENGTH_UNIT_ITERATIONS);
    properties[PROP_ITERS] = int_param ("iters", d->iters);
    /* epochs 0 means "count in iterations": the form's epoch count then starts at 1 */
    properties[PROP_EPOCHS] = int_param ("epochs", MAX (d->epochs, 1));
    properties[PROP_BATCH_SIZE] = int_param ("batch-size", d->batch_size);
    properties[PROP_GRADIENT_ACCUMULATION_STEPS] = int_param ("gradient-accumulation-steps",
                                                              d->gradient_accumulation_steps);
    properties[PROP_MAX_SEQ_LENGTH] = int_param ("max-seq-length", d->max_seq_length);
    properties[PROP_MASK_PROMPT] = boolean_param ("mask-prompt", d->mask_prompt);
    properties[PROP_GRAD_CHECKPOINT] = boolean_param ("grad-checkpoint", d->grad_checkpoint);
    properties[PROP_SEED] = g_param_spec_int64 ("seed", NULL, NULL, G_MININT64, G_MAXINT64,
                                                d->seed, PARAM_FLAGS);
    properties[PROP_OPTIMIZER] = enum_param ("optimizer", d->optimizer);
    properties[PROP_BETA] = double_param ("beta", d->beta);
    properties[PROP_DPO_LOSS_TYPE] = enum_param ("dpo-loss-type", MAX (d->dpo_loss_type, 0));
    properties[PROP_STEPS_PER_REPORT] = int_param ("steps-per-report", d->steps_per_report);
    properties[PROP_STEPS_PER_EVAL] = int_param ("steps-per-eval", d->steps_per_eval);
    properties[PROP_SAVE_EVERY] = int_param ("save-every", d->save_every);
    properties[PROP_QAT_ENABLE] = boolean_param ("qat-enable", d->qat_enable);
    properties[PROP_QAT_BITS] = int_param ("qat-bits", d->qat_bits);
    properties[PROP_QAT_GROUP_SIZE] = int_param ("qat-group-size", d->qat_group_size);
    properties[PROP_QAT_START_STEP] = int_param ("qat-start-step", d->qat_start_step);
    properties[PROP_QAT_INTERVAL] = int_param ("qat-interval", d->qat_interval);
    properties[PROP_SAMPLE_PROMPTS] = string_param ("sample-prompts", prompts);
    properties[PROP_STEPS_PER_SAMPLE] = int_param ("steps-per-sample", d->steps_per_sample);
    properties[PROP_QAT_MODE] = enum_param ("qat-mode", MAX (d->qat_mode, 0));
    properties[PROP_COMPUTE_DTYPE] = enum_param ("compute-dtype", d->compute_dtype);
    properties[PROP_PACKING] = boolean_param ("packing", d->packing);
    properties[PROP_QAT_LEARN_GRID] = boolean_param ("qat-learn-grid", d->qat_learn_grid);
    properties[PROP_COMPUTE_DEVICE] = string_param ("compute-device", d->compute_device);
  }

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
lathe_run_settings_init (LatheRunSettings *self)
{
  g_autoptr(LtRunConfig) defaults = lt_run_config_new ();

  self->model = g_strdup ("");
  self->data = g_strdup ("");
  self->adapter_path = g_strdup ("");
  self->lora_keys = g_strdup ("");
  self->sample_prompts = g_strdup ("");
  self->compute_device = g_strdup ("auto");
  /* what set_config() leaves alone (the other unit's count, the layer count under "all"):
   * the pspec defaults, which are the core's */
  self->num_layers = G_PARAM_SPEC_INT (properties[PROP_NUM_LAYERS])->default_value;
  self->iters = G_PARAM_SPEC_INT (properties[PROP_ITERS])->default_value;
  self->epochs = G_PARAM_SPEC_INT (properties[PROP_EPOCHS])->default_value;

  lathe_run_settings_set_config (self, defaults);
}

LatheRunSettings *
lathe_run_settings_new (void)
{
  return g_object_new (LATHE_TYPE_RUN_SETTINGS, NULL);
}

static char *
dup_nonempty (const char *s)
{
  return (s != NULL && s[0] != '\0') ? g_strdup (s) : NULL;
}

/* "P1, P2" → {"P1", "P2"}: split at commas, each prompt trimmed; NULL when none. */
static char **
split_prompts (const char *text)
{
  g_auto(GStrv) parts = NULL;
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  guint n = 0;

  if (text == NULL)
    return NULL;
  parts = g_strsplit (text, ",", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      g_strstrip (parts[i]);
      if (parts[i][0] == '\0')
        continue;
      g_strv_builder_add (builder, parts[i]);
      n++;
    }
  return n > 0 ? g_strv_builder_end (builder) : NULL;
}

static char **
split_keys (const char *text)
{
  g_auto(GStrv) parts = NULL;
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  guint n = 0;

  if (text == NULL)
    return NULL;

  parts = g_strsplit_set (text, ", \t\n", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      if (parts[i][0] == '\0')
        continue;
      g_strv_builder_add (builder, parts[i]);
      n++;
    }

  return n > 0 ? g_strv_builder_end (builder) : NULL;
}

/**
 * lathe_run_settings_dup_config:
 *
 * Returns: (transfer full): the run configuration the form describes: the keys without a
 * form field come from the last configuration set.
 */
LtRunConfig *
lathe_run_settings_dup_config (LatheRunSettings *self)
{
  LtRunConfig *cfg;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), NULL);

  cfg = lt_run_config_copy (self->base);

  g_free (cfg->model);
  cfg->model = dup_nonempty (self->model);
  if (cfg->model != NULL)
    {
      /* a Hugging Face repository id typed into the field: its snapshot in the HF cache
       * (lt_model_resolve never downloads; an id not cached stays, and the form says how) */
      char *resolved = lt_model_resolve (cfg->model, NULL);
      if (resolved != NULL)
        {
          g_free (cfg->model);
          cfg->model = resolved;
        }
    }
  {
    /* run.json records where the model and data are from any folder (the Runs and Chat
     * pages reopen a run's base model): relative paths that exist become absolute */
    char **fields[] = { &cfg->model, &cfg->data };
    for (gsize i = 0; i < G_N_ELEMENTS (fields); i++)
      if (*fields[i] != NULL && !g_path_is_absolute (*fields[i])
          && g_file_test (*fields[i], G_FILE_TEST_EXISTS))
        {
          char *abs = g_canonicalize_filename (*fields[i], NULL);
          g_free (*fields[i]);
          *fields[i] = abs;
        }
  }
  g_free (cfg->data);
  cfg->data = dup_nonempty (self->data);
  g_free (cfg->adapter_path);
  cfg->adapter_path = dup_nonempty (self->adapter_path);

  cfg->train_mode = (LtTrainMode) self->train_mode;
  cfg->train_type = (LtTrainType) self->train_type;
  cfg->quantization = (LtQuantization) self->quantization;
  cfg->lora_rank = self->lora_rank;
  cfg->lora_scale = self->lora_scale;
  cfg->lora_dropout = self->lora_dropout;
  g_strfreev (cfg->lora_keys);
  cfg->lora_keys = split_keys (self->lora_keys);
  {
    /* the entry's text as it came from a configuration keeps that list (a prompt may hold a
     * comma); an edited text is split at commas */
    g_autofree char *base = self->base->sample_prompts != NULL
                              ? g_strjoinv (", ", self->base->sample_prompts) : NULL;

    if (g_strcmp0 (base != NULL ? base : "", self->sample_prompts) != 0)
      {
        g_strfreev (cfg->sample_prompts);
        cfg->sample_prompts = split_prompts (self->sample_prompts);
      }
  }
  cfg->steps_per_sample = self->steps_per_sample;
  cfg->num_layers = self->all_layers ? -1 : self->num_layers;
  cfg->learning_rate = self->learning_rate;
  cfg->lr_schedule = (LtLrSchedule) self->lr_schedule;
  cfg->warmup_steps = self->warmup_steps;
  /* In epochs, iters is 0 so that 0 epochs is reported (both 0) rather than silently
   * falling back to the iteration count. */
  if (self->length_unit == LATHE_LENGTH_UNIT_EPOCHS)
    {
      cfg->iters = 0;
      cfg->epochs = self->epochs;
    }
  else
    {
      cfg->iters = self->iters;
      cfg->epochs = 0;
    }
  cfg->batch_size = self->batch_size;
  cfg->gradient_accumulation_steps = self->gradient_accumulation_steps;
  cfg->max_seq_length = self->max_seq_length;
  cfg->mask_prompt = self->mask_prompt;
  cfg->grad_checkpoint = self->grad_checkpoint;
  cfg->packing = self->packing;
  cfg->qat_learn_grid = self->qat_learn_grid;
  cfg->seed = self->seed;
  cfg->optimizer = (LtOptimizerKind) self->optimizer;
  cfg->beta = self->beta;
  cfg->dpo_loss_type = (int) self->dpo_loss_type;
  cfg->compute_dtype = (LtComputeDTypeChoice) self->compute_dtype;
  g_free (cfg->compute_device);
  cfg->compute_device = g_strdup (self->compute_device != NULL && self->compute_device[0] != '\0'
                                    ? self->compute_device : "auto");
  cfg->steps_per_report = self->steps_per_report;
  cfg->steps_per_eval = self->steps_per_eval;
  cfg->save_every = self->save_every;
  cfg->qat_enable = self->qat_enable;
  cfg->qat_bits = self->qat_bits;
  cfg->qat_group_size = self->qat_group_size;
  cfg->qat_start_step = self->qat_start_step;
  cfg->qat_interval = self->qat_interval;
  cfg->qat_mode = (int) self->qat_mode;

  return cfg;
}

/**
 * lathe_run_settings_set_config:
 *
 * Sets every property from @cfg (one notification per property that changed, after all
 * are set) and keeps @cfg's other keys for lathe_run_settings_dup_config().
 */
void
lathe_run_settings_set_config (LatheRunSettings  *self,
                               const LtRunConfig *cfg)
{
  g_autofree char *keys = NULL;

  g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));
  g_return_if_fail (cfg != NULL);

  g_object_freeze_notify (G_OBJECT (self));

  g_clear_pointer (&self->base, lt_run_config_free);
  self->base = lt_run_config_copy (cfg);

  set_string (self, PROP_MODEL, &self->model, cfg->model);
  set_string (self, PROP_DATA, &self->data, cfg->data);
  set_string (self, PROP_ADAPTER_PATH, &self->adapter_path, cfg->adapter_path);
  set_uint_enum (self, PROP_TRAIN_MODE, &self->train_mode, cfg->train_mode);
  set_uint_enum (self, PROP_TRAIN_TYPE, &self->train_type, cfg->train_type);
  set_uint_enum (self, PROP_QUANTIZATION, &self->quantization, cfg->quantization);
  set_int (self, PROP_LORA_RANK, &self->lora_rank, cfg->lora_rank);
  set_double (self, PROP_LORA_SCALE, &self->lora_scale, cfg->lora_scale);
  set_double (self, PROP_LORA_DROPOUT, &self->lora_dropout, cfg->lora_dropout);
  keys = cfg->lora_keys != NULL ? g_strjoinv (", ", cfg->lora_keys) : NULL;
  set_string (self, PROP_LORA_KEYS, &self->lora_keys, keys);
  {
    g_autofree char *prompts = cfg->sample_prompts != NULL
                                 ? g_strjoinv (", ", cfg->sample_prompts) : NULL;
    set_string (self, PROP_SAMPLE_PROMPTS, &self->sample_prompts, prompts);
  }
  set_int (self, PROP_STEPS_PER_SAMPLE, &self->steps_per_sample, cfg->steps_per_sample);
  set_boolean (self, PROP_ALL_LAYERS, &self->all_layers, cfg->num_layers < 0);
  if (cfg->num_layers >= 0)
    set_int (self, PROP_NUM_LAYERS, &self->num_layers, cfg->num_layers);
  set_double (self, PROP_LEARNING_RATE, &self->learning_rate, cfg->learning_rate);
  set_uint_enum (self, PROP_LR_SCHEDULE, &self->lr_schedule, cfg->lr_schedule);
  set_int (self, PROP_WARMUP_STEPS, &self->warmup_steps, cfg->warmup_steps);
  /* epochs > 0 wins over iters (lt-run.h); the count of the other unit is kept for when
   * the user switches back. */
  if (cfg->epochs > 0)
    {
      set_uint_enum (self, PROP_LENGTH_UNIT, &self->length_unit, LATHE_LENGTH_UNIT_EPOCHS);
      set_int (self, PROP_EPOCHS, &self->epochs, cfg->epochs);
      if (cfg->iters > 0)
        set_int (self, PROP_ITERS, &self->iters, cfg->iters);
    }
  else
    {
      set_uint_enum (self, PROP_LENGTH_UNIT, &self->length_unit, LATHE_LENGTH_UNIT_ITERATIONS);
      set_int (self, PROP_ITERS, &self->iters, cfg->iters);
    }
  set_int (self, PROP_BATCH_SIZE, &self->batch_size, cfg->batch_size);
  set_int (self, PROP_GRADIENT_ACCUMULATION_STEPS, &self->gradient_accumulation_steps,
           cfg->gradient_accumulation_steps);
  set_int (self, PROP_MAX_SEQ_LENGTH, &self->max_seq_length, cfg->max_seq_length);
  set_boolean (self, PROP_MASK_PROMPT, &self->mask_prompt, cfg->mask_prompt);
  set_boolean (self, PROP_GRAD_CHECKPOINT, &self->grad_checkpoint, cfg->grad_checkpoint);
  set_boolean (self, PROP_PACKING, &self->packing, cfg->packing);
  set_boolean (self, PROP_QAT_LEARN_GRID, &self->qat_learn_grid, cfg->qat_learn_grid);
  set_int64 (self, PROP_SEED, &self->seed, cfg->seed);
  set_uint_enum (self, PROP_OPTIMIZER, &self->optimizer, cfg->optimizer);
  set_double (self, PROP_BETA, &self->beta, cfg->beta);
  set_uint_enum (self, PROP_DPO_LOSS_TYPE, &self->dpo_loss_type,
                 cfg->dpo_loss_type >= 0 ? (guint) cfg->dpo_loss_type : 0);
  set_uint_enum (self, PROP_COMPUTE_DTYPE, &self->compute_dtype, cfg->compute_dtype);
  set_string (self, PROP_COMPUTE_DEVICE, &self->compute_device,
              cfg->compute_device != NULL ? cfg->compute_device : "auto");
  set_int (self, PROP_STEPS_PER_REPORT, &self->steps_per_report, cfg->steps_per_report);
  set_int (self, PROP_STEPS_PER_EVAL, &self->steps_per_eval, cfg->steps_per_eval);
  set_int (self, PROP_SAVE_EVERY, &self->save_every, cfg->save_every);
  set_boolean (self, PROP_QAT_ENABLE, &self->qat_enable, cfg->qat_enable);
  set_int (self, PROP_QAT_BITS, &self->qat_bits, cfg->qat_bits);
  set_int (self, PROP_QAT_GROUP_SIZE, &self->qat_group_size, cfg->qat_group_size);
  set_int (self, PROP_QAT_START_STEP, &self->qat_start_step, cfg->qat_start_step);
  set_int (self, PROP_QAT_INTERVAL, &self->qat_interval, cfg->qat_interval);
  set_uint_enum (self, PROP_QAT_MODE, &self->qat_mode,
                 cfg->qat_mode >= 0 && cfg->qat_mode <= LT_QUANT_NF4 ? (guint) cfg->qat_mode : 0);

  g_object_thaw_notify (G_OBJECT (self));
}

gboolean
lathe_run_settings_load_file (LatheRunSettings  *self,
                              const char        *path,
                              GError           **error)
{
  g_autoptr(LtRunConfig) cfg = NULL;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);

  cfg = lt_run_config_new_from_file (path, error);
  if (cfg == NULL)
    return FALSE;

  lathe_run_settings_set_config (self, cfg);
  return TRUE;
}

gboolean
lathe_run_settings_save_file (LatheRunSettings  *self,
                              const char        *path,
                              GError           **error)
{
  g_autoptr(LtRunConfig) cfg = NULL;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);

  cfg = lathe_run_settings_dup_config (self);
  return lt_run_config_save (cfg, path, error);
}

GPtrArray *
lathe_run_settings_check (LatheRunSettings *self,
                          gboolean          for_start)
{
  g_autoptr(LtRunConfig) cfg = NULL;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), NULL);

  cfg = lathe_run_settings_dup_config (self);
  return lt_run_config_check (cfg, for_start);
}

GStrv
lathe_run_settings_dup_argv (LatheRunSettings *self)
{
  g_autoptr(LtRunConfig) cfg = NULL;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), NULL);

  cfg = lathe_run_settings_dup_config (self);
  return lt_run_config_to_argv (cfg);
}

static gboolean
needs_quoting (const char *arg)
{
  if (arg[0] == '\0')
    return TRUE;
  for (const char *p = arg; *p != '\0'; p++)
    {
      if (!g_ascii_isalnum (*p) && strchr ("-_./:=,+@%", *p) == NULL)
        return TRUE;
    }
  return FALSE;
}

char *
lathe_argv_to_command_line (const char * const *argv)
{
  GString *line = g_string_new (NULL);

  g_return_val_if_fail (argv != NULL, NULL);

  for (guint i = 0; argv[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append_c (line, ' ');
      if (needs_quoting (argv[i]))
        {
          g_autofree char *quoted = g_shell_quote (argv[i]);
          g_string_append (line, quoted);
        }
      else
        g_string_append (line, argv[i]);
    }

  return g_string_free (line, FALSE);
}

char *
lathe_run_settings_dup_command_line (LatheRunSettings *self)
{
  g_auto(GStrv) argv = NULL;

  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), NULL);

  argv = lathe_run_settings_dup_argv (self);
  return lathe_argv_to_command_line ((const char * const *) argv);
}

/* GSettings stores the enum-like properties by their lt-run names ("lora", "4bit", …). */
static gboolean
enum_get_mapping (GValue   *value,
                  GVariant *variant,
                  gpointer  user_data)
{
  guint prop_id = GPOINTER_TO_UINT (user_data);
  int v = enum_from_nick (prop_id, g_variant_get_string (variant, NULL));

  if (v < 0)
    return FALSE;
  g_value_set_uint (value, (guint) v);
  return TRUE;
}

static GVariant *
enum_set_mapping (const GValue       *value,
                  const GVariantType *expected_type,
                  gpointer            user_data)
{
  guint prop_id = GPOINTER_TO_UINT (user_data);
  const char *nick = enum_to_nick (prop_id, g_value_get_uint (value));

  return nick != NULL ? g_variant_new_string (nick) : NULL;
}

void
lathe_run_settings_bind_gsettings (LatheRunSettings *self,
                                   GSettings        *settings)
{
  g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));
  g_return_if_fail (G_IS_SETTINGS (settings));

  for (guint prop_id = 1; prop_id < N_PROPS; prop_id++)
    {
      GParamSpec *pspec = properties[prop_id];

      if (G_PARAM_SPEC_VALUE_TYPE (pspec) == G_TYPE_UINT)
        g_settings_bind_with_mapping (settings, pspec->name, self, pspec->name,
                                      G_SETTINGS_BIND_DEFAULT,
                                      enum_get_mapping, enum_set_mapping,
                                      GUINT_TO_POINTER (prop_id), NULL);
      else
        g_settings_bind (settings, pspec->name, self, pspec->name, G_SETTINGS_BIND_DEFAULT);
    }
}

#define DEFINE_STRING_ACCESSORS(field, PROP)                                         \
  const char *                                                                       \
  lathe_run_settings_get_##field (LatheRunSettings *self)                            \
  {                                                                                  \
    g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), NULL);                       \
    return self->field;                                                              \
  }                                                                                  \
  void                                                                               \
  lathe_run_settings_set_##field (LatheRunSettings *self, const char *field)         \
  {                                                                                  \
    g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));                                 \
    set_string (self, PROP, &self->field, field);                                    \
  }

DEFINE_STRING_ACCESSORS (model, PROP_MODEL)
DEFINE_STRING_ACCESSORS (data, PROP_DATA)
DEFINE_STRING_ACCESSORS (adapter_path, PROP_ADAPTER_PATH)

LtTrainMode
lathe_run_settings_get_train_mode (LatheRunSettings *self)
{
  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), LT_TRAIN_MODE_SFT);

  return (LtTrainMode) self->train_mode;
}

LtTrainType
lathe_run_settings_get_train_type (LatheRunSettings *self)
{
  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), LT_TRAIN_TYPE_LORA);
  return (LtTrainType) self->train_type;
}

void
lathe_run_settings_set_train_type (LatheRunSettings *self,
                                   LtTrainType       train_type)
{
  g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));
  set_uint_enum (self, PROP_TRAIN_TYPE, &self->train_type, train_type);
}

LtQuantization
lathe_run_settings_get_quantization (LatheRunSettings *self)
{
  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), LT_QUANTIZATION_NONE);
  return (LtQuantization) self->quantization;
}

void
lathe_run_settings_set_quantization (LatheRunSettings *self,
                                     LtQuantization    quantization)
{
  g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));
  set_uint_enum (self, PROP_QUANTIZATION, &self->quantization, quantization);
}

gboolean
lathe_run_settings_get_qat_enable (LatheRunSettings *self)
{
  g_return_val_if_fail (LATHE_IS_RUN_SETTINGS (self), FALSE);
  return self->qat_enable;
}

void
lathe_run_settings_set_qat_enable (LatheRunSettings *self,
                                   gboolean          qat_enable)
{
  g_return_if_fail (LATHE_IS_RUN_SETTINGS (self));
  set_boolean (self, PROP_QAT_ENABLE, &self->qat_enable, qat_enable);
}
