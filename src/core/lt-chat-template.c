/* TEMPORARY local stub, never committed */
#include "config.h"
#include "lt-chat-template.h"
#include "lt-error.h"
LtChatTemplate *lt_chat_template_new (const char *source, GError **error) { g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "stub"); return NULL; }
void lt_chat_template_free (LtChatTemplate *tmpl) {}
char *lt_chat_template_render (LtChatTemplate *tmpl, JsonArray *messages, gboolean add_generation_prompt, const char *bos_token, const char *eos_token, JsonObject *extra, GError **error) { return NULL; }
