/* SPDX-License-Identifier: GPL-3.0-or-later */
/* See lathe-calib-common.h. */
#include "config.h"

#include "lathe-calib-common.h"

#include <stdio.h>
#include <unistd.h>

#include "lt-export-method.h"

gboolean
lathe_calib_progress (double fraction, const char *what, gpointer user_data)
{
  static int last = -1;
  const char *cmd = user_data ? user_data : "quantize";
  int pct = (int) (fraction * 100.0);
  if (isatty (STDERR_FILENO))
    g_printerr ("\rlathe %s: %3d%% %-60.60s%s", cmd, pct, what, fraction >= 1.0 ? "\n" : "");
  else if (pct / 10 != last / 10 || fraction >= 1.0)
    g_printerr ("lathe %s: %3d%% %s\n", cmd, pct, what);
  last = pct;
  return TRUE;
}

static void
dwq_progress (LtDwqPhase phase, int step, int steps, double kl, gpointer user_data)
{
  static const char *const what[] = { "validation before", "training", "validation after" };
  char text[96];

  g_snprintf (text, sizeof text, "dwq %s, step %d of %d, KL %.5f", what[phase], step, steps,
              kl);
  lathe_calib_progress (steps > 0 ? (double) step / steps : 1.0, text, user_data);
}

gboolean
lathe_calib_dwq_train (const char *cmd, LtModel *teacher, LtModel *student,
                       const LtCalibTokens *calib, const LtCalibTokens *held,
                       const LtDwqOptions *dwq, LtDwqResult *result, GError **error)
{
  return lt_export_method_dwq (teacher, student, calib, held, dwq, dwq_progress, (gpointer) cmd,
                               NULL, result, error);
}

gboolean
lathe_calib_write (const char *cmd, LtModel *model, const char *src_dir, const char *out,
                   guint64 *bytes, GError **error)
{
  g_printerr ("lathe %s: writing %s\n", cmd, out);
  return lt_export_method_write (model, src_dir, out, bytes, error);
}
