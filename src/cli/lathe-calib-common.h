/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The pieces `lathe quantize --method` and `lathe fuse --method` share: the progress line,
 * DWQ training of a student on calibration sequences, and the atomic MLX write of a
 * quantized model. */
#pragma once

#include <glib.h>

#include "lt-calibrate-model.h"
#include "lt-dwq.h"
#include "lt-model.h"

G_BEGIN_DECLS

/* An LtCalibProgress printing "lathe CMD: NN% what" on stderr; @user_data is CMD ("quantize",
 * "fuse"). */
gboolean lathe_calib_progress (double fraction, const char *what, gpointer user_data);

/* lt_dwq_run of @student against @teacher on @calib, validated on @held (NULL: the first
 * training batch), with the progress line of @cmd. */
gboolean lathe_calib_dwq_train (const char *cmd, LtModel *teacher, LtModel *student,
                                const LtCalibTokens *calib, const LtCalibTokens *held,
                                const LtDwqOptions *dwq, LtDwqResult *result, GError **error);

/* lt_calib_model_write of @model (its folder @src_dir) into a temporary sibling of @out
 * renamed into place when complete (lt-output-dir); the bytes written in *@bytes. */
gboolean lathe_calib_write (const char *cmd, LtModel *model, const char *src_dir,
                            const char *out, guint64 *bytes, GError **error);

G_END_DECLS
