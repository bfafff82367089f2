/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheExportDialog: export a run (MLX, HF safetensors, GGUF, PEFT) through LatheExportJob,
 * then show the verification table and an Open Folder button. */
#pragma once

#include <adwaita.h>

#include "lathe-export-job.h"
#include "src/core/lt-run.h"

G_BEGIN_DECLS

#define LATHE_TYPE_EXPORT_DIALOG (lathe_export_dialog_get_type ())

G_DECLARE_FINAL_TYPE (LatheExportDialog, lathe_export_dialog, LATHE, EXPORT_DIALOG, AdwWindow)

/* @run_dir (nullable): preselected; the run list holds it and the runs beside it that hold an
 * adapter. */
GtkWidget *lathe_export_dialog_new (const char *run_dir, GtkWindow *parent);

/* The chosen run folder (borrowed), or NULL. */
const char *lathe_export_dialog_get_run (LatheExportDialog *self);
void lathe_export_dialog_set_output_dir (LatheExportDialog *self, const char *dir);
/* Sets the form: @mlx_bits 0 (none), 4, 6 or 8 (affine); @gguf_type one of
 * lathe_export_dialog_get_gguf_types ("f16", "q8_0", …). */
void lathe_export_dialog_set_formats (LatheExportDialog *self, gboolean mlx, int mlx_bits,
                                      gboolean hf, LtDType hf_dtype, gboolean gguf,
                                      const char *gguf_type, gboolean peft);
void lathe_export_dialog_set_verify (LatheExportDialog *self, gboolean verify);
/* Selects GGUF type @name (case-insensitive); FALSE when the Type row does not offer it. */
gboolean lathe_export_dialog_set_gguf_type (LatheExportDialog *self, const char *name);
/* The GGUF types the Type row offers, in order: those of
 * lathe_export_dialog_get_llama_cpp_gguf_types that the core writes (lt_ggml_type_from_name). */
GStrv lathe_export_dialog_get_gguf_types (LatheExportDialog *self);
/* Every GGUF type the dialog knows, as llama.cpp users name them (lower case), largest first. */
const char *const *lathe_export_dialog_get_llama_cpp_gguf_types (gsize *n);
/* With GGUF: an Ollama Modelfile beside it; the result then shows the `ollama create` command. */
void lathe_export_dialog_set_ollama (LatheExportDialog *self, gboolean ollama);
/* The MLX output's quantization (one of lathe_export_dialog_get_mlx_quantizations) and group
 * size (32, 64 or 128; MXFP4 takes 32). Choosing a run sets them from its QAT settings: its
 * QAT group size, and its QAT bits when it trained with QAT. */
void lathe_export_dialog_set_mlx_quantization (LatheExportDialog *self,
                                               LtQuantization quantization, int group_size);
LtQuantization lathe_export_dialog_get_mlx_quantization (LatheExportDialog *self,
                                                         int *group_size);
/* The MLX Quantization row's choices in order: None, 4-bit, 6-bit, 8-bit, MXFP4 (the Train
 * tab's, less NF4, which MLX does not store). */
const LtQuantization *lathe_export_dialog_get_mlx_quantizations (gsize *n);
/* TRUE after a finished export: Close replaces Cancel and Export. */
gboolean lathe_export_dialog_is_done (LatheExportDialog *self);
/* What Export does: a job from the form, started; FALSE with @error when the form is
 * incomplete. */
gboolean lathe_export_dialog_start (LatheExportDialog *self, GError **error);
/* The current (or last) job, or NULL. */
LatheExportJob *lathe_export_dialog_get_job (LatheExportDialog *self);
/* Rows of the verification table. */
guint lathe_export_dialog_get_n_result_rows (LatheExportDialog *self);

/* The adapter-survival warning shown above the table, or NULL. */
const char *lathe_export_dialog_get_warning (LatheExportDialog *self);

G_END_DECLS
