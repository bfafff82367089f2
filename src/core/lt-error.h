/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-error: the one error domain of the core.
 *
 * The core never prints, exits or aborts on bad input: it returns FALSE/NULL and sets a GError
 * in LT_ERROR with one of the codes below. Messages name the file, line or key at fault. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define LT_ERROR (lt_error_quark ())

typedef enum
{
  LT_ERROR_IO,               /* a file could not be read or written */
  LT_ERROR_FORMAT,           /* a file is malformed */
  LT_ERROR_UNSUPPORTED,      /* well-formed, but not something Lathe handles */
  LT_ERROR_INVALID_ARGUMENT, /* a setting or argument is out of range or of the wrong type */
  LT_ERROR_CANCELLED,        /* the caller asked to stop */
  LT_ERROR_NUMERIC,          /* NaN/Inf or another numerical failure */
  LT_ERROR_NO_MEMORY,        /* an allocation failed */
} LtError;

GQuark lt_error_quark (void);

/* Returns a static, user-facing name for @code ("format", "io", …). */
const char *lt_error_code_name (int code);

G_END_DECLS
