/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe tokenize: encode text with a model folder's tokenizer.json. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "lathe-cli.h"
#include "lt-error.h"
#include "lt-tokenizer.h"

int
lathe_cmd_tokenize (int argc, char **argv)
{
  g_autofree char *model = NULL, *text = NULL, *file = NULL, *contents = NULL;
  gboolean json = FALSE, no_special = FALSE;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  g_autoptr (GArray) ids = NULL;
  g_autoptr (GString) out = NULL;
  const char *input;
  gsize input_len;
  int status;
  const GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Model folder holding tokenizer.json (and tokenizer_config.json); required", "DIR" },
    /* FILENAME: the bytes as given, whatever the locale; encode checks they are UTF-8. */
    { "text", 't', 0, G_OPTION_ARG_FILENAME, &text, "UTF-8 text to encode (this or --file)",
      "STR" },
    { "file", 'f', 0, G_OPTION_ARG_FILENAME, &file,
      "Encode the whole content of this UTF-8 file (this or --text)", "F" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print {\"ids\": [...]} instead of space-separated ids (default: off)", NULL },
    { "no-special", 0, 0, G_OPTION_ARG_NONE, &no_special,
      "Do not add special tokens such as BOS (default: the post-processor adds them)", NULL },
    { NULL },
  };

  if (!lathe_cli_parse ("tokenize", "", "Encode text with a model's tokenizer and print the ids.",
                        entries, &argc, &argv, &status))
    return status;
  if (argc > 1)
    {
      g_printerr ("lathe tokenize: unexpected argument “%s”\n", argv[1]);
      return LATHE_EXIT_BAD_INPUT;
    }
  if (model == NULL)
    {
      g_printerr ("lathe tokenize: --model DIR is required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if ((text == NULL) == (file == NULL))
    {
      g_printerr ("lathe tokenize: give exactly one of --text STR and --file F\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (file != NULL)
    {
      if (!g_file_get_contents (file, &contents, &input_len, &error))
        return lathe_cli_report_error ("tokenize", error);
      input = contents;
    }
  else
    {
      input = text;
      input_len = strlen (text);
    }

  if ((tok = lt_tokenizer_new_from_dir (model, &error)) == NULL)
    {
      /* Every load failure (a missing or unreadable file included) is bad input here. */
      lathe_cli_report_error ("tokenize", error);
      return LATHE_EXIT_BAD_INPUT;
    }
  if ((ids = lt_tokenizer_encode (tok, input, (gssize) input_len, !no_special, &error)) == NULL)
    {
      if (file != NULL)
        g_prefix_error (&error, "%s: ", file);
      return lathe_cli_report_error ("tokenize", error);
    }

  out = g_string_new (json ? "{\"ids\": [" : "");
  for (guint i = 0; i < ids->len; i++)
    {
      if (i > 0)
        g_string_append (out, json ? ", " : " ");
      g_string_append_printf (out, "%d", (int) g_array_index (ids, int32_t, i));
    }
  g_string_append (out, json ? "]}\n" : "\n");
  fputs (out->str, stdout);
  return LATHE_EXIT_OK;
}
