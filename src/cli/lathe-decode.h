/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Text generation shared by `lathe generate` and `lathe chat`: loading a model (with a
 * load-time quantization), the end-of-sequence test, and printing tokens as they arrive. */
#pragma once

#include <stdio.h>

#include <glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

/* Loads @model_dir (config.json, safetensors, tokenizer.json) with --quantization @quantization
 * (NULL = none) and its tokenizer; names layers left unquantized on stderr. FALSE after one
 * line on stderr, with the exit status in *out_exit. */
gboolean lathe_decode_load (const char *cmd, const char *model_dir, const char *quantization,
                            LtModel **out_model, LtTokenizer **out_tok, int *out_exit);

/* The model's end-of-sequence ids (config.json's eos_token_id, int or list) or the tokenizer's. */
gboolean lathe_decode_is_eos (const LtModel *model, LtTokenizer *tok, int32_t id);

/* Streams the text of generated ids: push each new id, finish once at the end. Decoding a
 * short window rather than single tokens keeps SentencePiece spaces and multi-byte characters
 * right; a window that ends inside a character is held back until it completes. */
typedef struct
{
  LtTokenizer *tok;  /* borrowed */
  FILE *out;
  GArray *ids;       /* int32_t: every id pushed */
  guint prefix_offset, read_offset;
} LatheStream;

void lathe_stream_init (LatheStream *s, LtTokenizer *tok, FILE *out);
void lathe_stream_push (LatheStream *s, int32_t id);
/* Prints what the stream held back (a final partial character); returns the whole text. */
char *lathe_stream_finish (LatheStream *s);
void lathe_stream_clear (LatheStream *s);

G_END_DECLS
