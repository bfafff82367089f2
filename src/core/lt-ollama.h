/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ollama: an Ollama Modelfile beside a GGUF file (issue 15 item 4).
 *
 * The Modelfile says FROM ./<the GGUF's file name>, a TEMPLATE in Ollama's Go-template syntax
 * for the chat-template family the GGUF's tokenizer.chat_template belongs to — ChatML (Qwen,
 * SmolLM: <|im_start|>), Llama-3 (<|start_header_id|>), Mistral ([INST]) — or a plain
 * "User:/Assistant:" template for any other or none, PARAMETER stop lines for the model's end
 * tokens (tokenizer.ggml eos/eot/eom ids and the family's own markers) and default parameters
 * (temperature, top_p, top_k from the model's generation_config.json when it samples, else
 * Ollama's 0.8 / 0.9 / 40; num_ctx = the context length, at most 8192). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  LT_CHAT_FAMILY_PLAIN = 0,
  LT_CHAT_FAMILY_CHATML,
  LT_CHAT_FAMILY_LLAMA3,
  LT_CHAT_FAMILY_MISTRAL,
} LtChatFamily;

/* The family of a Jinja chat template (NULL or unknown: PLAIN). */
LtChatFamily lt_chat_family_detect (const char *chat_template);
const char *lt_chat_family_name (LtChatFamily family);

/* The Modelfile text for @gguf_path (read for its template, end tokens and context length);
 * @model_dir (may be NULL) for generation_config.json. Errors name the file at fault. */
char *lt_ollama_modelfile (const char *gguf_path, const char *model_dir, GError **error);

/* Writes DIR/Modelfile (atomically) for DIR/@gguf_name. */
gboolean lt_ollama_write_modelfile (const char *dir, const char *gguf_name,
                                    const char *model_dir, GError **error);

/* An `ollama create` model name from a folder name: lower case, [a-z0-9._-] kept, others '-'. */
char *lt_ollama_model_name (const char *dir);

G_END_DECLS
