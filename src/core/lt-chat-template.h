/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat-template: the Jinja subset that real chat templates use (FORMATS.md §5.8):
 * ChatML/Qwen2.5/Qwen3, Llama-3.x, Mistral, SmolLM2. An unsupported construct fails at parse
 * time with an error naming the construct and its line:column.
 *
 * Renders as transformers' apply_chat_template(tokenize=False) does (jinja2 sandbox,
 * trim_blocks, lstrip_blocks, loopcontrols; tojson = json.dumps(ensure_ascii=False);
 * raise_exception(), strftime_now()), with Python's formatting of values.
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control (-, +); for (loop.*, tuple targets,
 * `if` filter, else, break, continue), if/elif/else, set (names, tuples, ns.attr, blocks),
 * namespace(), range(), dict(), transformers' {% generation %} (rendered as its body);
 * literals, lists, dicts, tuples, attribute/item access, slices, arithmetic, ~, comparisons,
 * in / not in, and/or/not, a if c else b; the filters abs capitalize count d default first
 * float indent int items join last length list lower map reject rejectattr replace reverse
 * safe select selectattr string title tojson trim upper; the tests defined undefined none
 * boolean true false integer float number string mapping iterable sequence callable odd
 * even divisibleby eq/equalto/== ne/!= lt/< le/<= gt/> ge/>= in sameas lower upper; the
 * methods str.strip/lstrip/rstrip/startswith/endswith/split/replace/upper/lower/title/
 * capitalize/join and dict.items/keys/values/get. Anything else (macros, include, call,
 * filter blocks, other filters/tests/methods/functions, '%' formatting) is
 * LT_ERROR_UNSUPPORTED. Malformed templates are LT_ERROR_FORMAT. A parsed template is
 * immutable: any number of threads may render it at once. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _LtChatTemplate LtChatTemplate;

LtChatTemplate *lt_chat_template_new (const char *source, GError **error);
void lt_chat_template_free (LtChatTemplate *tmpl);

/* Renders with `messages` (a JSON array of {role, content, …} objects; NULL = empty),
 * add_generation_prompt, bos_token, eos_token (NULL = the tokenizer has none: the variable is
 * left undefined, which prints as "" as transformers leaves it), and `tools` and `documents`
 * set to none. @extra (may be NULL) adds or overrides top-level variables (e.g. "tools",
 * "enable_thinking", "date_string"). raise_exception("msg") becomes an
 * LT_ERROR_INVALID_ARGUMENT error whose message starts with "msg"; other run-time failures
 * (the TypeErrors and UndefinedErrors jinja2 would raise) are LT_ERROR_INVALID_ARGUMENT
 * errors naming the line:column. */
char *lt_chat_template_render (LtChatTemplate *tmpl, JsonArray *messages,
                               gboolean add_generation_prompt, const char *bos_token,
                               const char *eos_token, JsonObject *extra, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtChatTemplate, lt_chat_template_free)

G_END_DECLS
