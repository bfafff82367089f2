/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe quantize --method gptq|awq|dynamic (and --report-ppl): the calibrated path over
 * lt-calibrate-model. lathe-quantize.c parses the options and calls it. */
#pragma once

#include <glib.h>

#include "lt-calibrate-model.h"
#include "lt-dwq.h"

typedef struct
{
  const char *model_dir;
  const char *out;
  gboolean force;
  gboolean json;
  LtCalibModelOptions opts;
  const char *data;          /* calibration data (any training format) */
  const char *eval_data;     /* held-out data for --report-ppl, or NULL */
  int num_samples;           /* <= 0: all */
  int max_seq_length;
  gboolean report_ppl;
  LtDwqOptions dwq;          /* --method dwq */
  const char *teacher;       /* dwq: the model distilled from, NULL = model_dir */
} LatheQuantizeCalib;

/* Runs the calibrated quantization; returns the exit status. */
int lathe_quantize_calibrated (const LatheQuantizeCalib *a);
