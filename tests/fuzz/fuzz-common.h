/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Shared helpers of the libFuzzer harnesses (tests/fuzz/fuzz-*.c) and of their replay driver.
 *
 * An input that carries several files (a tokenizer.json and a text, a template and a
 * conversation, an adapter config and its weights) separates them with FUZZ_SEP. Files that
 * the parser under test reads from disk are written into a private temporary folder. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define FUZZ_SEP "\n#=#=#\n"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Makes criticals and warnings fatal (a g_return_if_fail() hit is a bug) and creates the
 * temporary folder (removed at exit). */
void fuzz_init (const char *harness);
/* Aborts with @what when @cond is false. */
void fuzz_check (gboolean cond, const char *what);
/* Set by a harness whose parser is known to copy raw input bytes into its messages (reported,
 * not yet fixed): the UTF-8 check of fuzz_check_error() is skipped. */
extern gboolean fuzz_error_utf8_known_bad;
/* A refusal must be a GError in LT_ERROR with a message. */
void fuzz_check_error (const GError *error);
/* Writes @data to NAME inside the temporary folder; returns its path (owned by the helpers,
 * valid until the next call with the same name). */
const char *fuzz_write (const char *name, const void *data, gsize size);
/* Removes NAME from the temporary folder, if present. */
void fuzz_remove (const char *name);
/* The temporary folder. */
const char *fuzz_dir (void);
/* Splits @data at FUZZ_SEP into at most @max parts; returns the count. Each part is a
 * NUL-terminated copy (free with g_strfreev-like fuzz_parts_free); lens[i] is its length. */
guint fuzz_split (const uint8_t *data, size_t size, guint max, char **parts, gsize *lens);
void fuzz_parts_free (char **parts, guint n);
/* UTF-8 that may hold U+0000. */
gboolean fuzz_utf8_valid (const char *s, gsize len);
/* A fixture under tests/data (the source tree). */
char *fuzz_test_data (const char *rel);

G_END_DECLS
