/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-run-compute: the run configuration's compute choices (ARCHITECTURE.md §4): compute_dtype
 * resolved and applied through lt-compute, compute_device parsed and described. */
#include "config.h"

#include "lt-run.h"

#include "lt-compute.h"

static LtComputeDType
compute_request (LtComputeDTypeChoice v)
{
  return v == LT_COMPUTE_DTYPE_F32 ? LT_COMPUTE_F32
         : v == LT_COMPUTE_DTYPE_BF16 ? LT_COMPUTE_BF16 : LT_COMPUTE_AUTO;
}

const char *
lt_run_describe_compute_dtype (LtComputeDTypeChoice v, const char **why)
{
  return lt_compute_dtype_to_string (lt_compute_resolve (compute_request (v), why));
}

const char *
lt_run_apply_compute_dtype (LtComputeDTypeChoice v, const char **why)
{
  LtComputeDType d = lt_compute_configure (compute_request (v));
  if (why)
    *why = lt_compute_get_reason ();
  return lt_compute_dtype_to_string (d);
}

gboolean
lt_run_parse_compute_device (const char *value, gboolean *vulkan, guint *index)
{
  gboolean v = FALSE;
  guint64 n = 0;

  if (value == NULL || g_str_equal (value, "auto") || g_str_equal (value, "cpu"))
    ;
  else if (g_str_equal (value, "vulkan"))
    v = TRUE;
  else if (g_str_has_prefix (value, "vulkan:") && value[7] != '\0'
           && g_ascii_string_to_unsigned (value + 7, 10, 0, 255, &n, NULL))
    v = TRUE;
  else
    return FALSE;
  if (vulkan)
    *vulkan = v;
  if (index)
    *index = (guint) n;
  return TRUE;
}

char *
lt_run_describe_compute_device (const char *value, const char **why)
{
  gboolean v = FALSE;
  guint n = 0;

  if (!lt_run_parse_compute_device (value, &v, &n))
    {
      if (why)
        *why = "invalid";
      return g_strdup (value ? value : "cpu");
    }
  if (why)
    *why = v || (value != NULL && g_str_equal (value, "cpu"))
             ? "requested"
             : "auto: the CPU (the Vulkan training step is new and not yet measured)";
  return v ? g_strdup_printf ("vulkan:%u", n) : g_strdup ("cpu");
}
