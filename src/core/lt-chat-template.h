/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat-template: the Jinja subset that real chat templates use (FORMATS.md §5.8):
 * ChatML/Qwen2.5/Qwen3, Llama-3.x, Mistral, SmolLM2. An unsupported construct fails at parse
 * time with an error naming the construct and its line:column. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _LtChatTemplate LtChatTemplate;

LtChatTemplate *lt_chat_template_new (const char *source, GError **error);
void lt_chat_template_free (LtChatTemplate *tmpl);

/* Renders with `messages` (a JSON array of {role, content, …} objects), add_generation_prompt,
 * bos_token, eos_token (NULL = ""). @extra (may be NULL) adds further top-level variables
 * (e.g. "tools", "enable_thinking"). raise_exception() becomes an LT_ERROR_INVALID_ARGUMENT
 * error carrying the template's message. */
char *lt_chat_template_render (LtChatTemplate *tmpl, JsonArray *messages,
                               gboolean add_generation_prompt, const char *bos_token,
                               const char *eos_token, JsonObject *extra, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtChatTemplate, lt_chat_template_free)

G_END_DECLS
