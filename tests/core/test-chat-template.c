/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "src/core/lt-chat-template.h"
#include "src/core/lt-error.h"

#include <string.h>

/* tests/data/chat-templates/expected.json, written by tests/tools/make-chat-fixtures.py from
 * HF transformers' own rendering of every template there over a set of conversations. */
typedef struct
{
  JsonParser *parser;
  JsonObject *root;
  GHashTable *templates;      /* name -> LtChatTemplate* (each parsed once) */
  GHashTable *conversations;  /* name -> JsonObject* */
  char *dir;
} Fixtures;

static void
fixtures_free (Fixtures *f)
{
  g_clear_object (&f->parser);
  g_clear_pointer (&f->templates, g_hash_table_unref);
  g_clear_pointer (&f->conversations, g_hash_table_unref);
  g_free (f->dir);
}

static char *
template_path (const char *dir, const char *name)
{
  g_autofree char *file = g_strconcat (name, ".jinja", NULL);
  return g_build_filename (dir, file, NULL);
}

static void
fixtures_load (Fixtures *f)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");
  g_autoptr (GError) error = NULL;
  g_autofree char *path = NULL;
  JsonArray *convs, *cases;

  memset (f, 0, sizeof *f);
  g_assert_nonnull (data);
  f->dir = g_build_filename (data, "chat-templates", NULL);
  path = g_build_filename (f->dir, "expected.json", NULL);
  f->parser = json_parser_new ();
  json_parser_load_from_file (f->parser, path, &error);
  g_assert_no_error (error);
  f->root = json_node_get_object (json_parser_get_root (f->parser));
  f->templates = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) lt_chat_template_free);
  f->conversations = g_hash_table_new (g_str_hash, g_str_equal);

  convs = json_object_get_array_member (f->root, "conversations");
  for (guint k = 0; k < json_array_get_length (convs); k++)
    {
      JsonObject *c = json_array_get_object_element (convs, k);
      g_hash_table_insert (f->conversations, (char *) json_object_get_string_member (c, "name"),
                           c);
    }
  cases = json_object_get_array_member (f->root, "cases");
  for (guint k = 0; k < json_array_get_length (cases); k++)
    {
      const char *name = json_object_get_string_member (json_array_get_object_element (cases, k),
                                                         "template");
      g_autofree char *tpath = NULL;
      g_autofree char *text = NULL;
      LtChatTemplate *t;

      if (g_hash_table_contains (f->templates, name))
        continue;
      tpath = template_path (f->dir, name);
      g_file_get_contents (tpath, &text, NULL, &error);
      g_assert_no_error (error);
      t = lt_chat_template_new (text, &error);
      g_assert_no_error (error);
      g_assert_nonnull (t);
      g_hash_table_insert (f->templates, g_strdup (name), t);
    }
}

static const char *
token_for (Fixtures *f, const char *tmpl, const char *which)
{
  JsonObject *tokens = json_object_get_object_member (f->root, "tokens");
  JsonObject *t = json_object_get_object_member (tokens, tmpl);
  JsonNode *node = json_object_get_member (t, which);

  return JSON_NODE_HOLDS_NULL (node) ? NULL : json_node_get_string (node);
}

/* Today as Python's datetime.now().strftime("%d %b %Y") prints it (C locale). */
static char *
today_string (void)
{
  static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec" };
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();

  return g_strdup_printf ("%02d %s %04d", g_date_time_get_day_of_month (now),
                          months[g_date_time_get_month (now) - 1], g_date_time_get_year (now));
}

static char *
render_case_with (Fixtures *f, LtChatTemplate *t, const char *tmpl_name, const char *conv_name,
                  GError **error)
{
  JsonObject *conv = g_hash_table_lookup (f->conversations, conv_name);

  g_assert_nonnull (conv);
  return lt_chat_template_render (t, json_object_get_array_member (conv, "messages"),
                                  json_object_get_boolean_member (conv, "add_generation_prompt"),
                                  token_for (f, tmpl_name, "bos_token"),
                                  token_for (f, tmpl_name, "eos_token"),
                                  json_object_get_object_member (conv, "extra"), error);
}

static char *
render_case (Fixtures *f, const char *tmpl_name, const char *conv_name, GError **error)
{
  LtChatTemplate *t = g_hash_table_lookup (f->templates, tmpl_name);

  g_assert_nonnull (t);
  return render_case_with (f, t, tmpl_name, conv_name, error);
}

static void
test_fixtures (void)
{
  Fixtures f;
  JsonArray *cases;
  const char *recorded_date;
  g_autofree char *today = today_string ();
  guint n_out = 0, n_raise = 0, n_err = 0;

  fixtures_load (&f);
  g_test_message ("reference: %s", json_object_get_string_member (f.root, "renderer"));
  recorded_date = json_object_get_string_member (f.root, "strftime_date");
  cases = json_object_get_array_member (f.root, "cases");
  g_assert_cmpuint (json_array_get_length (cases), >, 100);

  for (guint k = 0; k < json_array_get_length (cases); k++)
    {
      JsonObject *c = json_array_get_object_element (cases, k);
      const char *tmpl = json_object_get_string_member (c, "template");
      const char *conv = json_object_get_string_member (c, "conversation");
      g_autoptr (GError) error = NULL;
      g_autofree char *out = render_case (&f, tmpl, conv, &error);

      if (json_object_has_member (c, "output"))
        {
          /* strftime_now() renders today's date: the reference recorded its own day. */
          g_auto (GStrv) parts = g_strsplit (json_object_get_string_member (c, "output"),
                                             recorded_date, -1);
          g_autofree char *expected = g_strjoinv (today, parts);
          if (error)
            g_printerr ("%s × %s: %s\n", tmpl, conv, error->message);
          g_assert_no_error (error);
          if (g_strcmp0 (out, expected) != 0)
            g_printerr ("%s × %s differs\n", tmpl, conv);
          g_assert_cmpstr (out, ==, expected);
          n_out++;
        }
      else if (json_object_has_member (c, "raise_exception"))
        {
          const char *msg = json_object_get_string_member (c, "raise_exception");
          if (out)
            g_printerr ("%s × %s: expected raise_exception(\"%s\")\n", tmpl, conv, msg);
          g_assert_null (out);
          g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
          g_assert_true (g_str_has_prefix (error->message, msg));
          g_assert_nonnull (strstr (error->message, "raise_exception in the chat template at "));
          n_raise++;
        }
      else
        {
          /* jinja2 failed with a TypeError/UndefinedError: so must we (not "unsupported"). */
          if (out)
            g_printerr ("%s × %s: expected an error like %s\n", tmpl, conv,
                        json_object_get_string_member (c, "error"));
          g_assert_null (out);
          g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
          n_err++;
        }
    }
  g_test_message ("%u outputs equal, %u raise_exception, %u errors", n_out, n_raise, n_err);
  g_assert_cmpuint (n_out, >, 100);
  g_assert_cmpuint (n_raise, >, 5);
  fixtures_free (&f);
}

/* Each template renders the same text when rendered again and from several threads at once. */
typedef struct
{
  Fixtures *f;
  const char *tmpl;
  const char *expected;
  gboolean ok;
} ThreadJob;

static gpointer
thread_render (gpointer data)
{
  ThreadJob *job = data;

  job->ok = TRUE;
  for (int k = 0; k < 20; k++)
    {
      g_autofree char *out = render_case (job->f, job->tmpl, "multi_turn", NULL);
      if (g_strcmp0 (out, job->expected) != 0)
        job->ok = FALSE;
    }
  return NULL;
}

static void
test_threads (void)
{
  static const char *const names[] = { "qwen3", "llama-3.1", "mistral-v0.3", "lathe-features" };
  Fixtures f;
  ThreadJob jobs[G_N_ELEMENTS (names)];
  GThread *threads[G_N_ELEMENTS (names)];
  g_autofree char *expected[G_N_ELEMENTS (names)] = { NULL };

  fixtures_load (&f);
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    {
      g_autoptr (GError) error = NULL;
      expected[k] = render_case (&f, names[k], "multi_turn", &error);
      g_assert_no_error (error);
      jobs[k] = (ThreadJob) { &f, names[k], expected[k], FALSE };
      threads[k] = g_thread_new ("render", thread_render, &jobs[k]);
    }
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    {
      g_thread_join (threads[k]);
      g_assert_true (jobs[k].ok);
    }
  for (guint k = 0; k < G_N_ELEMENTS (names); k++)
    g_free (expected[k]);
  memset (expected, 0, sizeof expected);
  fixtures_free (&f);
}

static void
assert_parse_error (const char *source, int code, const char *message)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtChatTemplate) t = lt_chat_template_new (source, &error);

  g_assert_null (t);
  g_assert_error (error, LT_ERROR, code);
  g_assert_cmpstr (error->message, ==, message);
}

static void
test_unsupported (void)
{
  assert_parse_error ("{% include 'other.jinja' %}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported tag 'include' at 1:4");
  assert_parse_error ("Hello\n  {%- macro greet(name) %}hi{% endmacro %}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported tag 'macro' at 2:7");
  assert_parse_error ("{{ messages | frobnicate }}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported filter 'frobnicate' at 1:15");
  assert_parse_error ("{% for m in messages %}\n{% if m is frobbed %}x{% endif %}{% endfor %}",
                      LT_ERROR_UNSUPPORTED, "chat template: unsupported test 'frobbed' at 2:12");
  assert_parse_error ("{{ 'a'.format(1) }}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported method 'format()' at 1:8");
  assert_parse_error ("{{ lipsum(2) }}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported function 'lipsum' (macros and other callables "
                      "are not supported) at 1:4");
  assert_parse_error ("{% raw %}{{ x }}{% endraw %}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported tag 'raw' at 1:4");
  assert_parse_error ("{% for m in messages recursive %}{% endfor %}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported recursive loop at 1:22");
  assert_parse_error ("{% extends 'base' %}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported tag 'extends' at 1:4");
  assert_parse_error ("{{ f(*args) }}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported function 'f' (macros and other callables are "
                      "not supported) at 1:4");
  assert_parse_error ("{{ loop.cycle('a', 'b') }}", LT_ERROR_UNSUPPORTED,
                      "chat template: unsupported method 'cycle()' at 1:9");

  /* Real templates outside the subset. */
  {
    g_autofree char *path = g_build_filename (g_getenv ("LATHE_TEST_DATA"), "chat-templates",
                                              "unsupported", "hermes-3-macro.jinja", NULL);
    g_autofree char *text = NULL;
    g_autoptr (GError) error = NULL;
    g_file_get_contents (path, &text, NULL, &error);
    g_assert_no_error (error);
    assert_parse_error (text, LT_ERROR_UNSUPPORTED,
                        "chat template: unsupported tag 'macro' at 1:5");
  }

  /* Constructs that are only known to be unsupported when rendering. */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtChatTemplate) t =
      lt_chat_template_new ("{{ messages | map('frob') | list }}", &error);
    g_autofree char *out = NULL;
    g_assert_no_error (error);
    out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
    g_assert_null (out);
    g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
    g_assert_cmpstr (error->message, ==, "chat template: unsupported filter 'frob' at 1:15");
  }
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (LtChatTemplate) t = lt_chat_template_new ("\n\n{{ '%s' % 'x' }}", &error);
    g_autofree char *out = NULL;
    g_assert_no_error (error);
    out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
    g_assert_null (out);
    g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
    g_assert_cmpstr (error->message, ==,
                     "chat template: unsupported string formatting with '%' at 3:9");
  }
}

static void
test_syntax_errors (void)
{
  assert_parse_error ("{% if messages %}x", LT_ERROR_FORMAT,
                      "chat template: unexpected end of template, expected 'endif' at 1:19");
  assert_parse_error ("a {{ x ", LT_ERROR_FORMAT,
                      "chat template: unexpected end of template: unclosed '{{' at 1:3");
  assert_parse_error ("{% endfor %}", LT_ERROR_FORMAT, "chat template: unexpected 'endfor' at 1:4");
  assert_parse_error ("{{ 'abc }}", LT_ERROR_FORMAT, "chat template: unterminated string at 1:4");
  assert_parse_error ("{% break %}", LT_ERROR_FORMAT,
                      "chat template: 'break' outside a loop at 1:4");
  assert_parse_error ("{{ a + }}", LT_ERROR_FORMAT,
                      "chat template: expected an expression, got '}}' at 1:8");
  assert_parse_error ("{# never closed", LT_ERROR_FORMAT, "chat template: unclosed comment at 1:1");
  assert_parse_error ("{{ (a ] }}", LT_ERROR_FORMAT, "chat template: unexpected ']' at 1:7");
  assert_parse_error ("{{ a $ b }}", LT_ERROR_FORMAT,
                      "chat template: unexpected character '$' at 1:6");
}

/* The reference's "snippets": small templates pinning down semantics (whitespace control,
 * scoping, Python formatting of values, filters, tests, methods, errors). */
static void
test_snippets (void)
{
  Fixtures f;
  JsonArray *snippets;
  guint n_out = 0, n_err = 0;

  fixtures_load (&f);
  snippets = json_object_get_array_member (f.root, "snippets");
  g_assert_cmpuint (json_array_get_length (snippets), >, 50);
  for (guint k = 0; k < json_array_get_length (snippets); k++)
    {
      JsonObject *c = json_array_get_object_element (snippets, k);
      const char *source = json_object_get_string_member (c, "source");
      g_autoptr (GError) error = NULL;
      g_autoptr (LtChatTemplate) t = lt_chat_template_new (source, &error);
      g_autofree char *out = NULL;

      if (t)
        out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
      if (json_object_has_member (c, "output"))
        {
          if (error)
            g_printerr ("snippet %u %s: %s\n", k, source, error->message);
          g_assert_no_error (error);
          g_assert_cmpstr (out, ==, json_object_get_string_member (c, "output"));
          n_out++;
        }
      else
        {
          const char *msg = json_object_has_member (c, "raise_exception")
                            ? json_object_get_string_member (c, "raise_exception")
                            : json_object_get_string_member (c, "error");
          if (out)
            g_printerr ("snippet %u %s: expected %s, got \"%s\"\n", k, source, msg, out);
          g_assert_null (out);
          /* a supported construct used wrongly: not LT_ERROR_UNSUPPORTED */
          g_assert_true (error->domain == LT_ERROR);
          g_assert_cmpint (error->code, !=, LT_ERROR_UNSUPPORTED);
          g_test_message ("%s -> %s (reference: %s)", source, error->message, msg);
          n_err++;
        }
    }
  g_test_message ("%u snippet outputs equal, %u errors as expected", n_out, n_err);
  fixtures_free (&f);
}

static void
test_strftime (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtChatTemplate) t = lt_chat_template_new ("{{ strftime_now('%d %b %Y') }}", &error);
  g_autofree char *out = NULL;
  g_autofree char *today = today_string ();

  g_assert_no_error (error);
  out = lt_chat_template_render (t, NULL, TRUE, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (out, ==, today);
}

/* Values nested without bound, and namespaces that would contain themselves: errors or
 * truncated output, never a stack overflow. */
static void
test_deep_values (void)
{
  g_autoptr (GString) src = g_string_new ("{% set x = 1 %}");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtChatTemplate) t = NULL;
  g_autofree char *out = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GString) deep = g_string_new ("[{\"role\": \"user\", \"content\": ");

  for (int k = 0; k < 3000; k++)
    g_string_append (src, "{% set x = [x] %}");
  g_string_append (src, "{{ x|length }}|{{ '[...]' in (x|string) }}|{{ x == x }}");
  t = lt_chat_template_new (src->str, &error);
  g_assert_no_error (error);
  out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (out, ==, "1|True|False");
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&t, lt_chat_template_free);

  t = lt_chat_template_new ("{% set ns = namespace(x=none) %}{% for i in range(2000) %}"
                            "{% set ns.x = [ns.x] %}{% endfor %}", &error);
  g_assert_no_error (error);
  out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
  g_assert_null (out);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_clear_error (&error);
  g_clear_pointer (&t, lt_chat_template_free);

  t = lt_chat_template_new ("{% set ns = namespace() %}{% set ns.me = [ns] %}", &error);
  g_assert_no_error (error);
  out = lt_chat_template_render (t, NULL, FALSE, NULL, NULL, NULL, &error);
  g_assert_null (out);
  g_assert_error (error, LT_ERROR, LT_ERROR_UNSUPPORTED);
  g_assert_cmpstr (error->message, ==, "chat template: a namespace cannot contain itself "
                   "(or a value nested too deeply) at 1:30");
  g_clear_error (&error);
  g_clear_pointer (&t, lt_chat_template_free);

  for (int k = 0; k < 600; k++)
    g_string_append_c (deep, '[');
  for (int k = 0; k < 600; k++)
    g_string_append_c (deep, ']');
  g_string_append (deep, "}]");
  json_parser_load_from_data (parser, deep->str, -1, &error);
  g_assert_no_error (error);
  t = lt_chat_template_new ("{{ messages }}", &error);
  g_assert_no_error (error);
  out = lt_chat_template_render (t, json_node_get_array (json_parser_get_root (parser)), FALSE,
                                 NULL, NULL, NULL, &error);
  g_assert_null (out);
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
}

/* Randomly truncated and mutated templates: parse and render must fail cleanly or succeed,
 * never crash (run under -Dsanitize_tests=true for memory errors). */
static void
test_fuzz (void)
{
  static const char *const noise[] = { "{{", "}}", "{%", "%}", "{#", "#}", "-", "(", ")", "[",
                                       "]", "'", "\"", "|", " is ", " not ", ",", ":", ".", "\\",
                                       "\n", " if ", " else ", "endif", "endfor", "~", "*" };
  static const char *const convs[] = { "multi_turn", "tools", "empty", "content_parts" };
  Fixtures f;
  GHashTableIter iter;
  gpointer key;
  guint parsed = 0, rendered = 0, failed = 0;
  GRand *rand = g_rand_new_with_seed (g_test_rand_int ());  /* --seed reproduces a run */

  fixtures_load (&f);
  g_hash_table_iter_init (&iter, f.templates);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      g_autofree char *path = template_path (f.dir, key);
      g_autofree char *text = NULL;
      gsize len;

      g_file_get_contents (path, &text, &len, NULL);
      g_assert_nonnull (text);
      for (int round = 0; round < 300; round++)
        {
          g_autoptr (GString) src = g_string_new_len (text, g_rand_int_range (rand, 0, len + 1));
          g_autoptr (GError) error = NULL;
          g_autoptr (LtChatTemplate) t = NULL;

          if (round % 3 == 2)
            {
              /* whole template, one name or literal swapped for another: exercises the
               * renderer's type errors rather than the parser's */
              static const char *const words[] = { "messages", "loop", "none", "true", "1",
                                                   "'x'", "[]", "{}", "ns", "message",
                                                   "tools", "content", "-1", "nope" };
              g_autoptr (GRegex) re = g_regex_new ("\\b[a-z_]+\\b", 0, 0, NULL);
              g_autoptr (GMatchInfo) mi = NULL;
              int skip = g_rand_int_range (rand, 0, 200);
              g_string_assign (src, text);
              g_regex_match (re, src->str, 0, &mi);
              while (skip-- > 0 && g_match_info_matches (mi))
                g_match_info_next (mi, NULL);
              if (g_match_info_matches (mi))
                {
                  int start, end;
                  g_match_info_fetch_pos (mi, 0, &start, &end);
                  g_string_erase (src, start, end - start);
                  g_string_insert (src, start,
                                   words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))]);
                }
            }
          else if (round % 3 == 1)
            for (int m = 0; m < 3 && src->len > 0; m++)
              {
                gsize at = g_rand_int_range (rand, 0, src->len);
                gsize cut = g_rand_int_range (rand, 1, 8);
                if (g_rand_boolean (rand))
                  g_string_erase (src, at, MIN (src->len - at, cut));
                else
                  g_string_insert (src, at, noise[g_rand_int_range (rand, 0,
                                                                    G_N_ELEMENTS (noise))]);
              }
          if (!g_utf8_validate (src->str, -1, NULL))
            continue;
          t = lt_chat_template_new (src->str, &error);
          g_assert_true ((t == NULL) != (error == NULL));
          if (t == NULL)
            {
              g_assert_true (error->domain == LT_ERROR);
              continue;
            }
          parsed++;
          for (guint c = 0; c < G_N_ELEMENTS (convs); c++)
            {
              g_autoptr (GError) rerror = NULL;
              g_autofree char *out = render_case_with (&f, t, key, convs[c], &rerror);
              g_assert_true ((out == NULL) != (rerror == NULL));
              if (out)
                rendered++;
              else
                failed++;
            }
        }
    }
  g_test_message ("fuzz: %u templates parsed, %u renders, %u render errors", parsed, rendered,
                  failed);
  g_assert_cmpuint (parsed, >, 500);
  g_rand_free (rand);
  fixtures_free (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/chat-template/fixtures", test_fixtures);
  g_test_add_func ("/chat-template/threads", test_threads);
  g_test_add_func ("/chat-template/unsupported", test_unsupported);
  g_test_add_func ("/chat-template/syntax-errors", test_syntax_errors);
  g_test_add_func ("/chat-template/snippets", test_snippets);
  g_test_add_func ("/chat-template/strftime", test_strftime);
  g_test_add_func ("/chat-template/deep-values", test_deep_values);
  g_test_add_func ("/chat-template/fuzz", test_fuzz);
  return g_test_run ();
}
