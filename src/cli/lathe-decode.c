/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lathe-decode.h"

#include <string.h>

#include "lathe-cli.h"
#include "lt-linear.h"

gboolean
lathe_decode_load (const char *cmd, const char *model_dir, const char *quantization,
                   LtModel **out_model, LtTokenizer **out_tok, int *out_exit)
{
  LtLoadOptions load_opts;
  g_autoptr (GError) error = NULL;
  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;

  *out_exit = LATHE_EXIT_BAD_INPUT;
  if (!g_file_test (model_dir, G_FILE_TEST_IS_DIR))
    {
      g_printerr ("lathe %s: %s: not a model folder\n", cmd, model_dir);
      return FALSE;
    }
  if (!lathe_cli_parse_quantization (cmd, quantization, &load_opts))
    return FALSE;
  /* one thread pool: OpenMP threads share each GEMM over single-threaded OpenBLAS */
  lt_linear_set_threads (0);
  model = lt_model_load_with_options (model_dir, &load_opts, &error);
  if (model == NULL)
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  lathe_cli_report_unquantized (cmd, model);
  tok = lt_tokenizer_new_from_dir (model_dir, &error);
  if (tok == NULL)
    {
      *out_exit = lathe_cli_report_error (cmd, error);
      return FALSE;
    }
  *out_model = g_steal_pointer (&model);
  *out_tok = g_steal_pointer (&tok);
  *out_exit = LATHE_EXIT_OK;
  return TRUE;
}

gboolean
lathe_decode_is_eos (const LtModel *model, LtTokenizer *tok, int32_t id)
{
  for (int i = 0; i < model->config->n_eos_token_ids; i++)
    if (model->config->eos_token_ids[i] == id)
      return TRUE;
  return id >= 0 && id == lt_tokenizer_get_eos_id (tok);
}

/* UTF-8 text decoded so far ends inside a character (the decoder shows U+FFFD). */
static gboolean
ends_incomplete (const char *text)
{
  return g_str_has_suffix (text, "\xef\xbf\xbd");
}

void
lathe_stream_init (LatheStream *s, LtTokenizer *tok, FILE *out)
{
  s->tok = tok;
  s->out = out;
  s->ids = g_array_new (FALSE, FALSE, sizeof (int32_t));
  s->prefix_offset = s->read_offset = 0;
}

void
lathe_stream_clear (LatheStream *s)
{
  g_clear_pointer (&s->ids, g_array_unref);
}

/* Decodes the window from prefix_offset twice, without and with the unprinted ids, and
 * prints the difference. */
void
lathe_stream_push (LatheStream *s, int32_t id)
{
  g_array_append_val (s->ids, id);
  if (s->out == NULL)
    return;

  const int32_t *p = (const int32_t *) s->ids->data + s->prefix_offset;
  g_autofree char *prefix = lt_tokenizer_decode (s->tok, p, s->read_offset - s->prefix_offset,
                                                 TRUE);
  g_autofree char *text = lt_tokenizer_decode (s->tok, p, s->ids->len - s->prefix_offset, TRUE);

  if (strlen (text) > strlen (prefix) && !ends_incomplete (text))
    {
      fputs (text + strlen (prefix), s->out);
      fflush (s->out);
      s->prefix_offset = s->read_offset;
      s->read_offset = s->ids->len;
    }
}

char *
lathe_stream_finish (LatheStream *s)
{
  const int32_t *ids = (const int32_t *) s->ids->data;

  if (s->out != NULL)
    {
      g_autofree char *prefix = lt_tokenizer_decode (s->tok, ids + s->prefix_offset,
                                                     s->read_offset - s->prefix_offset, TRUE);
      g_autofree char *rest = lt_tokenizer_decode (s->tok, ids + s->prefix_offset,
                                                   s->ids->len - s->prefix_offset, TRUE);
      if (strlen (rest) > strlen (prefix))
        fputs (rest + strlen (prefix), s->out);
      fflush (s->out);
      s->prefix_offset = s->read_offset = s->ids->len;
    }
  return lt_tokenizer_decode (s->tok, ids, s->ids->len, TRUE);
}
