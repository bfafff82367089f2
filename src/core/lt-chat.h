/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat: a conversation with a model through its chat template, and text streamed token by
 * token. `lathe chat`, `lathe generate` and the app's Chat page use these.
 *
 * LtTextStream turns ids into text as they arrive: it decodes a short window twice, without
 * and with the newest ids, and hands out the difference, holding back a window that ends
 * inside a UTF-8 character. Decoding windows rather than single tokens keeps SentencePiece
 * spaces and multi-byte characters right; the pieces concatenate to the decoding of all ids.
 *
 * LtChat keeps the messages and a KV cache across turns. Each reply renders the whole
 * conversation with add_generation_prompt, encodes it without special tokens (as
 * transformers' apply_chat_template does) and runs only the ids after the longest prefix the
 * cache already holds; a template that rewrites an earlier turn refills the cache. Replies
 * stop at an end-of-sequence id (config.json's eos_token_id list or the tokenizer's), after
 * max_tokens, when the token callback returns FALSE, or on cancellation; a stopped reply is
 * kept as it stands. Not thread-safe: one reply at a time, on any one thread. */
#pragma once

#include <glib.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "lt-model.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

typedef struct _LtTextStream LtTextStream;

LtTextStream *lt_text_stream_new (LtTokenizer *tok);
void lt_text_stream_free (LtTextStream *stream);
/* Appends @id; returns the text it completes (often "", never NULL; owned by the caller). */
char *lt_text_stream_push (LtTextStream *stream, int32_t id);
/* The text still held back (a final partial character); after it the stream is drained. */
char *lt_text_stream_flush (LtTextStream *stream);
/* Every id pushed so far, int32_t. */
const GArray *lt_text_stream_get_ids (LtTextStream *stream);

/* Whether @id ends generation for @model. */
gboolean lt_model_is_eos (const LtModel *model, LtTokenizer *tok, int32_t id);

typedef struct
{
  int max_tokens;     /* ≥ 1 */
  float temperature;  /* 0 = greedy */
  float top_p;        /* (0, 1] */
  guint64 seed;       /* seeds the sampler at the first reply after lt_chat_new or a reset;
                         later replies continue its stream (so a regenerated reply differs) */
} LtSampling;

/* Called on the thread of lt_chat_reply with each new piece of text; FALSE stops the reply. */
typedef gboolean (*LtChatTextFunc) (const char *text, gpointer user_data);

typedef struct _LtChat LtChat;

/* @model and @tok are borrowed and must outlive the chat. The tokenizer must carry a chat
 * template (LT_ERROR_UNSUPPORTED otherwise, naming tokenizer_config.json's chat_template).
 * @context: tokens the conversation may hold (0: the model's maximum, at most 4096). */
LtChat *lt_chat_new (LtModel *model, LtTokenizer *tok, int context, GError **error);
void lt_chat_free (LtChat *chat);

/* A system message at the start (NULL or "" for none); takes effect at the next reset. */
void lt_chat_set_system (LtChat *chat, const char *system);
/* Forgets the conversation (keeps the system prompt). */
void lt_chat_reset (LtChat *chat);
/* The messages so far ({role, content} objects; borrowed). */
JsonArray *lt_chat_get_messages (LtChat *chat);

/* Adds the user message @user, generates the assistant's reply (streamed through @func, may
 * be NULL) and adds it. Returns the reply's text, or NULL with an error (the conversation is
 * then as it was before the call): LT_ERROR_INVALID_ARGUMENT when the conversation no longer
 * fits the context. Cancellation is not an error: the reply so far is kept and returned. */
char *lt_chat_reply (LtChat *chat, const char *user, const LtSampling *sampling,
                     LtChatTextFunc func, gpointer user_data, GCancellable *cancellable,
                     GError **error);
/* Drops the last assistant reply and its user message; returns the user message (to reply to
 * again), or NULL when the conversation has no reply. */
char *lt_chat_take_last_turn (LtChat *chat);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtTextStream, lt_text_stream_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtChat, lt_chat_free)

G_END_DECLS
