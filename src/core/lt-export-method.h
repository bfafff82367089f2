/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-export-method: the fused export re-quantized by a learned method (issue 13 item 4,
 * `lathe fuse --method`, the Export dialog's Method row).
 *
 * lt_export_method_run runs lt_export_run with the MLX output replaced by the fused float
 * model in a work folder beside it (SAVE.fuse-work, hidden, removed at the end; the other
 * outputs as asked), then:
 *   rtn     the round-to-nearest MLX export at the method's bits / group / mode (work/rtn),
 *           whose report gives the adapter survival of round-to-nearest;
 *   base    the base de-quantized to float (work/base);
 *   method  lt-calibrate-model's GPTQ / AWQ / dynamic, or lt-dwq's DWQ (a student quantized
 *           round-to-nearest at load, distilled from the float model), on the fused float
 *           model into SAVE (atomically), and on the float base (work/base-q), both on the
 *           same calibration sequences;
 *   survival  D = M(W + ΔW) − M(W) per fused linear, M the method's quantize + de-quantize:
 *           ‖D‖ / ‖ΔW‖ and cos (D, ΔW) (lt_export_add_survival), next to rtn's;
 *   perplexity  of the fused float model, the rtn export and SAVE (as stored, quantized) on
 *           the calibration sequences.
 * A learned method fits its rounding to each model's activations, so M(W + ΔW) − M(W) also
 * holds the difference of the two fits: the survival figure of GPTQ / AWQ is lower than rtn's
 * even where the perplexity is better. */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "lt-calibrate-model.h"
#include "lt-dwq.h"
#include "lt-export.h"

G_BEGIN_DECLS

typedef struct
{
  LtCalibModelOptions opts;  /* method (not RTN), mode, bits, group size and its options */
  LtDwqOptions dwq;          /* --method dwq */
  const char *data;          /* calibration data (any training format; a folder's train.jsonl
                              * or a JSONL file such as a run's valid.jsonl) */
  int num_samples;           /* calibration sequences, the first N examples; <= 0: all */
  int max_seq_length;        /* tokens per sequence (default 512) */
} LtExportMethod;

void lt_export_method_init (LtExportMethod *m);

typedef struct
{
  LtExportReport *rtn;       /* the round-to-nearest MLX export's report (its survival) */
  LtExportReport *method;    /* the method's survival (only .survival and .n_lost are set) */
  LtCalibModelReport *layers; /* the method's per-layer errors on the fused model (NULL: dwq) */
  LtDwqResult dwq;           /* dwq on the fused model */
  double ppl_float, ppl_rtn, ppl_method;
  int n_calib;               /* calibration sequences */
  guint64 bytes;             /* of SAVE */
} LtExportMethodReport;

void lt_export_method_report_free (LtExportMethodReport *r);

/* Runs the export @o (its save_path is the method's output; dequantize must be FALSE) with @m
 * as described above; *@export_report gets lt_export_run's report. @progress as
 * lt_export_run's (FALSE cancels). Errors: lt_export_run's, lt_calib_model_quantize's,
 * lt_dwq_run's, INVALID_ARGUMENT (no save_path, dequantize, method RTN or no data). */
LtExportMethodReport *lt_export_method_run (const LtExportOptions *o, const LtExportMethod *m,
                                            LtExportProgress progress, gpointer user_data,
                                            GCancellable *cancellable,
                                            LtExportReport **export_report, GError **error);

/* lt_dwq_run of @student against @teacher on @calib, validated on @held (NULL: on the first
 * training batch). */
gboolean lt_export_method_dwq (LtModel *teacher, LtModel *student, const LtCalibTokens *calib,
                               const LtCalibTokens *held, const LtDwqOptions *dwq,
                               LtDwqProgress progress, gpointer user_data,
                               GCancellable *cancellable, LtDwqResult *result, GError **error);

/* lt_calib_model_write of @model (its folder @src_dir) into a temporary sibling of @out renamed
 * into place when complete (lt-output-dir); adds the bytes to *@bytes (may be NULL). */
gboolean lt_export_method_write (LtModel *model, const char *src_dir, const char *out,
                                 guint64 *bytes, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtExportMethodReport, lt_export_method_report_free)

G_END_DECLS
