/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Shared by test-tokenizer and test-gguf-input. */
#pragma once

#include <glib.h>

/* The strings of the JSON array in @path that follows @key (NULL: the top-level array) as GBytes, keeping each string's exact length (one of the texts holds
 * U+0000, which json-glib's C strings would cut). */
GPtrArray *load_strings (const char *path, const char *key);
