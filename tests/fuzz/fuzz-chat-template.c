/* SPDX-License-Identifier: GPL-3.0-or-later */
/* libFuzzer harness for the chat-template engine (lt-chat-template and jinja/).
 *
 * Input: template [FUZZ_SEP conversation JSON [FUZZ_SEP extra variables JSON]]. The template
 * is parsed; a parsed template is rendered with the fuzzed conversation (when it is a JSON
 * array; else a fixed one), with and without add_generation_prompt, with and without
 * bos/eos tokens. A refusal at either step must be an LT_ERROR; a rendering must be UTF-8
 * when the inputs are. */
#include "config.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "fuzz-common.h"
#include "lt-chat-template.h"
#include "lt-error.h"

static const char default_conv[] =
  "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
  "{\"role\":\"user\",\"content\":\"Hi!\"},"
  "{\"role\":\"assistant\",\"content\":\"Hello.\"},"
  "{\"role\":\"user\",\"content\":\"Tell me a story about 42 cats.\"}]";

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ("fuzz-chat-template");
  return 0;
}

static JsonNode *
parse_json (const char *text, gsize len)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  JsonNode *root;

  if (!json_parser_load_from_data (p, text, (gssize) len, NULL))
    return NULL;
  root = json_parser_get_root (p);
  return root ? json_node_copy (root) : NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *parts[3];
  gsize lens[3];
  guint n = fuzz_split (data, size, 3, parts, lens);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtChatTemplate) t = NULL;
  g_autoptr (JsonNode) conv = NULL;
  g_autoptr (JsonNode) extra = NULL;
  gboolean utf8_in;

  /* the template is a C string: cut at the first NUL as a caller reading a file would not,
   * but the engine must cope with whatever precedes it */
  t = lt_chat_template_new (parts[0], &error);
  if (t == NULL)
    {
      fuzz_check_error (error);
      fuzz_parts_free (parts, n);
      return 0;
    }
  fuzz_check (error == NULL, "success with an error set");

  if (n > 1)
    conv = parse_json (parts[1], lens[1]);
  if (conv == NULL || !JSON_NODE_HOLDS_ARRAY (conv))
    {
      g_clear_pointer (&conv, json_node_unref);
      conv = parse_json (default_conv, strlen (default_conv));
    }
  if (n > 2)
    extra = parse_json (parts[2], lens[2]);
  /* json-glib turns a lone surrogate escape ("\ude80") into bytes that are not UTF-8: judge
   * the parsed strings, not the input text */
  {
    g_autofree char *cs = json_to_string (conv, FALSE);
    g_autofree char *es = extra ? json_to_string (extra, FALSE) : NULL;
    utf8_in = g_utf8_validate (parts[0], -1, NULL) && g_utf8_validate (cs, -1, NULL)
              && (es == NULL || g_utf8_validate (es, -1, NULL));
  }

  for (int mode = 0; mode < 4; mode++)
    {
      g_autoptr (GError) e = NULL;
      g_autofree char *out =
        lt_chat_template_render (t, json_node_get_array (conv), mode & 1,
                                 (mode & 2) ? "<s>" : NULL, (mode & 2) ? "</s>" : NULL,
                                 extra && JSON_NODE_HOLDS_OBJECT (extra)
                                   ? json_node_get_object (extra) : NULL,
                                 &e);
      if (out == NULL)
        {
          fuzz_check_error (e);
          continue;
        }
      fuzz_check (e == NULL, "render succeeded with an error set");
      if (utf8_in)
        fuzz_check (g_utf8_validate (out, -1, NULL), "render gave invalid UTF-8");
    }
  fuzz_parts_free (parts, n);
  return 0;
}
