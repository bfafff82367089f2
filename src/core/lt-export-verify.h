/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-verify: does an export still compute the fused model? The one verification that
 * `lathe fuse --verify` and the app's export job both run.
 *
 * Owns: the choice of validation data (lt_export_verify_data), perplexity and a greedy sample
 * of a model, the expected quantization loss of each format, and the verification itself:
 * the base (de-quantized to f32), the base with the adapter applied unfused (lt-model-train's
 * adapters: an independent check of the fuse) and each output the export wrote (MLX, HF,
 * GGUF, read back with lt_export_load), each measured on the same data; an output is
 * "outside" when its perplexity exceeds base + adapter's by more than its format's expected
 * loss. */
#pragma once

#include <gio/gio.h>

#include "lt-export.h"
#include "lt-model.h"

G_BEGIN_DECLS

/* Perplexity of @model on a JSONL file (text / prompt-completion lines as lt-dataset reads
 * them, truncated to @max_seq_length): *ppl = exp (Σ nll / Σ predicted tokens). */
gboolean lt_export_perplexity (LtModel *model, const char *model_dir, const char *jsonl,
                               int max_seq_length, double *ppl, gint64 *n_tokens,
                               GError **error);
/* Greedy continuation of @prompt (@n_new tokens) decoded to text, with @model_dir's
 * tokenizer. */
char *lt_export_greedy (LtModel *model, const char *model_dir, const char *prompt, int n_new,
                        GError **error);

/* The relative perplexity increase over the fused f32 model that a format is expected to
 * stay within (f32 1e-4, bf16/f16 1e-2, q8_0 / 8-bit 2e-2, q6_k / 6-bit 5e-2, 4-bit formats
 * 0.25). @format: "f32", "f16", "bf16", "q8_0", "q6_k", "q4_k", "q4_0", or "mlx:BITS". */
double lt_export_expected_loss (const char *format);

/* The validation data of a run whose configuration names @data (a JSONL file or a folder):
 * a file is itself; a folder gives its valid.jsonl, else its train.jsonl. NULL when there is
 * none (or @data is NULL). */
char *lt_export_verify_data (const char *data);
/* The same for the run folder @run_dir (through its run.json's data); NULL when it has none. */
char *lt_export_verify_data_for_run (const char *run_dir);

typedef enum
{
  LT_VERIFY_BASE,      /* the base, de-quantized to f32 */
  LT_VERIFY_FUSED,     /* the base with the adapter applied unfused (the base without one) */
  LT_VERIFY_MLX,
  LT_VERIFY_HF,
  LT_VERIFY_GGUF,
} LtVerifyKind;

typedef struct
{
  LtVerifyKind kind;
  char *format;        /* "mlx:4", "bf16", "q4_k", …; NULL for BASE and FUSED */
  char *path;          /* the output read back; NULL for BASE and FUSED */
  double ppl;          /* NAN until measured */
  double limit;        /* FUSED's ppl · (1 + expected loss of format); NAN for BASE, FUSED */
  char *sample;        /* greedy continuation of "Once upon a time" (16 tokens) */
} LtVerifyRow;

void lt_verify_row_free (LtVerifyRow *row);

/* Called after each verified model: @done of @total. */
typedef void (*LtVerifyProgress) (int done, int total, gpointer user_data);

/* Verifies the outputs @opts asked for and @report describes (lt_export_run's) on @data
 * (JSONL, max 2048 tokens a line). Appends an LtVerifyRow to @rows (free func
 * lt_verify_row_free) before measuring each model, so that on failure the rows measured so far
 * stay; *@outside (may be NULL) is set when an output's perplexity is above its limit.
 * Cancelling @cancellable stops between models (G_IO_ERROR_CANCELLED). */
gboolean lt_export_verify (const LtExportOptions *opts, const LtExportReport *report,
                           const char *data, GPtrArray *rows, gboolean *outside,
                           GCancellable *cancellable, LtVerifyProgress progress,
                           gpointer user_data, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtVerifyRow, lt_verify_row_free)

G_END_DECLS
