/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Shared helpers for the `lathe` subcommands. */
#pragma once

#include <glib.h>

#include "lt-model.h"

G_BEGIN_DECLS

/* Exit statuses: 0 success, 1 a failure while running, 2 bad input (a file, flag or value). */
enum
{
  LATHE_EXIT_OK = 0,
  LATHE_EXIT_FAILURE = 1,
  LATHE_EXIT_BAD_INPUT = 2,
};

/* Prints "lathe <cmd>: <message>" on one line to stderr and returns the exit status that
 * the error's code calls for (LT_ERROR_FORMAT, _INVALID_ARGUMENT, _UNSUPPORTED and a missing
 * file are bad input; the rest are failures). */
int lathe_cli_report_error (const char *cmd, const GError *error);

/* Parses @argv with @entries under "lathe <cmd>": handles --help itself (prints and exits 0
 * through *out_exit) and turns option errors into one line + exit status 2. Returns TRUE when
 * the command should go on. */
gboolean lathe_cli_parse (const char *cmd, const char *parameter_string, const char *summary,
                          const GOptionEntry *entries, int *argc, char ***argv, int *out_exit);

/* --quantization VALUE (none|4bit|6bit|8bit|mxfp4|nf4; NULL = none) into load options; FALSE
 * after printing one line naming the bad value (exit status 2). */
gboolean lathe_cli_parse_quantization (const char *cmd, const char *text, LtLoadOptions *opts);
/* Names on stderr the layers a load-time quantization left in their stored precision. */
void lathe_cli_report_unquantized (const char *cmd, const LtModel *model);

/* --model ORG/NAME: replaces *@model (when it is a Hugging Face repository id and no such path
 * exists) by its snapshot folder in the HF cache, saying so on stderr. The cache only: a model
 * that is not there is an error naming `lathe download ORG/NAME` (exit status 2). */
gboolean lathe_cli_resolve_model (const char *cmd, char **model, int *out_exit);

/* --compute-dtype VALUE (auto|f32|bf16; NULL = auto): applies it to the process's matrix
 * products and, unless @quiet, says on stderr what was chosen and why. FALSE after one line
 * naming the bad value (exit status 2). */
gboolean lathe_cli_apply_compute_dtype (const char *cmd, const char *text, gboolean quiet);

/* The --compute-dtype option's description, shared by the commands. */
#define LATHE_COMPUTE_DTYPE_HELP \
  "Precision of the matrix products: auto (bf16 where the CPU has AMX or AVX512-BF16), " \
  "f32 or bf16 (default auto)"

#define LATHE_DECLARE_COMMAND(name) int lathe_cmd_##name (int argc, char **argv)

LATHE_DECLARE_COMMAND (train);
LATHE_DECLARE_COMMAND (estimate);
LATHE_DECLARE_COMMAND (tokenize);
LATHE_DECLARE_COMMAND (eval);
LATHE_DECLARE_COMMAND (generate);
LATHE_DECLARE_COMMAND (chat);
LATHE_DECLARE_COMMAND (quantize);
LATHE_DECLARE_COMMAND (fuse);
LATHE_DECLARE_COMMAND (export_recipe);
LATHE_DECLARE_COMMAND (download);
LATHE_DECLARE_COMMAND (devices);

G_END_DECLS
