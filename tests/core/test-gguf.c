/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-gguf: the byte layout of FORMATS.md §4.1–4.4 checked field by field, read-back, and
 * ggml's reader rules. */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>

#include "lt-error.h"
#include "lt-export.h"
#include "lt-gguf.h"
#include "lt-ollama.h"

static char *
tmp_path (const char *name)
{
  static char *dir = NULL;
  if (dir == NULL)
    dir = g_dir_make_tmp ("lathe-gguf-XXXXXX", NULL);
  return g_build_filename (dir, name, NULL);
}

static guint64
rd_u64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static guint32
rd_u32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

/* Writes: 2 keys and 2 tensors — "a" F32 ne=[3] (12 bytes) and "b" Q8_0 ne=[32, 2]
 * (2 blocks × 34 = 68 bytes). */
static char *
write_small (guint8 fill_a, guint8 fill_b)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGgufWriter) w = lt_gguf_writer_new ();
  char *path = tmp_path ("small.gguf");
  lt_gguf_writer_add_string (w, "general.architecture", "llama");
  lt_gguf_writer_add_u32 (w, "llama.block_count", 2);
  int64_t ne_a[1] = { 3 }, ne_b[2] = { 32, 2 };
  g_assert_true (lt_gguf_writer_add_tensor_info (w, "a", LT_GGML_F32, 1, ne_a, &error));
  g_assert_true (lt_gguf_writer_add_tensor_info (w, "b", LT_GGML_Q8_0, 2, ne_b, &error));
  g_assert_true (lt_gguf_writer_begin (w, path, &error));
  guint8 a[12], b[68];
  memset (a, fill_a, sizeof a);
  memset (b, fill_b, sizeof b);
  g_assert_true (lt_gguf_writer_write_tensor (w, a, sizeof a, &error));
  g_assert_true (lt_gguf_writer_write_tensor (w, b, sizeof b, &error));
  g_assert_true (lt_gguf_writer_finish (w, &error));
  g_assert_no_error (error);
  return path;
}

static void
test_layout (void)
{
  g_autofree char *path = write_small (0xAA, 0xBB);
  g_autofree guint8 *buf = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, (char **) &buf, &len, NULL));

  /* §4.1: magic, version 3, tensor_count, kv_count */
  g_assert_cmpmem (buf, 4, "GGUF", 4);
  g_assert_cmpuint (rd_u32 (buf + 4), ==, 3);
  g_assert_cmpuint (rd_u64 (buf + 8), ==, 2);
  g_assert_cmpuint (rd_u64 (buf + 16), ==, 2);
  gsize p = 24;
  /* kv 1: gguf string key, u32 type 8 (STRING), gguf string value */
  g_assert_cmpuint (rd_u64 (buf + p), ==, strlen ("general.architecture"));
  g_assert_cmpmem (buf + p + 8, 20, "general.architecture", 20);
  p += 8 + 20;
  g_assert_cmpuint (rd_u32 (buf + p), ==, 8);
  g_assert_cmpuint (rd_u64 (buf + p + 4), ==, 5);
  g_assert_cmpmem (buf + p + 12, 5, "llama", 5);
  p += 4 + 8 + 5;
  /* kv 2: u32 type 4 (UINT32) value 2 */
  g_assert_cmpuint (rd_u64 (buf + p), ==, 17);
  p += 8 + 17;
  g_assert_cmpuint (rd_u32 (buf + p), ==, 4);
  g_assert_cmpuint (rd_u32 (buf + p + 4), ==, 2);
  p += 8;
  /* tensor info "a": name, n_dims 1, ne[0] 3, type 0, offset 0 */
  g_assert_cmpuint (rd_u64 (buf + p), ==, 1);
  g_assert_cmpint (buf[p + 8], ==, 'a');
  p += 9;
  g_assert_cmpuint (rd_u32 (buf + p), ==, 1);
  g_assert_cmpuint (rd_u64 (buf + p + 4), ==, 3);
  g_assert_cmpuint (rd_u32 (buf + p + 12), ==, 0);
  g_assert_cmpuint (rd_u64 (buf + p + 16), ==, 0);
  p += 24;
  /* tensor info "b": n_dims 2, ne = [32, 2] innermost first, type 8, offset pad(12, 32) = 32 */
  p += 9;
  g_assert_cmpuint (rd_u32 (buf + p), ==, 2);
  g_assert_cmpuint (rd_u64 (buf + p + 4), ==, 32);
  g_assert_cmpuint (rd_u64 (buf + p + 12), ==, 2);
  g_assert_cmpuint (rd_u32 (buf + p + 20), ==, 8);
  g_assert_cmpuint (rd_u64 (buf + p + 24), ==, 32);
  p += 32;
  /* zero padding to 32, then data; "a" padded to 32, "b" (68 bytes) padded to 96 — the last
   * tensor too. */
  gsize data = (p + 31) / 32 * 32;
  for (gsize i = p; i < data; i++)
    g_assert_cmpint (buf[i], ==, 0);
  g_assert_cmpuint (len, ==, data + 32 + 96);
  for (gsize i = 0; i < 32; i++)
    g_assert_cmpint (buf[data + i], ==, i < 12 ? 0xAA : 0);
  for (gsize i = 0; i < 96; i++)
    g_assert_cmpint (buf[data + 32 + i], ==, i < 68 ? 0xBB : 0);

  /* read back */
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGguf) g = lt_gguf_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_get_version (g), ==, 3);
  g_assert_cmpuint (lt_gguf_get_alignment (g), ==, 32);
  g_assert_cmpuint (lt_gguf_get_data_offset (g), ==, data);
  g_autofree char *arch = lt_gguf_dup_string (g, "general.architecture");
  g_assert_cmpstr (arch, ==, "llama");
  guint32 blocks = 0;
  g_assert_true (lt_gguf_get_u32 (g, "llama.block_count", &blocks));
  g_assert_cmpuint (blocks, ==, 2);
  const LtGgufTensor *tb = lt_gguf_find_tensor (g, "b");
  g_assert_nonnull (tb);
  g_assert_cmpint (tb->type, ==, LT_GGML_Q8_0);
  g_assert_cmpint (tb->ne[0], ==, 32);
  g_assert_cmpint (tb->ne[1], ==, 2);
  g_assert_cmpuint (tb->nbytes, ==, 68);
  g_assert_cmpint (((const guint8 *) tb->data)[67], ==, 0xBB);
}

static void
test_kv_types (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGgufWriter) w = lt_gguf_writer_new ();
  g_autofree char *path = tmp_path ("kv.gguf");
  const char *toks[] = { "<s>", "hello", "", "wörld" };
  gint32 types[] = { 3, 1, 1, -5 };
  float scores[] = { 0.f, -1.5f, 2.25f, 1e-3f };
  lt_gguf_writer_add_string (w, "general.architecture", "qwen3");
  lt_gguf_writer_add_u32 (w, "general.alignment", 64);
  lt_gguf_writer_add_f32 (w, "qwen3.attention.layer_norm_rms_epsilon", 1e-6f);
  lt_gguf_writer_add_bool (w, "tokenizer.ggml.add_bos_token", TRUE);
  lt_gguf_writer_add_i32 (w, "x.i32", -7);
  lt_gguf_writer_add_u64 (w, "x.u64", G_GUINT64_CONSTANT (1) << 40);
  lt_gguf_writer_add_string_array (w, "tokenizer.ggml.tokens", toks, 4);
  lt_gguf_writer_add_i32_array (w, "tokenizer.ggml.token_type", types, 4);
  lt_gguf_writer_add_f32_array (w, "tokenizer.ggml.scores", scores, 4);
  int64_t ne[1] = { 5 };
  g_assert_true (lt_gguf_writer_add_tensor_info (w, "t", LT_GGML_F16, 1, ne, &error));
  g_assert_true (lt_gguf_writer_begin (w, path, &error));
  guint16 h[5] = { 1, 2, 3, 4, 5 };
  g_assert_true (lt_gguf_writer_write_tensor (w, h, sizeof h, &error));
  g_assert_true (lt_gguf_writer_finish (w, &error));

  g_autoptr (LtGguf) g = lt_gguf_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_gguf_get_alignment (g), ==, 64);
  g_assert_cmpuint (lt_gguf_get_data_offset (g) % 64, ==, 0);
  g_assert_cmpuint (lt_gguf_get_n_kv (g), ==, 9);
  /* insertion order kept, architecture first */
  g_assert_cmpstr (lt_gguf_get_kv (g, 0)->key, ==, "general.architecture");
  float eps = 0;
  g_assert_true (lt_gguf_get_f32 (g, "qwen3.attention.layer_norm_rms_epsilon", &eps));
  g_assert_cmpfloat (eps, ==, 1e-6f);
  const LtGgufKv *kv = lt_gguf_find_kv (g, "tokenizer.ggml.tokens");
  g_assert_cmpint (kv->type, ==, LT_GGUF_ARRAY);
  g_assert_cmpint (kv->array_type, ==, LT_GGUF_STRING);
  g_assert_cmpuint (kv->n, ==, 4);
  for (int i = 0; i < 4; i++)
    {
      g_autofree char *s = lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", i);
      g_assert_cmpstr (s, ==, toks[i]);
    }
  kv = lt_gguf_find_kv (g, "tokenizer.ggml.scores");
  g_assert_cmpint (kv->array_type, ==, LT_GGUF_FLOAT32);
  float s2;
  memcpy (&s2, kv->data + 8, 4);
  g_assert_cmpfloat (s2, ==, 2.25f);
  kv = lt_gguf_find_kv (g, "tokenizer.ggml.add_bos_token");
  g_assert_cmpint (kv->type, ==, LT_GGUF_BOOL);
  g_assert_cmpint (kv->data[0], ==, 1);
}

/* Copies the small file, lets @edit change it, and expects the reader to refuse it with
 * @code and a message containing @needle. */
static void
expect_bad (void (*edit) (GByteArray *b), int code, const char *needle)
{
  g_autofree char *path = write_small (1, 2);
  g_autofree char *buf = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &buf, &len, NULL));
  g_autoptr (GByteArray) b = g_byte_array_new ();
  g_byte_array_append (b, (guint8 *) buf, len);
  edit (b);
  g_autoptr (GError) error = NULL;
  g_autoptr (LtGguf) g = lt_gguf_open_buffer (b->data, b->len, "bad.gguf", &error);
  g_assert_null (g);
  g_assert_error (error, LT_ERROR, code);
  g_assert_nonnull (strstr (error->message, "bad.gguf"));
  if (strstr (error->message, needle) == NULL)
    g_error ("“%s” does not mention “%s”", error->message, needle);
}

static void edit_magic (GByteArray *b) { b->data[0] = 'X'; }
static void edit_version (GByteArray *b) { b->data[4] = 1; }
static void edit_truncate (GByteArray *b) { g_byte_array_set_size (b, b->len - 1); }
static void edit_truncate_header (GByteArray *b) { g_byte_array_set_size (b, 40); }
/* Renames tensor "b" to "a": a duplicate tensor name. */
static void
edit_dup_tensor (GByteArray *b)
{
  guint8 *p = memchr (b->data + 24, 'b', b->len - 24);
  /* the first lone 'b' after an 8-byte length 1 is tensor b's name */
  while (p && !(p[-8] == 1 && p[-7] == 0))
    p = memchr (p + 1, 'b', b->data + b->len - p - 1);
  g_assert_nonnull (p);
  *p = 'a';
}
static void
edit_offset (GByteArray *b)
{
  /* tensor b's offset (32) sits right before the data padding: find the u64 value 32 that
   * follows type 8. */
  for (gsize i = 24; i + 12 < b->len; i++)
    if (rd_u32 (b->data + i) == 8 && rd_u64 (b->data + i + 4) == 32)
      {
        b->data[i + 4] = 64;
        return;
      }
  g_assert_not_reached ();
}
static void
edit_type (GByteArray *b)
{
  for (gsize i = 24; i + 12 < b->len; i++)
    if (rd_u32 (b->data + i) == 8 && rd_u64 (b->data + i + 4) == 32)
      {
        b->data[i] = 4; /* removed type id */
        return;
      }
  g_assert_not_reached ();
}
static void
edit_kv_type (GByteArray *b)
{
  /* key 2's type (UINT32 = 4) → 13, not a type */
  gsize p = 24 + 8 + 20 + 4 + 8 + 5 + 8 + 17;
  b->data[p] = 13;
}
static void
edit_counts (GByteArray *b)
{
  b->data[8 + 7] = 0x7f; /* tensor_count ≈ 2^62 */
}

static void
test_reader_rules (void)
{
  expect_bad (edit_magic, LT_ERROR_FORMAT, "magic");
  expect_bad (edit_version, LT_ERROR_UNSUPPORTED, "version 1");
  expect_bad (edit_truncate, LT_ERROR_FORMAT, "past the end");
  expect_bad (edit_truncate_header, LT_ERROR_FORMAT, "truncated");
  expect_bad (edit_dup_tensor, LT_ERROR_FORMAT, "duplicate tensor");
  expect_bad (edit_offset, LT_ERROR_FORMAT, "offset");
  expect_bad (edit_type, LT_ERROR_UNSUPPORTED, "ggml type 4");
  expect_bad (edit_kv_type, LT_ERROR_FORMAT, "invalid value type");
  expect_bad (edit_counts, LT_ERROR_FORMAT, "absurd");
}

static void
test_writer_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = write_small (7, 7);
  g_autoptr (LtGgufWriter) w = lt_gguf_writer_new ();
  int64_t ne[2] = { 33, 2 };
  /* Q8_0 needs ne[0] % 32 == 0 */
  g_assert_false (lt_gguf_writer_add_tensor_info (w, "x", LT_GGML_Q8_0, 2, ne, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  char longname[80];
  memset (longname, 'n', 64);
  longname[64] = '\0';
  ne[0] = 32;
  g_assert_false (lt_gguf_writer_add_tensor_info (w, longname, LT_GGML_F32, 1, ne, &error));
  g_clear_error (&error);
  g_assert_true (lt_gguf_writer_add_tensor_info (w, "x", LT_GGML_F32, 1, ne, &error));
  g_assert_false (lt_gguf_writer_add_tensor_info (w, "x", LT_GGML_F32, 1, ne, &error));
  g_clear_error (&error);

  /* A write that fails half-way leaves the existing file untouched and no temp file. */
  g_autofree char *before = NULL;
  g_assert_true (g_file_get_contents (path, &before, NULL, NULL));
  g_assert_true (lt_gguf_writer_begin (w, path, &error));
  float wrong[3] = { 0 };
  g_assert_false (lt_gguf_writer_write_tensor (w, wrong, sizeof wrong, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_autofree char *after = NULL;
  g_assert_true (g_file_get_contents (path, &after, NULL, NULL));
  g_assert_cmpstr (before, ==, after);
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name (d)))
    g_assert_true (g_str_has_suffix (name, ".gguf"));
}

/* The one GGUF type-name parser: the seven types Lathe writes, any case; anything else is
 * refused with an error naming the allowed ones (no silent fallback to F16). */
static void
test_type_names (void)
{
  static const struct
  {
    const char *name;
    int type;
  } ok[] = {
    { "f32", LT_GGML_F32 },   { "F16", LT_GGML_F16 },   { "bf16", LT_GGML_BF16 },
    { "q8_0", LT_GGML_Q8_0 }, { "Q4_0", LT_GGML_Q4_0 }, { "q4_k", LT_GGML_Q4_K },
    { "Q4_K", LT_GGML_Q4_K }, { "q6_k", LT_GGML_Q6_K },
  };
  const char *bad[] = { "q3_k", "q4_1", "mxfp4", "", "f16 ", NULL };

  for (gsize i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_cmpint (lt_ggml_type_from_name (ok[i].name, &error), ==, ok[i].type);
      g_assert_no_error (error);
      /* the name lt_ggml_type_name gives reads back */
      g_assert_cmpint (lt_ggml_type_from_name (lt_ggml_type_name (ok[i].type), NULL), ==,
                       ok[i].type);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_assert_cmpint (lt_ggml_type_from_name (bad[i], &error), ==, -1);
      g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, "f32, f16, bf16, q8_0, q4_0, q4_k, q6_k"));
      if (bad[i] != NULL && *bad[i] != '\0')
        g_assert_nonnull (strstr (error->message, bad[i]));
    }
}

/* ---- issue 15 items 3 and 4: the metadata llama.cpp reads, and the Ollama Modelfile ---- */

static char *
copy_file (const char *src, const char *dst)
{
  g_autofree char *text = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (src, &text, &len, NULL));
  g_assert_true (g_file_set_contents (dst, text, len, NULL));
  return g_strdup (dst);
}

/* A copy of fixture model @fixture in a temporary folder @name, with chat template @jinja
 * (tests/data/chat-templates; NULL: none). */
static char *
model_with_template (const char *fixture, const char *name, const char *jinja)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *src = g_build_filename (data, "models", fixture, NULL);
  char *dir = tmp_path (name);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  const char *files[] = { "config.json", "generation_config.json", "model.safetensors",
                          "tokenizer.json", "tokenizer_config.json" };
  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *a = g_build_filename (src, files[i], NULL);
      g_autofree char *b = g_build_filename (dir, files[i], NULL);
      g_free (copy_file (a, b));
    }
  if (jinja)
    {
      g_autofree char *a = g_build_filename (data, "chat-templates", jinja, NULL);
      g_autofree char *b = g_build_filename (dir, "chat_template.jinja", NULL);
      g_free (copy_file (a, b));
    }
  return dir;
}

static void
export_to (const char *model_dir, int type, const char *out)
{
  g_autoptr (GError) error = NULL;
  LtExportOptions o;
  lt_export_options_init (&o);
  o.model_dir = model_dir;
  o.gguf_path = out;
  o.gguf_type = type;
  o.force = TRUE;
  LtExportReport *r = lt_export_run (&o, NULL, NULL, &error);
  g_assert_no_error (error);
  lt_export_report_free (r);
}

static char *
token_of (LtGguf *g, const char *key)
{
  guint32 id;
  if (!lt_gguf_get_u32 (g, key, &id))
    return NULL;
  return lt_gguf_dup_array_string (g, "tokenizer.ggml.tokens", id);
}

/* The end-of-generation tokens llama.cpp reads beside the EOS (so that the EOS is among its
 * special_eog_ids and the turn end stops generation), the chat template, general.name and
 * general.quantization_version (2, every type). */
static void
test_llama_cpp_metadata (void)
{
  static const struct
  {
    const char *fixture, *jinja;
    int type;
    const char *eos, *eot, *eom;
  } cases[] = {
    /* llama3 tokenizer: <|end_of_text|> eos, <|eot_id|> the end of a turn */
    { "llama-f32", "llama-3.1.jinja", LT_GGML_F16, "<|end_of_text|>", "<|eot_id|>", NULL },
    /* these fixtures' vocabularies have <|endoftext|> only: it ends a turn too (the ChatML
     * <|im_end|> case is in test-gguf-input, over the qwen2 tokenizer fixture) */
    { "qwen2", "chatml.jinja", LT_GGML_Q8_0, "<|endoftext|>", "<|endoftext|>", NULL },
    { "qwen3", NULL, LT_GGML_F32, "<|endoftext|>", "<|endoftext|>", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *name = g_strdup_printf ("meta-%s", cases[i].fixture);
      g_autofree char *dir = model_with_template (cases[i].fixture, name, cases[i].jinja);
      g_autofree char *out = g_strconcat (dir, ".gguf", NULL);
      export_to (dir, cases[i].type, out);
      g_autoptr (LtGguf) g = lt_gguf_open (out, &error);
      g_assert_no_error (error);
      g_autofree char *eos = token_of (g, "tokenizer.ggml.eos_token_id");
      g_autofree char *eot = token_of (g, "tokenizer.ggml.eot_token_id");
      g_autofree char *eom = token_of (g, "tokenizer.ggml.eom_token_id");
      g_autofree char *gname = lt_gguf_dup_string (g, "general.name");
      g_autofree char *tmpl = lt_gguf_dup_string (g, "tokenizer.chat_template");
      guint32 qv = 0;
      g_test_message ("%s: eos %s, eot %s, eom %s, general.name %s, quantization_version %s, "
                      "chat_template %s", cases[i].fixture, eos, eot, eom ? eom : "(none)", gname,
                      lt_gguf_get_u32 (g, "general.quantization_version", &qv) ? "2" : "missing",
                      tmpl ? "yes" : "no");
      g_assert_cmpstr (eos, ==, cases[i].eos);
      g_assert_cmpstr (eot, ==, cases[i].eot);
      g_assert_cmpstr (eom, ==, cases[i].eom);
      g_assert_cmpstr (gname, ==, name);
      g_assert_true (lt_gguf_get_u32 (g, "general.quantization_version", &qv));
      g_assert_cmpuint (qv, ==, 2);
      if (cases[i].jinja)
        {
          g_autofree char *jp = g_build_filename (dir, "chat_template.jinja", NULL);
          g_autofree char *want = NULL;
          g_assert_true (g_file_get_contents (jp, &want, NULL, NULL));
          g_assert_cmpstr (tmpl, ==, want);
        }
      else
        g_assert_null (tmpl);
    }
}

/* `lathe fuse --export-ollama DIR`: DIR/model.gguf and DIR/Modelfile for a ChatML (Qwen2.5)
 * and a Llama-3 template, checked line by line, and the printed `ollama create` command. */
static void
test_ollama_modelfile (void)
{
  static const struct
  {
    const char *fixture, *jinja, *family;
    const char *template_lines[4];
    const char *stops[5];
    const char *system;
  } cases[] = {
    { "qwen2", "qwen2.5.jinja", "chatml",
      { "TEMPLATE \"\"\"{{- if .System }}<|im_start|>system\n",
        "{{- if or (eq .Role \"user\") (eq .Role \"assistant\") }}<|im_start|>{{ .Role }}\n"
        "{{ .Content }}<|im_end|>\n",
        "{{- end }}<|im_start|>assistant\n\"\"\"\n", NULL },
      { "<|endoftext|>", "<|im_start|>", "<|im_end|>", NULL },
      "SYSTEM \"\"\"You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\"\"\"\n" },
    { "llama-f32", "llama-3.1.jinja", "llama3",
      { "TEMPLATE \"\"\"{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n"
        "{{ .System }}<|eot_id|>\n",
        "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n",
        "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n\"\"\"\n", NULL },
      { "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", NULL },
      NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *name = g_strdup_printf ("ollama-src-%s", cases[i].fixture);
      g_autofree char *dir = model_with_template (cases[i].fixture, name, cases[i].jinja);
      g_autofree char *outname = g_strdup_printf ("Ollama %s", cases[i].fixture);
      g_autofree char *out = tmp_path (outname);
      const char *argv[] = { g_getenv ("LATHE_CLI"), "fuse", "--model", dir, "--export-ollama",
                             out, "--gguf-type", "q8_0", NULL };
      g_autofree char *sout = NULL, *serr = NULL;
      int status;
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                                   &sout, &serr, &status, &error));
      if (!g_spawn_check_wait_status (status, NULL))
        g_error ("lathe fuse --export-ollama failed: %s", serr);
      g_autofree char *mf_path = g_build_filename (out, "Modelfile", NULL);
      g_autofree char *gguf = g_build_filename (out, "model.gguf", NULL);
      g_autofree char *want_cmd = g_strdup_printf ("ollama create ollama-%s -f %s",
                                                   cases[i].fixture, mf_path);
      g_assert_nonnull (strstr (sout, want_cmd));
      g_assert_true (g_file_test (gguf, G_FILE_TEST_IS_REGULAR));
      g_autofree char *mf = NULL;
      g_assert_true (g_file_get_contents (mf_path, &mf, NULL, NULL));
      g_test_message ("%s:\n%s", mf_path, mf);
      g_autofree char *fam = g_strdup_printf ("# chat template family: %s\n", cases[i].family);
      g_assert_nonnull (strstr (mf, fam));
      g_assert_nonnull (strstr (mf, "\nFROM ./model.gguf\n"));
      for (int k = 0; cases[i].template_lines[k]; k++)
        g_assert_nonnull (strstr (mf, cases[i].template_lines[k]));
      int n_stop = 0;
      for (const char *p = mf; (p = strstr (p, "PARAMETER stop ")); p++)
        n_stop++;
      int k = 0;
      for (; cases[i].stops[k]; k++)
        {
          g_autofree char *line = g_strdup_printf ("PARAMETER stop \"%s\"\n", cases[i].stops[k]);
          g_assert_nonnull (strstr (mf, line));
        }
      g_assert_cmpint (n_stop, ==, k);
      g_assert_nonnull (strstr (mf, "PARAMETER temperature 0.8\n"));
      g_assert_nonnull (strstr (mf, "PARAMETER top_p 0.9\n"));
      g_assert_nonnull (strstr (mf, "PARAMETER top_k 40\n"));
      g_assert_nonnull (strstr (mf, "PARAMETER num_ctx 256\n"));
      if (cases[i].system)
        g_assert_nonnull (strstr (mf, cases[i].system));
      else
        g_assert_null (strstr (mf, "SYSTEM"));
    }
  /* the families and the fallback */
  g_assert_cmpint (lt_chat_family_detect (NULL), ==, LT_CHAT_FAMILY_PLAIN);
  g_assert_cmpint (lt_chat_family_detect ("{{ '[INST] ' + m }}"), ==, LT_CHAT_FAMILY_MISTRAL);
  g_assert_cmpint (lt_chat_family_detect ("<start_of_turn>"), ==, LT_CHAT_FAMILY_PLAIN);
  g_autofree char *nm = lt_ollama_model_name ("/x/My Model v2");
  g_assert_cmpstr (nm, ==, "my-model-v2");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/gguf/layout", test_layout);
  g_test_add_func ("/gguf/kv-types", test_kv_types);
  g_test_add_func ("/gguf/reader-rules", test_reader_rules);
  g_test_add_func ("/gguf/writer-errors", test_writer_errors);
  g_test_add_func ("/gguf/type-names", test_type_names);
  g_test_add_func ("/gguf/llama-cpp-metadata", test_llama_cpp_metadata);
  g_test_add_func ("/gguf/ollama-modelfile", test_ollama_modelfile);
  return g_test_run ();
}
