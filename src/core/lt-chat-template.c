/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-chat-template: the Jinja subset that real chat templates use (FORMATS.md §5.8).
 *
 * Renders the way HF transformers' apply_chat_template does: jinja2's
 * ImmutableSandboxedEnvironment with trim_blocks=True, lstrip_blocks=True and the loopcontrols
 * extension; tojson is json.dumps (ensure_ascii=False); globals raise_exception() and
 * strftime_now(); variables messages, add_generation_prompt, tools and documents (none unless
 * given), bos_token / eos_token and any extra ones. Values follow Python: str() of None is
 * "None", of a list its repr, floats print as repr(), undefined names print as "" (jinja2's
 * default Undefined), and so on.
 *
 * Pipeline: source → lexer (tokens, with jinja2's whitespace rules applied to the text) →
 * parser (an AST, built once) → renderer (walks the AST, many times, thread-safe: rendering
 * never writes to the AST). A construct outside the subset (an unknown tag, filter, test,
 * function or method) fails in the parser with LT_ERROR_UNSUPPORTED naming it and its
 * line:column.
 *
 * This file is the public entry and owns the template itself (source, line table, the AST's
 * nodes) and its error positions; the stages live in jinja/: jinja-value.c (values),
 * jinja-lexer.c, jinja-parser.c, jinja-ops.c (Python semantics), jinja-builtins.c (filters,
 * tests, methods, globals) and jinja-eval.c (the renderer), sharing jinja/jinja-private.h. */
#include "config.h"

#include "jinja/jinja-private.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Template, AST and errors                                                                    */


static void
node_free (gpointer p)
{
  Node *n = p;

  g_free (n->name);
  jinja_const_free (n->value);
  if (n->list)
    g_ptr_array_unref (n->list);
  if (n->list2)
    g_ptr_array_unref (n->list2);
  if (n->names)
    g_ptr_array_unref (n->names);
  if (n->ops)
    g_array_unref (n->ops);
  g_free (n);
}

void
jinja_pos_to_line_col (LtChatTemplate *t, int pos, int *line, int *col)
{
  guint lo = 0, hi = t->line_starts->len;

  while (hi - lo > 1)
    {
      guint mid = (lo + hi) / 2;
      if (g_array_index (t->line_starts, int, mid) <= pos)
        lo = mid;
      else
        hi = mid;
    }
  *line = (int) lo + 1;
  *col = (int) g_utf8_strlen (t->src + g_array_index (t->line_starts, int, lo),
                              pos - g_array_index (t->line_starts, int, lo)) + 1;
}

void
jinja_set_error (LtChatTemplate *t, GError **error, int code, int pos, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  int line, col;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  jinja_pos_to_line_col (t, pos, &line, &col);
  g_set_error (error, LT_ERROR, code, "chat template: %s at %d:%d", msg, line, col);
}

/* ------------------------------------------------------------------------------------------ */
/* Public API                                                                                  */

LtChatTemplate *
lt_chat_template_new (const char *source, GError **error)
{
  g_autoptr (LtChatTemplate) t = NULL;
  GString *norm;
  GArray *toks;
  Lexer L;
  Parser P;
  int matched;
  gboolean ok;

  g_return_val_if_fail (source != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!g_utf8_validate (source, -1, NULL))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "chat template: not valid UTF-8");
      return NULL;
    }
  t = g_new0 (LtChatTemplate, 1);
  t->nodes = g_ptr_array_new_with_free_func (node_free);
  t->line_starts = g_array_new (FALSE, FALSE, sizeof (int));

  /* jinja2 reads \r\n, \r and \n as \n and drops one trailing newline
   * (keep_trailing_newline=False). */
  norm = g_string_new (NULL);
  for (const char *p = source; *p; p++)
    {
      if (*p == '\r')
        {
          g_string_append_c (norm, '\n');
          if (p[1] == '\n')
            p++;
        }
      else
        g_string_append_c (norm, *p);
    }
  if (norm->len > 0 && norm->str[norm->len - 1] == '\n')
    g_string_truncate (norm, norm->len - 1);
  if (norm->len > G_MAXINT / 2)
    {
      g_string_free (norm, TRUE);
      g_set_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED, "chat template: too large");
      return NULL;
    }
  t->src = g_string_free (norm, FALSE);
  {
    int zero = 0;
    g_array_append_val (t->line_starts, zero);
    for (int k = 0; t->src[k]; k++)
      if (t->src[k] == '\n')
        {
          int start = k + 1;
          g_array_append_val (t->line_starts, start);
        }
  }

  toks = g_array_new (FALSE, TRUE, sizeof (Token));
  L = (Lexer) { t, t->src, strlen (t->src), toks, error };
  ok = jinja_lex (&L);
  if (ok)
    {
      P = (Parser) { t, (Token *) (void *) toks->data, toks->len, 0, error, 0, 0 };
      t->root = jinja_parse_body (&P, NULL, &matched);
      ok = t->root != NULL;
    }
  for (guint k = 0; k < toks->len; k++)
    g_free (g_array_index (toks, Token, k).str);
  g_array_unref (toks);
  if (!ok)
    return NULL;
  return g_steal_pointer (&t);
}

void
lt_chat_template_free (LtChatTemplate *tmpl)
{
  if (tmpl == NULL)
    return;
  g_ptr_array_unref (tmpl->nodes);
  g_array_unref (tmpl->line_starts);
  g_free (tmpl->src);
  g_free (tmpl);
}

char *
lt_chat_template_render (LtChatTemplate *tmpl, JsonArray *messages,
                         gboolean add_generation_prompt, const char *bos_token,
                         const char *eos_token, JsonObject *extra, GError **error)
{
  g_autoptr (GHashTable) ctx = jinja_vars_new ();
  g_autoptr (GHashTable) top_vars = jinja_vars_new ();
  Frame top = { top_vars, NULL };
  Render R = { tmpl, NULL, &top, ctx, error };
  Value *msgs;
  Exec st;

  g_return_val_if_fail (tmpl != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  msgs = v_list_new ();
  if (messages)
    {
      guint n = json_array_get_length (messages);
      for (guint k = 0; k < n; k++)
        {
          Value *m = v_from_json (json_array_get_element (messages, k), 1);
          if (m == NULL)
            {
              v_unref (msgs);
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "chat template: message %u is nested more than %d levels deep", k,
                           MAX_VALUE_DEPTH);
              return NULL;
            }
          v_list_append (msgs, m);
        }
    }
  g_hash_table_insert (ctx, g_strdup ("messages"), msgs);
  g_hash_table_insert (ctx, g_strdup ("add_generation_prompt"), v_bool (add_generation_prompt));
  /* transformers always passes tools and documents (None when not given). */
  g_hash_table_insert (ctx, g_strdup ("tools"), v_none ());
  g_hash_table_insert (ctx, g_strdup ("documents"), v_none ());
  /* Special tokens the tokenizer lacks are left undefined, as transformers leaves them. */
  if (bos_token)
    g_hash_table_insert (ctx, g_strdup ("bos_token"), v_str (bos_token));
  if (eos_token)
    g_hash_table_insert (ctx, g_strdup ("eos_token"), v_str (eos_token));
  if (extra)
    {
      JsonObjectIter iter;
      const char *name;
      JsonNode *member;
      json_object_iter_init_ordered (&iter, extra);
      while (json_object_iter_next_ordered (&iter, &name, &member))
        {
          Value *v = v_from_json (member, 0);
          if (v == NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                           "chat template: variable '%s' is nested more than %d levels deep",
                           name, MAX_VALUE_DEPTH);
              return NULL;
            }
          g_hash_table_insert (ctx, g_strdup (name), v);
        }
    }

  R.out = g_string_new (NULL);
  st = jinja_exec_body (&R, tmpl->root);
  if (st == EXEC_ERR)
    {
      g_string_free (R.out, TRUE);
      return NULL;
    }
  return g_string_free (R.out, FALSE);
}
