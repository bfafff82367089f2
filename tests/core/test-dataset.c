/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dataset: JSONL formats, EOS, truncation, prompt masks, batches and epoch order. Token ids
 * are checked against the ids HF tokenizers recorded for the same texts
 * (tests/data/tokenizers/llama3/expected.json). */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "lt-dataset.h"
#include "lt-error.h"

static char *tmpdir;

static char *
data_path (const char *a, const char *b, const char *c)
{
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), a, b, c, NULL);
}

static LtTokenizer *
llama3_tokenizer (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = data_path ("tokenizers", "llama3", NULL);
  LtTokenizer *tok = lt_tokenizer_new_from_dir (dir, &error);
  g_assert_no_error (error);
  return tok;
}

static JsonNode *
load_json (const char *path)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  json_parser_load_from_file (p, path, &error);
  g_assert_no_error (error);
  return json_node_copy (json_parser_get_root (p));
}

static char *
write_tmp (const char *name, const char *contents)
{
  char *path = g_build_filename (tmpdir, name, NULL);
  g_assert_true (g_file_set_contents (path, contents, -1, NULL));
  return path;
}

static void
test_text_matches_hf (void)
{
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autofree char *texts_path = data_path ("tokenizers", "texts.json", NULL);
  g_autofree char *exp_path = data_path ("tokenizers", "llama3", "expected.json");
  g_autoptr (JsonNode) texts = load_json (texts_path);
  g_autoptr (JsonNode) expected = load_json (exp_path);
  JsonArray *ta = json_node_get_array (texts);
  JsonArray *ids = json_object_get_array_member (json_node_get_object (expected), "ids");
  int32_t eos = lt_tokenizer_get_eos_id (tok);
  g_assert_cmpint (eos, >=, 0);

  /* One {"text": …} line per non-empty fixture text. json-glib hands strings out as C strings,
   * so a text with an embedded NUL arrives cut short: it is recognised by its HF ids no longer
   * matching, and left out (the fixture set has exactly one). */
  g_autoptr (GString) jsonl = g_string_new (NULL);
  g_autoptr (GArray) used = g_array_new (FALSE, FALSE, sizeof (guint));
  guint cut_short = 0;
  for (guint i = 0; i < json_array_get_length (ta); i++)
    {
      const char *t = json_array_get_string_element (ta, i);
      if (*t == '\0')
        continue;
      g_autoptr (GArray) direct = lt_tokenizer_encode (tok, t, -1, TRUE, NULL);
      JsonArray *want = json_array_get_array_element (ids, i);
      gboolean same = direct->len == json_array_get_length (want);
      for (guint j = 0; same && j < direct->len; j++)
        same = g_array_index (direct, int32_t, j) == json_array_get_int_element (want, j);
      if (!same)
        {
          cut_short++;
          continue;
        }
      g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
      g_autoptr (JsonObject) obj = json_object_new ();
      json_object_set_string_member (obj, "text", t);
      json_node_set_object (node, obj);
      g_autofree char *line = json_to_string (node, FALSE);
      g_string_append_printf (jsonl, "%s\n", line);
      g_array_append_val (used, i);
    }
  g_assert_cmpuint (cut_short, <=, 1);
  g_autofree char *path = write_tmp ("text.jsonl", jsonl->str);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtDataset) ds = lt_dataset_load (path, tok, NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ds->format, ==, LT_DATA_FORMAT_TEXT);
  g_assert_cmpuint (ds->n_examples, ==, used->len);
  for (guint k = 0; k < used->len; k++)
    {
      JsonArray *want = json_array_get_array_element (ids, g_array_index (used, guint, k));
      guint n = json_array_get_length (want);
      gboolean has_eos = n > 0 && json_array_get_int_element (want, n - 1) == eos;
      const LtExample *ex = &ds->examples[k];
      g_assert_cmpint (ex->n, ==, n + (has_eos ? 0 : 1));
      for (guint j = 0; j < n; j++)
        g_assert_cmpint (ex->ids[j], ==, json_array_get_int_element (want, j));
      g_assert_cmpint (ex->ids[ex->n - 1], ==, eos);
      g_assert_cmpint (ex->prompt_len, ==, 0);
    }
}

static void
test_truncation_and_batch (void)
{
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autofree char *path = write_tmp ("comp.jsonl",
    "{\"prompt\": \"Question: what is two plus two?\", \"completion\": \" Four.\"}\n"
    "\n"
    "{\"prompt\": \"Say hi\", \"completion\": \" hi there, friend\"}\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (LtDataset) ds = lt_dataset_load (path, tok, NULL, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ds->format, ==, LT_DATA_FORMAT_COMPLETIONS);
  g_assert_cmpuint (ds->n_examples, ==, 2);

  /* No chat template: prompt with the post-processor (BOS), completion without, EOS last. */
  g_autoptr (GArray) p0 = lt_tokenizer_encode (tok, "Say hi", -1, TRUE, &error);
  g_autoptr (GArray) c0 = lt_tokenizer_encode (tok, " hi there, friend", -1, FALSE, &error);
  const LtExample *ex = &ds->examples[1];
  g_assert_cmpint (ex->prompt_len, ==, p0->len);
  g_assert_cmpint (ex->n, ==, p0->len + c0->len + 1);
  g_assert_cmpint (ex->ids[0], ==, lt_tokenizer_get_bos_id (tok));
  g_assert_cmpint (ex->ids[ex->n - 1], ==, lt_tokenizer_get_eos_id (tok));

  /* Batch of both: T = longest - 1; targets are inputs shifted by one; with mask_prompt the
   * weights start at the first completion token. */
  gsize idx[2] = { 0, 1 };
  g_autoptr (LtBatch) b = lt_dataset_make_batch (ds, idx, 2, TRUE, -7);
  g_assert_cmpint (b->B, ==, 2);
  g_assert_cmpint (b->T, ==, MAX (ds->examples[0].n, ds->examples[1].n) - 1);
  gint64 predicted = 0;
  for (int r = 0; r < 2; r++)
    {
      const LtExample *e = &ds->examples[r];
      for (int t = 0; t < b->T; t++)
        {
          gsize k = (gsize) r * b->T + t;
          if (t < e->n - 1)
            {
              g_assert_cmpint (b->inputs[k], ==, e->ids[t]);
              g_assert_cmpint (b->targets[k], ==, e->ids[t + 1]);
              g_assert_cmpfloat (b->weights[k], ==, t + 1 >= e->prompt_len ? 1.0f : 0.0f);
            }
          else
            {
              g_assert_cmpint (b->inputs[k], ==, -7);
              g_assert_cmpfloat (b->weights[k], ==, 0.0f);
            }
          predicted += b->weights[k] != 0;
        }
    }
  g_assert_cmpint (b->n_predicted, ==, predicted);
  g_assert_cmpint (predicted, ==, (ds->examples[0].n - ds->examples[0].prompt_len)
                                  + (ds->examples[1].n - ds->examples[1].prompt_len));
  /* Without mask_prompt every real position is in the loss. */
  g_autoptr (LtBatch) b2 = lt_dataset_make_batch (ds, idx, 2, FALSE, 0);
  g_assert_cmpint (b2->n_predicted, ==, ds->examples[0].n - 1 + ds->examples[1].n - 1);

  /* Truncation to 4 tokens is counted. */
  g_autoptr (LtDataset) ds4 = lt_dataset_load (path, tok, NULL, 4, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds4->n_truncated, ==, 2);
  g_assert_cmpint (ds4->examples[0].n, ==, 4);
  g_assert_cmpint (ds4->n_tokens, ==, 8);
}

static void
expect_error (const char *contents, int code, const char *needle)
{
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autofree char *path = write_tmp ("bad.jsonl", contents);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtDataset) ds = lt_dataset_load (path, tok, NULL, 0, &error);
  g_assert_null (ds);
  g_assert_error (error, LT_ERROR, code);
  g_assert_nonnull (strstr (error->message, "bad.jsonl"));
  if (strstr (error->message, needle) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, needle);
}

static void
test_errors (void)
{
  expect_error ("{\"text\": \"a\"}\n{\"text\": \"b\"\n", LT_ERROR_FORMAT, ":2:");
  expect_error ("{\"text\": 3}\n", LT_ERROR_FORMAT, "key “text”");
  expect_error ("[1, 2]\n", LT_ERROR_FORMAT, ":1: expected a JSON object");
  expect_error ("{\"foo\": 1}\n", LT_ERROR_FORMAT, "no known keys");
  expect_error ("{\"text\": \"a\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n", LT_ERROR_FORMAT,
                ":2: a “completions” line in a “text” file");
  expect_error ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
                LT_ERROR_UNSUPPORTED, "chat template");
  expect_error ("\n\n", LT_ERROR_FORMAT, "no examples");
  expect_error ("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": 3}\n",
                LT_ERROR_FORMAT, ":1: key “rejected”");
}

static void
test_find_files (void)
{
  g_autofree char *dir = g_build_filename (tmpdir, "data", NULL);
  g_mkdir (dir, 0755);
  char *train, *valid, *test;
  g_autoptr (GError) error = NULL;
  g_assert_false (lt_dataset_find_files (dir, &train, &valid, &test, &error));
  g_assert_nonnull (strstr (error->message, "train.jsonl"));
  g_clear_error (&error);
  g_autofree char *t = g_build_filename (dir, "train.jsonl", NULL);
  g_autofree char *v = g_build_filename (dir, "valid.jsonl", NULL);
  g_file_set_contents (t, "{}", -1, NULL);
  g_file_set_contents (v, "{}", -1, NULL);
  g_assert_true (lt_dataset_find_files (dir, &train, &valid, &test, &error));
  g_assert_cmpstr (train, ==, t);
  g_assert_cmpstr (valid, ==, v);
  g_assert_null (test);
  g_free (train);
  g_free (valid);
  g_assert_true (lt_dataset_find_files (t, &train, &valid, &test, &error));
  g_assert_cmpstr (train, ==, t);
  g_assert_null (valid);
  g_free (train);
}

static void
test_epoch_order (void)
{
  LtDataset ds = { 0 };
  ds.n_examples = 50;
  g_autofree gsize *plain = lt_dataset_epoch_order (&ds, FALSE, 1, 0);
  g_autofree gsize *a = lt_dataset_epoch_order (&ds, TRUE, 42, 0);
  g_autofree gsize *a2 = lt_dataset_epoch_order (&ds, TRUE, 42, 0);
  g_autofree gsize *b = lt_dataset_epoch_order (&ds, TRUE, 42, 1);
  g_autofree gsize *c = lt_dataset_epoch_order (&ds, TRUE, 43, 0);
  gboolean seen[50] = { 0 };
  for (int i = 0; i < 50; i++)
    {
      g_assert_cmpuint (plain[i], ==, i);
      g_assert_cmpuint (a[i], ==, a2[i]);
      g_assert_false (seen[a[i]]);
      seen[a[i]] = TRUE;
    }
  g_assert_true (memcmp (a, b, 50 * sizeof (gsize)) != 0);
  g_assert_true (memcmp (a, c, 50 * sizeof (gsize)) != 0);
  g_assert_true (memcmp (a, plain, 50 * sizeof (gsize)) != 0);
}


static void
test_chat_prompt_prefix (void)
{
  /* Chat lines: the whole conversation rendered by the template and encoded without added
   * specials; the prompt is the conversation minus its last message rendered with the
   * generation prompt, and must be a prefix of the whole (ChatML makes it one). */
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autofree char *tpath = data_path ("chat-templates", "chatml.jinja", NULL);
  g_autofree char *source = NULL;
  g_assert_true (g_file_get_contents (tpath, &source, NULL, NULL));
  g_autoptr (GError) error = NULL;
  g_autoptr (LtChatTemplate) tmpl = lt_chat_template_new (source, &error);
  g_assert_no_error (error);
  g_autofree char *path = write_tmp ("chat.jsonl",
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
    "{\"role\": \"user\", \"content\": \"Name a colour.\"}, "
    "{\"role\": \"assistant\", \"content\": \"Blue.\"}]}\n"
    "{\"prompt\": \"Two plus two?\", \"completion\": \"Four.\"}\n");
  /* mixed formats are refused, so load the two lines as two files */
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  char **lines = g_strsplit (contents, "\n", -1);
  g_autofree char *chat = write_tmp ("chat1.jsonl", lines[0]);
  g_autofree char *comp = write_tmp ("comp1.jsonl", lines[1]);
  g_strfreev (lines);

  g_autoptr (LtDataset) ds = lt_dataset_load (chat, tok, tmpl, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ds->format, ==, LT_DATA_FORMAT_CHAT);
  g_autoptr (JsonNode) msgs = json_from_string (
    "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Name a colour.\"}]", NULL);
  g_autofree char *prompt = lt_chat_template_render (tmpl, json_node_get_array (msgs), TRUE,
                                                     NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_suffix (prompt, "<|im_start|>assistant\n"));
  g_autoptr (GArray) pids = lt_tokenizer_encode (tok, prompt, -1, FALSE, &error);
  const LtExample *ex = &ds->examples[0];
  g_assert_cmpint (ex->prompt_len, ==, pids->len);
  g_assert_cmpint (ex->n, >, ex->prompt_len);
  for (guint i = 0; i < pids->len; i++)
    g_assert_cmpint (ex->ids[i], ==, g_array_index (pids, int32_t, i));

  /* prompt/completion with a template: a user turn and an assistant turn */
  g_autoptr (LtDataset) dc = lt_dataset_load (comp, tok, tmpl, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (dc->format, ==, LT_DATA_FORMAT_COMPLETIONS);
  g_autofree char *decoded = lt_tokenizer_decode (tok, dc->examples[0].ids + dc->examples[0].prompt_len,
                                                  dc->examples[0].n - dc->examples[0].prompt_len,
                                                  FALSE);
  g_assert_true (g_str_has_prefix (decoded, "Four."));
}

/* lt_dataset_inspect: formats, the first broken line by number, counts and token lengths. */
static void
test_inspect (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *tok_dir = data_path ("tokenizers", "llama3", NULL);
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autofree char *text = write_tmp ("inspect-text.jsonl",
                                     "{\"text\": \"a\"}\n"
                                     "\n"
                                     "{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n"
                                     "{\"text\": \"one two three\"}\n"
                                     "{\"text\": \"Once upon a time there was a little girl who "
                                     "lived in a village near the forest.\"}\n");
  g_autoptr (LtDatasetReport) r = NULL;
  g_autoptr (LtDataset) ds = NULL;
  int lengths[4];

  /* Without a model: format and count only. */
  r = lt_dataset_inspect (text, NULL, 8, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (r->have_format);
  g_assert_cmpint (r->format, ==, LT_DATA_FORMAT_TEXT);
  g_assert_cmpuint (r->n_examples, ==, 4);
  g_assert_null (r->problem);
  g_assert_false (r->have_lengths);
  g_clear_pointer (&r, lt_dataset_report_free);

  /* With the tokenizer: the lengths lt_dataset_load gives (BOS + text + EOS), sorted. */
  ds = lt_dataset_load (text, tok, NULL, 0, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 4; i++)
    lengths[i] = ds->examples[i].n;
  g_assert_cmpint (lengths[0], <, lengths[2]);
  g_assert_cmpint (lengths[2], <, lengths[1]);
  g_assert_cmpint (lengths[1], <, lengths[3]);
  r = lt_dataset_inspect (text, tok_dir, 12, NULL, &error);
  g_assert_no_error (error);
  g_assert_null (r->problem);
  g_assert_true (r->have_lengths);
  g_assert_cmpuint (r->n_examples, ==, 4);
  g_assert_cmpint (r->min_tokens, ==, lengths[0]);
  g_assert_cmpint (r->median_tokens, ==, lengths[1]); /* the upper middle of 4 */
  g_assert_cmpint (r->max_tokens, ==, lengths[3]);
  g_assert_cmpint (lengths[2], <=, 12); /* so that the count below is of the two longest */
  g_assert_cmpint (lengths[1], >, 12);
  g_assert_cmpuint (r->n_truncated, ==, 2);
  g_clear_pointer (&r, lt_dataset_report_free);
  {
    /* The count agrees with what a run truncates. */
    g_autoptr (LtDataset) cut = lt_dataset_load (text, tok, NULL, 12, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (cut->n_truncated, ==, 2);
  }
  r = lt_dataset_inspect (text, tok_dir, 0, NULL, &error);
  g_assert_cmpuint (r->n_truncated, ==, 0);
  g_clear_pointer (&r, lt_dataset_report_free);

  /* A broken line: named with its number (blank lines count), the records before it counted. */
  {
    g_autofree char *bad = write_tmp ("inspect-bad.jsonl",
                                      "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n{\"text\": \"c\",\n"
                                      "{\"text\": \"d\"}\n");
    g_autofree char *prefix = g_strdup_printf ("%s:4: not valid JSON", bad);

    r = lt_dataset_inspect (bad, tok_dir, 8, NULL, &error);
    g_assert_no_error (error);
    g_assert_nonnull (r->problem);
    g_assert_true (g_str_has_prefix (r->problem, prefix));
    g_assert_cmpuint (r->problem_line, ==, 4);
    g_assert_cmpuint (r->n_examples, ==, 2);
    g_assert_false (r->have_lengths);
    g_clear_pointer (&r, lt_dataset_report_free);
  }

  /* Formats that change mid-file: the first differing line. */
  {
    g_autofree char *mixed = write_tmp ("inspect-mixed.jsonl",
                                        "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
                                        "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
                                        "{\"text\": \"t\"}\n");
    r = lt_dataset_inspect (mixed, NULL, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (r->format, ==, LT_DATA_FORMAT_COMPLETIONS);
    g_assert_cmpuint (r->problem_line, ==, 3);
    g_assert_nonnull (strstr (r->problem, "same format"));
    g_clear_pointer (&r, lt_dataset_report_free);
  }

  /* A problem only tokenization finds (a key that is not a string): the loader's message. */
  {
    g_autofree char *typed = write_tmp ("inspect-typed.jsonl",
                                        "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
                                        "{\"prompt\": 5, \"completion\": \"c\"}\n");
    g_autoptr (GError) load_error = NULL;
    g_autoptr (LtDataset) none = lt_dataset_load (typed, tok, NULL, 0, &load_error);

    g_assert_null (none);
    r = lt_dataset_inspect (typed, NULL, 0, NULL, &error);
    g_assert_null (r->problem); /* the keys are there */
    g_clear_pointer (&r, lt_dataset_report_free);
    r = lt_dataset_inspect (typed, tok_dir, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (r->problem, ==, load_error->message);
    g_assert_cmpuint (r->problem_line, ==, 2);
    g_clear_pointer (&r, lt_dataset_report_free);
  }

  /* Preference pairs (a folder): the format and which trainers it suits. */
  {
    g_autofree char *pref = data_path ("preference", "tinystories", NULL);

    r = lt_dataset_inspect (pref, NULL, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_null (r->problem);
    g_assert_cmpint (r->format, ==, LT_DATA_FORMAT_PREFERENCE);
    g_assert_cmpuint (r->n_examples, >, 0);
    g_assert_true (g_str_has_suffix (r->path, "train.jsonl"));
    g_assert_true (lt_data_format_suits (r->format, TRUE));
    g_assert_false (lt_data_format_suits (r->format, FALSE));
    g_assert_true (lt_data_format_suits (LT_DATA_FORMAT_CHAT, FALSE));
    g_assert_false (lt_data_format_suits (LT_DATA_FORMAT_TEXT, TRUE));
    g_clear_pointer (&r, lt_dataset_report_free);
  }

  /* Empty file, missing data, cancelled. */
  {
    g_autofree char *empty = write_tmp ("inspect-empty.jsonl", "\n\n");
    g_autoptr (GCancellable) cancellable = g_cancellable_new ();

    r = lt_dataset_inspect (empty, NULL, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_nonnull (strstr (r->problem, "no examples"));
    g_assert_false (r->have_format);
    g_clear_pointer (&r, lt_dataset_report_free);

    g_assert_null (lt_dataset_inspect ("/nonexistent/data", NULL, 0, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_IO);
    g_clear_error (&error);

    g_cancellable_cancel (cancellable);
    g_assert_null (lt_dataset_inspect (text, tok_dir, 0, cancellable, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
  }
}

/* A 3 MB text line and a 3 MB prompt cost their first max_seq_length tokens: the examples
 * equal the whole texts' encodings cut to 64, and both count as truncated. */
static void
test_long_line (void)
{
  g_autoptr (LtTokenizer) tok = llama3_tokenizer ();
  g_autoptr (GString) words = g_string_new (NULL);
  g_autoptr (GError) error = NULL;

  while (words->len < 3 * 1024 * 1024)
    g_string_append (words, "Once upon a time a fox read 1024 books. ");
  g_autofree char *contents = g_strdup_printf ("{\"text\": \"%s\"}\n{\"text\": \"short\"}\n",
                                               words->str);
  g_autofree char *path = write_tmp ("long.jsonl", contents);
  g_autoptr (LtDataset) ds = lt_dataset_load (path, tok, NULL, 64, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (ds->n_examples, ==, 2);
  g_assert_cmpuint (ds->n_truncated, ==, 1);
  g_assert_cmpint (ds->examples[0].n, ==, 64);
  g_autoptr (GArray) full = lt_tokenizer_encode (tok, words->str, -1, TRUE, &error);
  g_assert_no_error (error);
  g_assert_cmpint (memcmp (ds->examples[0].ids, full->data, 64 * sizeof (int32_t)), ==, 0);

  g_autofree char *pc = g_strdup_printf ("{\"prompt\": \"%s\", \"completion\": \" end\"}\n",
                                         words->str);
  g_autofree char *path2 = write_tmp ("long-pc.jsonl", pc);
  g_autoptr (LtDataset) d2 = lt_dataset_load (path2, tok, NULL, 64, &error);
  g_assert_no_error (error);
  g_assert_cmpint (d2->examples[0].n, ==, 64);
  g_assert_cmpint (d2->examples[0].prompt_len, >=, 64);
  g_assert_cmpint (memcmp (d2->examples[0].ids, full->data, 64 * sizeof (int32_t)), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("lathe-dataset-XXXXXX", NULL);
  g_test_add_func ("/dataset/text-matches-hf", test_text_matches_hf);
  g_test_add_func ("/dataset/completions-batch-truncation", test_truncation_and_batch);
  g_test_add_func ("/dataset/chat-prompt-prefix", test_chat_prompt_prefix);
  g_test_add_func ("/dataset/errors", test_errors);
  g_test_add_func ("/dataset/find-files", test_find_files);
  g_test_add_func ("/dataset/epoch-order", test_epoch_order);
  g_test_add_func ("/dataset/inspect", test_inspect);
  g_test_add_func ("/dataset/long-line", test_long_line);
  return g_test_run ();
}
