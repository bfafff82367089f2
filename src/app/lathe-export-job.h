/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheExportJob: lt_export_run and the verification (perplexity of the base, the base with
 * the adapter, and each output; a greedy sample) in a GTask worker. Progress reaches the main
 * thread through one idle source; GTK is never touched off the main thread. */
#pragma once

#include <gio/gio.h>

#include "src/core/lt-export.h"
/* llama-quantize's file types (q4_k_m, …): the Export dialog offers them and the job passes
 * them as LtExportOptions.gguf_ftype. */
#include "src/core/lt-gguf-mix.h"
#include "src/core/lt-run.h"

G_BEGIN_DECLS

typedef struct
{
  char *label;    /* "base", "base + adapter", "MLX", "HF", "GGUF" */
  char *format;   /* "mlx:4", "bf16", "q4_k", …; NULL for the base rows */
  char *path;     /* the output, or NULL */
  double ppl;
  double limit;   /* the perplexity the format is expected to stay within, NAN for base rows */
  char *sample;   /* greedy continuation of "Once upon a time" */
} LatheExportRow;

#define LATHE_TYPE_EXPORT_JOB (lathe_export_job_get_type ())

G_DECLARE_FINAL_TYPE (LatheExportJob, lathe_export_job, LATHE, EXPORT_JOB, GObject)

LatheExportJob *lathe_export_job_new (const char *model_dir, const char *run_dir,
                                      const char *output_dir);
/* @bits: 0 writes float weights, 4 or 8 an affine-quantized MLX model. */
void lathe_export_job_set_mlx (LatheExportJob *self, gboolean enable, int bits);
/* The MLX output's quantization: 4/6/8-bit affine or MXFP4 (group 32) with @group_size (0: the
 * mode's default); NONE (or NF4, which MLX does not store) writes float weights. */
void lathe_export_job_set_mlx_quantization (LatheExportJob *self, LtQuantization quantization,
                                            int group_size);
/* The MLX output's quantizer: LT_CALIB_METHOD_RTN (default), or GPTQ / AWQ / DWQ calibrated
 * on @data (the run's validation set) through lt_export_method_run, which adds rows for
 * round-to-nearest and the method (perplexity on @data, adapter survival). */
void lathe_export_job_set_mlx_method (LatheExportJob *self, int method, const char *data);
/* What the job passes to lt_export_run: bits (0: float), group size, LtQuantMode (-1: affine). */
void lathe_export_job_get_mlx_quantization (LatheExportJob *self, int *bits, int *group_size,
                                            int *mode);
/* @dtype: LT_DTYPE_F32, F16 or BF16. */
void lathe_export_job_set_hf (LatheExportJob *self, gboolean enable, LtDType dtype);
/* @name: a GGUF type the core parses (lt_ggml_type_from_name): "f16", "q8_0", "q4_0", … */
void lathe_export_job_set_gguf (LatheExportJob *self, gboolean enable, const char *name);
void lathe_export_job_set_peft (LatheExportJob *self, gboolean enable);
/* Ollama: with the GGUF output, a Modelfile beside it (OUT/Modelfile, lt-ollama: FROM the GGUF,
 * the chat template in Ollama's syntax, stop tokens, parameters). */
void lathe_export_job_set_ollama (LatheExportJob *self, gboolean enable);
/* OUT/Modelfile and the `ollama create NAME -f OUT/Modelfile` command (NAME from the output
 * folder's name, lt_ollama_model_name), or NULL without Ollama or without GGUF. */
const char *lathe_export_job_get_modelfile_path (LatheExportJob *self);
const char *lathe_export_job_get_ollama_command (LatheExportJob *self);
/* @data: the JSONL the perplexities are measured on (NULL: no verification). */
void lathe_export_job_set_verify (LatheExportJob *self, const char *data);

/* The output paths the job writes (NULL for a format not chosen). */
const char *lathe_export_job_get_mlx_path (LatheExportJob *self);
const char *lathe_export_job_get_hf_path (LatheExportJob *self);
const char *lathe_export_job_get_gguf_path (LatheExportJob *self);
const char *lathe_export_job_get_peft_path (LatheExportJob *self);
const char *lathe_export_job_get_output_dir (LatheExportJob *self);

/* Starts the worker; FALSE with @error when nothing is chosen or a job is running. Emits
 * notify::fraction while it runs and "finished" on the main thread when done. */
gboolean lathe_export_job_start (LatheExportJob *self, GError **error);
void lathe_export_job_cancel (LatheExportJob *self);
gboolean lathe_export_job_is_running (LatheExportJob *self);
double lathe_export_job_get_fraction (LatheExportJob *self);
/* The step the worker is on ("fuse", "write", "verify"), or NULL. */
const char *lathe_export_job_get_what (LatheExportJob *self);

/* After "finished": the report (NULL on error), the rows (LatheExportRow) and the error
 * (NULL on success; G_IO_ERROR_CANCELLED when cancelled). */
const LtExportReport *lathe_export_job_get_report (LatheExportJob *self);
GPtrArray *lathe_export_job_get_rows (LatheExportJob *self);
const GError *lathe_export_job_get_error (LatheExportJob *self);

/* The core's id of GGUF type @name (its file type where the core has llama-quantize's file
 * types, else its tensor type), or -1 when the core does not write it. */
int lathe_export_gguf_type_id (const char *name);

/* Whether @run_dir holds an adapter (adapters.safetensors + adapter_config.json). */
gboolean lathe_export_run_has_adapter (const char *run_dir);

G_END_DECLS
