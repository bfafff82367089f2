/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lt-error.h"

G_DEFINE_QUARK (lt-error-quark, lt_error)

const char *
lt_error_code_name (int code)
{
  switch (code)
    {
    case LT_ERROR_IO: return "io";
    case LT_ERROR_FORMAT: return "format";
    case LT_ERROR_UNSUPPORTED: return "unsupported";
    case LT_ERROR_INVALID_ARGUMENT: return "invalid-argument";
    case LT_ERROR_CANCELLED: return "cancelled";
    case LT_ERROR_NUMERIC: return "numeric";
    case LT_ERROR_NO_MEMORY: return "no-memory";
    default: return "unknown";
    }
}
