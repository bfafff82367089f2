/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-ollama: a Modelfile beside a GGUF. See lt-ollama.h. */
#include "config.h"

#include "lt-ollama.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "lt-error.h"
#include "lt-gguf.h"

LtChatFamily
lt_chat_family_detect (const char *t)
{
  if (t == NULL)
    return LT_CHAT_FAMILY_PLAIN;
  if (strstr (t, "<|im_start|>"))
    return LT_CHAT_FAMILY_CHATML;
  if (strstr (t, "<|start_header_id|>"))
    return LT_CHAT_FAMILY_LLAMA3;
  if (strstr (t, "[INST]"))
    return LT_CHAT_FAMILY_MISTRAL;
  return LT_CHAT_FAMILY_PLAIN;
}

const char *
lt_chat_family_name (LtChatFamily f)
{
  static const char *const names[] = { "plain", "chatml", "llama3", "mistral" };
  return names[f];
}

/* Ollama Go templates. A system prompt comes as .System (Ollama collects the system
 * messages there); the range handles the user and assistant turns. */
static const char *const templates[] = {
  /* plain */
  "{{- if .System }}{{ .System }}\n\n{{ end }}\n"
  "{{- range .Messages }}\n"
  "{{- if eq .Role \"user\" }}User: {{ .Content }}\n"
  "{{ else if eq .Role \"assistant\" }}Assistant: {{ .Content }}\n"
  "{{ end }}\n"
  "{{- end }}Assistant: ",
  /* ChatML */
  "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}\n"
  "{{- range .Messages }}\n"
  "{{- if or (eq .Role \"user\") (eq .Role \"assistant\") }}<|im_start|>{{ .Role }}\n"
  "{{ .Content }}<|im_end|>\n"
  "{{ end }}\n"
  "{{- end }}<|im_start|>assistant\n",
  /* Llama-3 */
  "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>\n"
  "{{- end }}\n"
  "{{- range .Messages }}\n"
  "{{- if or (eq .Role \"user\") (eq .Role \"assistant\") }}"
  "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n"
  "{{- end }}\n"
  "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
  /* Mistral: the system prompt goes before the last user message, as Mistral's template */
  "{{- range $i, $_ := .Messages }}\n"
  "{{- if eq .Role \"user\" }}[INST] "
  "{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}"
  "{{ .Content }}[/INST]\n"
  "{{- else if eq .Role \"assistant\" }} {{ .Content }}</s>\n"
  "{{- end }}\n"
  "{{- end }}",
};

static const char *const family_stops[][4] = {
  { "User:", NULL },
  { "<|im_start|>", "<|im_end|>", NULL },
  { "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", NULL },
  { "[INST]", "[/INST]", NULL },
};

static void
add_stop (GPtrArray *stops, const char *s)
{
  if (s == NULL || *s == '\0' || strchr (s, '"') || strchr (s, '\n') || strchr (s, '\\'))
    return;
  for (guint i = 0; i < stops->len; i++)
    if (g_str_equal (stops->pdata[i], s))
      return;
  g_ptr_array_add (stops, g_strdup (s));
}

/* generation_config.json's sampling defaults where it samples. */
static void
generation_defaults (const char *model_dir, double *temp, double *top_p, gint64 *top_k)
{
  if (model_dir == NULL)
    return;
  g_autofree char *p = g_build_filename (model_dir, "generation_config.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, p, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return;
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  if (!json_object_get_boolean_member_with_default (o, "do_sample", FALSE))
    return;
  *temp = json_object_get_double_member_with_default (o, "temperature", *temp);
  *top_p = json_object_get_double_member_with_default (o, "top_p", *top_p);
  *top_k = json_object_get_int_member_with_default (o, "top_k", *top_k);
}

char *
lt_ollama_modelfile (const char *gguf_path, const char *model_dir, GError **error)
{
  g_autoptr (LtGguf) g = lt_gguf_open (gguf_path, error);
  if (g == NULL)
    return NULL;
  g_autofree char *tmpl = lt_gguf_dup_string (g, "tokenizer.chat_template");
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  const LtChatFamily fam = lt_chat_family_detect (tmpl);
  const char *body = templates[fam];
  if (strstr (body, "\"\"\""))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: the template holds \"\"\"", gguf_path);
      return NULL;
    }
  g_autofree char *spaced = NULL;
  if (fam == LT_CHAT_FAMILY_MISTRAL && strstr (tmpl, " [/INST]"))
    {
      /* Mistral v0.1/v0.2 put a space before [/INST]; v0.3 does not */
      GString *b = g_string_new (body);
      g_string_replace (b, "{{ .Content }}[/INST]", "{{ .Content }} [/INST]", 0);
      body = spaced = g_string_free (b, FALSE);
    }
  g_autoptr (GPtrArray) stops = g_ptr_array_new_with_free_func (g_free);
  const char *keys[] = { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                         "tokenizer.ggml.eom_token_id" };
  for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
    {
      guint32 id;
      if (lt_gguf_get_u32 (g, keys[k], &id))
        {
          g_autofree char *tok = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", id);
          add_stop (stops, tok);
        }
    }
  for (int i = 0; family_stops[fam][i]; i++)
    add_stop (stops, family_stops[fam][i]);

  double temp = 0.8, top_p = 0.9;
  gint64 top_k = 40;
  generation_defaults (model_dir, &temp, &top_p, &top_k);
  guint32 ctx = 0;
  if (arch)
    {
      g_autofree char *k = g_strdup_printf ("%s.context_length", arch);
      lt_gguf_get_u32 (g, k, &ctx);
    }
  g_autofree char *base = g_path_get_basename (gguf_path);
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "# Ollama Modelfile written by Lathe: "
                             "ollama create NAME -f Modelfile\n"
                             "# chat template family: %s%s\n", lt_chat_family_name (fam),
                          fam == LT_CHAT_FAMILY_PLAIN
                              ? (tmpl ? " (the model's template is not one Lathe translates)"
                                      : " (the model has no chat template)")
                              : "");
  g_string_append_printf (s, "FROM ./%s\n\n", base);
  g_string_append_printf (s, "TEMPLATE \"\"\"%s\"\"\"\n\n", body);
  /* Qwen2.5's template puts its own system prompt where none is given */
  static const char qwen_system[] = "You are Qwen, created by Alibaba Cloud. You are a helpful "
                                    "assistant.";
  if (fam == LT_CHAT_FAMILY_CHATML && strstr (tmpl, qwen_system))
    g_string_append_printf (s, "SYSTEM \"\"\"%s\"\"\"\n\n", qwen_system);
  for (guint i = 0; i < stops->len; i++)
    g_string_append_printf (s, "PARAMETER stop \"%s\"\n", (char *) stops->pdata[i]);
  char num[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf (s, "PARAMETER temperature %s\n",
                          g_ascii_formatd (num, sizeof num, "%.3g", temp));
  g_string_append_printf (s, "PARAMETER top_p %s\n",
                          g_ascii_formatd (num, sizeof num, "%.3g", top_p));
  g_string_append_printf (s, "PARAMETER top_k %" G_GINT64_FORMAT "\n", top_k);
  if (ctx > 0)
    g_string_append_printf (s, "PARAMETER num_ctx %u\n", MIN (ctx, 8192u));
  return g_string_free (s, FALSE);
}

gboolean
lt_ollama_write_modelfile (const char *dir, const char *gguf_name, const char *model_dir,
                           GError **error)
{
  g_autofree char *gguf = g_build_filename (dir, gguf_name, NULL);
  g_autofree char *path = g_build_filename (dir, "Modelfile", NULL);
  g_autofree char *text = lt_ollama_modelfile (gguf, model_dir, error);
  g_autoptr (GError) local = NULL;
  if (text == NULL)
    return FALSE;
  /* g_file_set_contents writes a temporary file and renames it */
  if (!g_file_set_contents (path, text, -1, &local))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, local->message);
      return FALSE;
    }
  return TRUE;
}

char *
lt_ollama_model_name (const char *dir)
{
  g_autofree char *base = g_path_get_basename (dir);
  char *name = g_ascii_strdown (base, -1);
  for (char *p = name; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.' && *p != '_' && *p != '-')
      *p = '-';
  return name;
}
