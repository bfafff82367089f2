/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Tests for lt-safetensors: writer/reader round trip for every dtype, byte-exact headers
 * (the Rust reference's own test vectors), every corruption the reference rejects, sharded
 * folders, the tinystories-656k tied-weight alias, and atomic writes. */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <sys/resource.h>

#include "src/core/lt-error.h"
#include "src/core/lt-safetensors.h"

static char *
make_tmpdir (void)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("lt-safetensors-XXXXXX", &error);

  g_assert_no_error (error);
  return dir;
}

static void
rm_rf (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  if (d == NULL)
    return;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rm_rf (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

static guint
count_files (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  guint n = 0;

  while (g_dir_read_name (d) != NULL)
    n++;
  return n;
}

/* 8-byte length + header text + data. */
static GBytes *
make_file_bytes (const char *header, const void *data, gsize data_len)
{
  gsize n = strlen (header);
  guint8 *buf = g_malloc (8 + n + data_len);

  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) ((guint64) n >> (8 * i));
  memcpy (buf + 8, header, n);
  if (data_len)
    memcpy (buf + 8 + n, data, data_len);
  return g_bytes_new_take (buf, 8 + n + data_len);
}

static LtTensor *
random_tensor (const char *name, LtDType dtype, int ndim, const int64_t *shape, GRand *rng)
{
  LtTensor *t = lt_tensor_new (name, dtype, ndim, shape);

  g_assert_nonnull (t);
  for (gsize i = 0; i < t->nbytes; i++)
    ((guint8 *) t->data)[i] = (guint8) g_rand_int (rng);
  return t;
}

/* ---- round trip ---- */

static void
test_roundtrip_all_dtypes (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "all.safetensors", NULL);
  g_autoptr (GPtrArray) tensors = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  g_autoptr (GHashTable) md = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (LtSafetensors) st = NULL;
  g_autoptr (GError) error = NULL;
  GRand *rng = g_rand_new_with_seed (7);

  g_hash_table_insert (md, "format", "pt");
  g_hash_table_insert (md, "quote\"and\\slash\n", "é\t");
  for (int d = 0; d < LT_N_DTYPES; d++)
    {
      /* shapes whose bit count is whole bytes for 4- and 6-bit dtypes too */
      int64_t shape[] = { 3, 4 };
      g_autofree char *name = g_strdup_printf ("t.%s", lt_dtype_name (d));
      g_ptr_array_add (tensors, random_tensor (name, d, 2, shape, rng));
    }
  /* a scalar, an empty tensor, and a name needing escapes */
  g_ptr_array_add (tensors, random_tensor ("scalar", LT_DTYPE_F32, 0, NULL, rng));
  g_ptr_array_add (tensors, random_tensor ("empty", LT_DTYPE_BF16, 2, (int64_t[]) { 0, 7 }, rng));
  g_ptr_array_add (tensors, random_tensor ("we\"ird\\\x01 ñame", LT_DTYPE_U8, 1,
                                           (int64_t[]) { 5 }, rng));

  g_assert_true (lt_safetensors_write (path, (const LtTensor *const *) tensors->pdata,
                                       tensors->len, md, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (count_files (dir), ==, 1); /* no temp file left */

  st = lt_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_safetensors_get_header_size (st) % 8, ==, 0);
  g_assert_cmpuint (lt_safetensors_get_n_tensors (st), ==, tensors->len);
  g_assert_cmpstr (lt_safetensors_get_metadata (st, "format"), ==, "pt");
  g_assert_cmpstr (lt_safetensors_get_metadata (st, "quote\"and\\slash\n"), ==, "é\t");
  g_assert_null (lt_safetensors_get_metadata (st, "nope"));
  for (guint i = 0; i < tensors->len; i++)
    {
      const LtTensor *a = tensors->pdata[i];
      const LtTensor *b = lt_safetensors_lookup (st, a->name);
      g_assert_nonnull (b);
      g_assert_cmpint (a->dtype, ==, b->dtype);
      g_assert_cmpint (a->ndim, ==, b->ndim);
      for (int k = 0; k < a->ndim; k++)
        g_assert_cmpint (a->shape[k], ==, b->shape[k]);
      g_assert_cmpmem (a->data, a->nbytes, b->data, b->nbytes);
      g_assert_false (b->owns_data); /* a view into the mapping */
      if (b->nbytes)
        g_assert_cmpuint ((guintptr) b->data % (guintptr) MAX (1, lt_dtype_bits (b->dtype) / 8),
                          ==, 0);
    }
  /* file order is the Rust writer's order: Dtype enum (alignment) descending, then name */
  {
    static const char *const order[] = {
      "U64", "I64", "F64", "C64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16",
      "F8_E5M2FNUZ", "F8_E4M3FNUZ", "F8_E8M0", "F8_E4M3", "F8_E5M2", "I8", "U8", "F6_E3M2",
      "F6_E2M3", "F4", "BOOL",
    };
    guint k = 0;
    for (guint i = 0; i < lt_safetensors_get_n_tensors (st); i++)
      {
        const LtTensor *t = lt_safetensors_get_tensor (st, i);
        g_autofree char *want = NULL;
        if (!g_str_has_prefix (t->name, "t."))
          continue;
        want = g_strdup_printf ("t.%s", order[k++]);
        g_assert_cmpstr (t->name, ==, want);
      }
    g_assert_cmpuint (k, ==, G_N_ELEMENTS (order));
  }
  g_assert_null (lt_safetensors_lookup (st, "missing"));
  g_rand_free (rng);
  g_clear_pointer (&st, lt_safetensors_free);
  rm_rf (dir);
}

/* ---- byte-exact headers ---- */

static GBytes *
write_and_slurp (const LtTensor *const *tensors, guint n, GHashTable *md)
{
  g_autofree char *dir = make_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "x.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  char *contents;
  gsize len;

  g_assert_true (lt_safetensors_write (path, tensors, n, md, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  rm_rf (dir);
  return g_bytes_new_take (contents, len);
}

static void
test_header_bytes (void)
{
  /* Expected bytes copied from the Rust reference's own tests (safetensors/src/tensor.rs:
   * test_serialization_forced_alignement and test_empty). */
  static const guint8 attn0[] = {
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
    121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
    91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
    115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
    32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
    160, 64
  };
  static const guint8 empty[] = { 8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32 };
  static const guint8 empty_md[] = {
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
    95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
    116, 34, 125, 125, 32, 32, 32, 32, 32
  };
  float vals[] = { 0, 1, 2, 3, 4, 5 };
  int64_t shape[] = { 1, 1, 2, 3 };
  g_autoptr (LtTensor) t = lt_tensor_new_view ("attn0", LT_DTYPE_F32, 4, shape, vals,
                                               sizeof vals);
  const LtTensor *one[] = { t };
  g_autoptr (GHashTable) md = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GBytes) b1 = write_and_slurp (one, 1, NULL);
  g_autoptr (GBytes) b2 = write_and_slurp (NULL, 0, NULL);
  g_autoptr (GBytes) b3 = NULL;

  g_assert_cmpmem (g_bytes_get_data (b1, NULL), g_bytes_get_size (b1), attn0, sizeof attn0);
  g_assert_cmpmem (g_bytes_get_data (b2, NULL), g_bytes_get_size (b2), empty, sizeof empty);
  g_hash_table_insert (md, "framework", "pt");
  b3 = write_and_slurp (NULL, 0, md);
  g_assert_cmpmem (g_bytes_get_data (b3, NULL), g_bytes_get_size (b3), empty_md,
                   sizeof empty_md);

  /* Sorting, checked by hand against FORMATS.md §1.4: dtype alignment descending (F32 before
   * BF16 before U8), then name; offsets back to back; metadata first, keys sorted. */
  {
    guint8 d_a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, d_b[4] = { 9, 10, 11, 12 }, d_c[3] = { 13, 14, 15 };
    guint8 d_z[4] = { 16, 17, 18, 19 };
    g_autoptr (LtTensor) c = lt_tensor_new_view ("c", LT_DTYPE_U8, 1, (int64_t[]) { 3 }, d_c, 3);
    g_autoptr (LtTensor) b = lt_tensor_new_view ("b", LT_DTYPE_BF16, 1, (int64_t[]) { 2 }, d_b,
                                                 4);
    g_autoptr (LtTensor) a = lt_tensor_new_view ("a", LT_DTYPE_F32, 2, (int64_t[]) { 1, 2 }, d_a,
                                                 8);
    g_autoptr (LtTensor) z = lt_tensor_new_view ("Z", LT_DTYPE_F32, 0, NULL, d_z, 4);
    const LtTensor *list[] = { c, b, a, z };
    const char *header =
      "{\"__metadata__\":{\"b\":\"2\",\"format\":\"pt\"},"
      "\"Z\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[4,12]},"
      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[12,16]},"
      "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}";
    g_autoptr (GString) expect = g_string_new (header);
    g_autoptr (GBytes) got = NULL;
    g_autoptr (GBytes) want = NULL;
    g_autoptr (GHashTable) md2 = g_hash_table_new (g_str_hash, g_str_equal);
    guint8 data[19];

    g_hash_table_insert (md2, "format", "pt");
    g_hash_table_insert (md2, "b", "2");
    while (expect->len % 8)
      g_string_append_c (expect, ' ');
    memcpy (data, d_z, 4);
    memcpy (data + 4, d_a, 8);
    memcpy (data + 12, d_b, 4);
    memcpy (data + 16, d_c, 3);
    want = make_file_bytes (expect->str, data, sizeof data);
    got = write_and_slurp (list, 4, md2);
    g_assert_cmpmem (g_bytes_get_data (got, NULL), g_bytes_get_size (got),
                     g_bytes_get_data (want, NULL), g_bytes_get_size (want));
  }
}

/* Files written by the real safetensors library (the fixtures under tests/data, produced by
 * transformers' save_pretrained on the device machine, and tinystories-656k from the shared
 * folder): reading them and writing them back gives the same bytes. */
static void
rewrite_and_compare (const char *path, const char *tmpdir, guint *n_done)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (LtSafetensors) st = lt_safetensors_open (path, &error);
  g_autofree char *out = g_build_filename (tmpdir, "rewrite.safetensors", NULL);
  g_autofree const LtTensor **ts = NULL;
  g_autofree char *a = NULL;
  g_autofree char *b = NULL;
  gsize la, lb;
  guint n;

  g_assert_no_error (error);
  n = lt_safetensors_get_n_tensors (st);
  ts = g_new (const LtTensor *, n + 1);
  for (guint i = 0; i < n; i++)
    ts[i] = lt_safetensors_get_tensor (st, i);
  g_assert_true (lt_safetensors_write (out, ts, n, lt_safetensors_get_metadata_table (st),
                                       &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &a, &la, NULL));
  g_assert_true (g_file_get_contents (out, &b, &lb, NULL));
  g_test_message ("rewrote %s (%" G_GSIZE_FORMAT " bytes)", path, la);
  g_assert_cmpmem (a, la, b, lb);
  (*n_done)++;
}

static void
rewrite_tree (const char *dir, const char *tmpdir, guint *n_done)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  if (d == NULL)
    return;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        rewrite_tree (p, tmpdir, n_done);
      else if (g_str_has_suffix (name, ".safetensors"))
        rewrite_and_compare (p, tmpdir, n_done);
    }
}

static void
test_rewrite_real_files (void)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *tiny = g_build_filename (shared ? shared : "../shared", "models",
                                            "tinystories-656k", "model.safetensors", NULL);
  g_autofree char *tmpdir = make_tmpdir ();
  guint n_done = 0;

  if (data != NULL)
    rewrite_tree (data, tmpdir, &n_done);
  if (g_file_test (tiny, G_FILE_TEST_EXISTS))
    rewrite_and_compare (tiny, tmpdir, &n_done);
  rm_rf (tmpdir);
  if (n_done == 0)
    g_test_skip ("no safetensors files from the reference library to compare with");
  else
    g_test_message ("%u files rewritten byte for byte", n_done);
}

/* ---- corrupt files ---- */

typedef struct
{
  const char *what;
  const char *header;
  gsize data_len;
  const char *must_mention; /* besides the file name; NULL: nothing more */
} BadCase;

static void
check_bad_file (const char *dir, const char *fname, GBytes *bytes, const char *must_mention,
                int code)
{
  g_autofree char *path = g_build_filename (dir, fname, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GError) error2 = NULL;
  g_autoptr (LtSafetensors) st = NULL;
  g_autoptr (LtSafetensors) st2 = NULL;

  g_assert_true (g_file_set_contents (path, g_bytes_get_data (bytes, NULL),
                                      g_bytes_get_size (bytes), NULL));
  st = lt_safetensors_open (path, &error);
  g_assert_null (st);
  g_assert_error (error, LT_ERROR, code);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, fname));
  if (must_mention)
    g_assert_nonnull (strstr (error->message, must_mention));
  /* the buffer entry point gives the same verdict */
  st2 = lt_safetensors_open_buffer (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes),
                                    "buffer-label", &error2);
  g_assert_null (st2);
  g_assert_error (error2, LT_ERROR, code);
  g_assert_nonnull (strstr (error2->message, "buffer-label"));
}

static void
test_corrupt (void)
{
  static const BadCase cases[] = {
    { "bad-json", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4, "“w”" },
    { "unterminated", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, NULL },
    { "not-object", "[1,2]", 0, NULL },
    { "entry-not-object", "{\"w\":[1]}", 0, "“w”" },
    { "unknown-dtype", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "F17" },
    { "out-of-bounds", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
      "“w”" },
    { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "“b”" },
    { "gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "“b”" },
    { "first-not-zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
      "“a”" },
    { "size-mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
      "“w”" },
    { "end-before-begin", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
      "“w”" },
    { "metadata-not-string", "{\"__metadata__\":{\"format\":1},"
      "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "format" },
    { "metadata-not-map", "{\"__metadata__\":[\"pt\"]}", 0, "__metadata__" },
    { "duplicate-tensor", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "“w”" },
    { "duplicate-field", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[1],"
      "\"data_offsets\":[0,1]}}", 1, "“w”" },
    { "duplicate-metadata-key", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "“k”" },
    { "negative-dim", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
      "“w”" },
    { "float-dim", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}", 1, "“w”" },
    { "three-offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1,
      "“w”" },
    { "missing-offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "“w”" },
    { "numel-overflow", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
      "\"data_offsets\":[0,0]}}", 0, "“w”" },
    { "bits-overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
      "\"data_offsets\":[0,0]}}", 0, "“w”" },
    { "offset-too-big", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],"
      "\"data_offsets\":[0,18446744073709551616]}}", 1, "“w”" },
    { "half-byte", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1, "“w”" },
    { "trailing-bytes", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 3,
      "“w”" },
    { "trailing-garbage", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}x", 1,
      NULL },
    { "lone-surrogate", "{\"\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
      1, NULL },
    { "empty-header", "", 0, NULL },
  };
  g_autofree char *dir = make_tmpdir ();
  guint8 zeros[16] = { 0 };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GBytes) b = make_file_bytes (cases[i].header, zeros, cases[i].data_len);
      g_autofree char *fname = g_strdup_printf ("%s.safetensors", cases[i].what);
      g_test_message ("case %s", cases[i].what);
      check_bad_file (dir, fname, b, cases[i].must_mention, LT_ERROR_FORMAT);
    }

  /* byte-level corruptions */
  {
    static const guint8 short5[] = { 1, 0, 0, 0, 0 };
    g_autoptr (GBytes) b = g_bytes_new_static (short5, sizeof short5);
    check_bad_file (dir, "short.safetensors", b, NULL, LT_ERROR_FORMAT);
  }
  {
    guint8 huge[16] = { 0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}' }; /* 100,000,000 + … */
    g_autoptr (GBytes) b = NULL;
    huge[0] = 0x01; /* 100,000,001 */
    b = g_bytes_new (huge, sizeof huge);
    check_bad_file (dir, "huge-header.safetensors", b, NULL, LT_ERROR_FORMAT);
  }
  {
    guint8 past[12] = { 200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ' };
    g_autoptr (GBytes) b = g_bytes_new (past, sizeof past);
    check_bad_file (dir, "past-end.safetensors", b, NULL, LT_ERROR_FORMAT);
  }
  {
    guint8 all_ff[16];
    g_autoptr (GBytes) b = NULL;
    memset (all_ff, 0xff, sizeof all_ff);
    b = g_bytes_new (all_ff, sizeof all_ff);
    check_bad_file (dir, "ff.safetensors", b, NULL, LT_ERROR_FORMAT);
  }
  {
    /* invalid UTF-8 inside a key */
    g_autoptr (GBytes) b = make_file_bytes ("{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[1],"
                                            "\"data_offsets\":[0,1]}}", zeros, 1);
    check_bad_file (dir, "utf8.safetensors", b, NULL, LT_ERROR_FORMAT);
  }
  {
    /* a valid file, truncated by one byte */
    g_autoptr (GBytes) good = make_file_bytes ("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                                               "\"data_offsets\":[0,8]}}", zeros, 8);
    g_autoptr (GBytes) cut = g_bytes_new_from_bytes (good, 0, g_bytes_get_size (good) - 1);
    g_autoptr (LtSafetensors) st = lt_safetensors_open_buffer (g_bytes_get_data (good, NULL),
                                                               g_bytes_get_size (good), "good",
                                                               NULL);
    g_assert_nonnull (st);
    check_bad_file (dir, "truncated.safetensors", cut, "“w”", LT_ERROR_FORMAT);
  }
  {
    /* nine dimensions: valid for the reference, not representable here */
    g_autoptr (GBytes) b = make_file_bytes ("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,"
                                            "1,1],\"data_offsets\":[0,1]}}", zeros, 1);
    check_bad_file (dir, "ninedims.safetensors", b, "“w”", LT_ERROR_UNSUPPORTED);
  }

  /* unreadable: missing file, a folder */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *missing = g_build_filename (dir, "missing.safetensors", NULL);
    g_assert_null (lt_safetensors_open (missing, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_IO);
    g_assert_nonnull (strstr (error->message, "missing.safetensors"));
    g_clear_error (&error);
    g_assert_null (lt_safetensors_open (dir, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  }
  rm_rf (dir);
}

/* What the reference accepts, we accept: leading/trailing whitespace, unknown fields, null
 * metadata (MLX), zero-size tensors, empty header object, unpadded headers, escapes. */
static void
test_lenient_valid (void)
{
  static const struct { const char *header; gsize data_len; guint n; } ok[] = {
    { " {\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}   ", 2, 1 },
    { "{\"w\":{\"extra\":{\"x\":[1,2.5e3,-0.1,true,false,null,\"s\"]},\"dtype\":\"U8\","
      "\"shape\":[2],\"data_offsets\":[0,2]}}", 2, 1 },
    { "{\"__metadata__\":null,\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
      1 },
    { "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
      "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
      "\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]}}", 2, 3 },
    { "{}", 0, 0 },
    { "{\"\\u00e9\\n\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1,
      1 },
    { "{\"w\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3]}}", 3, 1 },
  };
  guint8 data[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

  for (guint i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr (GBytes) b = make_file_bytes (ok[i].header, data, ok[i].data_len);
      g_autoptr (GError) error = NULL;
      g_autoptr (LtSafetensors) st = lt_safetensors_open_buffer (g_bytes_get_data (b, NULL),
                                                                 g_bytes_get_size (b), "ok",
                                                                 &error);
      g_assert_no_error (error);
      g_assert_cmpuint (lt_safetensors_get_n_tensors (st), ==, ok[i].n);
    }
  {
    g_autoptr (GBytes) b = make_file_bytes (ok[5].header, data, 1);
    g_autoptr (LtSafetensors) st = lt_safetensors_open_buffer (g_bytes_get_data (b, NULL),
                                                               g_bytes_get_size (b), "ok", NULL);
    g_assert_nonnull (lt_safetensors_lookup (st, "é\n😀"));
  }
}

/* MLX does not pad the header: data can start at any byte. Tensors still come out aligned. */
static void
test_unpadded_alignment (void)
{
  guint8 data[12];
  const char *header = "{\"__metadata__\":null,\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[4,12]},\"a\":{\"dtype\":\"BF16\",\"shape\":[2],"
                       "\"data_offsets\":[0,4]}}";
  g_autoptr (GBytes) b = NULL;
  g_autoptr (LtSafetensors) st = NULL;
  g_autoptr (GError) error = NULL;
  const LtTensor *ta, *tb;
  float out[2];

  for (int i = 0; i < 12; i++)
    data[i] = (guint8) (i * 7);
  /* bf16 1.0, 2.0 then f32 3.0, -4.5 */
  {
    guint16 h[2] = { 0x3f80, 0x4000 };
    float f[2] = { 3.0f, -4.5f };
    memcpy (data, h, 4);
    memcpy (data + 4, f, 8);
  }
  b = make_file_bytes (header, data, sizeof data);
  g_assert_cmpuint ((8 + strlen (header)) % 4, !=, 0); /* the data is misaligned in the file */
  st = lt_safetensors_open_buffer (g_bytes_get_data (b, NULL), g_bytes_get_size (b), "mlx",
                                   &error);
  g_assert_no_error (error);
  ta = lt_safetensors_get_tensor (st, 0);
  tb = lt_safetensors_get_tensor (st, 1);
  g_assert_cmpstr (ta->name, ==, "a");
  g_assert_cmpstr (tb->name, ==, "b");
  g_assert_cmpuint ((guintptr) ta->data % 2, ==, 0);
  g_assert_cmpuint ((guintptr) tb->data % 4, ==, 0);
  lt_tensor_read_f32 (ta, 0, 2, out);
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, 2.0f);
  lt_tensor_read_f32 (tb, 0, 2, out);
  g_assert_cmpfloat (out[0], ==, 3.0f);
  g_assert_cmpfloat (out[1], ==, -4.5f);
}

/* ---- model folders ---- */

static void
write_shard (const char *dir, const char *fname, const char *const *names, guint n,
             GPtrArray *keep)
{
  g_autofree char *path = g_build_filename (dir, fname, NULL);
  g_autoptr (GPtrArray) ts = g_ptr_array_new ();
  g_autoptr (GError) error = NULL;

  for (guint i = 0; i < n; i++)
    {
      int64_t shape[] = { 2, (int64_t) strlen (names[i]) };
      LtTensor *t = lt_tensor_new (names[i], LT_DTYPE_F32, 2, shape);
      for (int k = 0; k < lt_tensor_numel (t); k++)
        ((float *) t->data)[k] = (float) (k + 10 * (int) i) + (float) strlen (fname);
      g_ptr_array_add (ts, t);
      g_ptr_array_add (keep, t);
    }
  g_assert_true (lt_safetensors_write (path, (const LtTensor *const *) ts->pdata, ts->len, NULL,
                                       &error));
  g_assert_no_error (error);
}

static void
write_text (const char *dir, const char *fname, const char *text)
{
  g_autofree char *path = g_build_filename (dir, fname, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
}

static void
test_sharded (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func ((GDestroyNotify) lt_tensor_free);
  static const char *const s1[] = { "model.embed_tokens.weight", "model.layers.0.w" };
  static const char *const s2[] = { "lm_head.weight", "model.norm.weight" };
  const char *index =
    "{\"metadata\":{\"total_size\":0},\"weight_map\":{"
    "\"lm_head.weight\":\"model-00002-of-00002.safetensors\","
    "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
    "\"model.layers.0.w\":\"model-00001-of-00002.safetensors\","
    "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}";
  g_autoptr (GError) error = NULL;
  guint64 total = 0;

  write_shard (dir, "model-00001-of-00002.safetensors", s1, 2, keep);
  write_shard (dir, "model-00002-of-00002.safetensors", s2, 2, keep);
  write_text (dir, "model.safetensors.index.json", index);
  write_text (dir, "config.json", "{}");

  {
    g_autoptr (LtWeights) w = lt_weights_open (dir, &error);
    const char *const *names;
    g_assert_no_error (error);
    g_assert_cmpuint (lt_weights_get_n_files (w), ==, 2);
    names = lt_weights_get_names (w);
    g_assert_cmpuint (g_strv_length ((char **) names), ==, 4);
    g_assert_cmpstr (names[0], ==, "lm_head.weight");
    g_assert_cmpstr (names[3], ==, "model.norm.weight");
    for (guint i = 0; i < keep->len; i++)
      {
        const LtTensor *want = keep->pdata[i];
        const LtTensor *got = lt_weights_lookup (w, want->name);
        g_assert_nonnull (got);
        g_assert_cmpmem (got->data, got->nbytes, want->data, want->nbytes);
        total += want->nbytes;
      }
    g_assert_cmpuint (lt_weights_get_total_bytes (w), ==, total);
    g_assert_true (g_str_has_suffix (lt_weights_get_file (w, "lm_head.weight"),
                                     "model-00002-of-00002.safetensors"));
    g_assert_true (g_str_has_suffix (lt_weights_get_file (w, "model.layers.0.w"),
                                     "model-00001-of-00002.safetensors"));
    g_assert_null (lt_weights_lookup (w, "nope"));
    g_assert_null (lt_weights_get_file (w, "nope"));
  }

  /* a tensor listed in the index but absent from its shard */
  write_text (dir, "model.safetensors.index.json",
              "{\"weight_map\":{\"ghost.weight\":\"model-00001-of-00002.safetensors\","
              "\"lm_head.weight\":\"model-00002-of-00002.safetensors\"}}");
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "ghost.weight"));
  g_assert_nonnull (strstr (error->message, "model-00001-of-00002.safetensors"));
  g_clear_error (&error);

  /* a shard that does not exist */
  write_text (dir, "model.safetensors.index.json",
              "{\"weight_map\":{\"lm_head.weight\":\"model-00003-of-00003.safetensors\"}}");
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "model-00003-of-00003.safetensors"));
  g_assert_nonnull (strstr (error->message, "lm_head.weight"));
  g_clear_error (&error);

  /* a shard name escaping the folder */
  write_text (dir, "model.safetensors.index.json",
              "{\"weight_map\":{\"lm_head.weight\":\"../model.safetensors\"}}");
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_clear_error (&error);

  /* broken index */
  write_text (dir, "model.safetensors.index.json", "{\"weight_map\":[]}");
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "model.safetensors.index.json"));
  g_clear_error (&error);

  /* no index: model*.safetensors (what mlx-lm loads) */
  {
    g_autofree char *ip = g_build_filename (dir, "model.safetensors.index.json", NULL);
    g_autoptr (LtWeights) w = NULL;
    g_unlink (ip);
    w = lt_weights_open (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (lt_weights_get_n_files (w), ==, 2);
    g_assert_nonnull (lt_weights_lookup (w, "model.norm.weight"));
  }

  /* the same tensor in two files */
  {
    static const char *const dup[] = { "model.norm.weight" };
    g_autoptr (LtWeights) w = NULL;
    write_shard (dir, "model-extra.safetensors", dup, 1, keep);
    w = lt_weights_open (dir, &error);
    g_assert_null (w);
    g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, "model.norm.weight"));
    g_assert_nonnull (strstr (error->message, "model-extra.safetensors"));
    g_clear_error (&error);
  }
  rm_rf (dir);

  /* a lone weights.safetensors (mlx) */
  dir = (g_free (dir), make_tmpdir ());
  {
    static const char *const one[] = { "w" };
    g_autoptr (LtWeights) w = NULL;
    g_autofree char *file = g_build_filename (dir, "weights.safetensors", NULL);
    write_shard (dir, "weights.safetensors", one, 1, keep);
    w = lt_weights_open (dir, &error);
    g_assert_no_error (error);
    g_assert_nonnull (lt_weights_lookup (w, "w"));
    g_clear_pointer (&w, lt_weights_free);
    /* a path to the file works too */
    w = lt_weights_open (file, &error);
    g_assert_no_error (error);
    g_assert_nonnull (lt_weights_lookup (w, "w"));
    g_clear_pointer (&w, lt_weights_free);
    /* two non-model files: ambiguous */
    write_shard (dir, "adapters.safetensors", one, 1, keep);
    g_assert_null (lt_weights_open (dir, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_FORMAT);
    g_clear_error (&error);
  }
  rm_rf (dir);

  /* an empty folder, a missing one */
  dir = (g_free (dir), make_tmpdir ());
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_clear_error (&error);
  rm_rf (dir);
  g_assert_null (lt_weights_open (dir, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
}

static void
test_sharded_fixture (void)
{
  const char *data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *dir = g_build_filename (data ? data : "tests/data", "models",
                                           "llama-sharded", NULL);
  g_autofree char *index_path = g_build_filename (dir, "model.safetensors.index.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (LtWeights) w = NULL;
  g_autoptr (GError) error = NULL;
  JsonObject *map;
  g_autoptr (GList) members = NULL;

  if (!g_file_test (index_path, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("tests/data/models/llama-sharded is not there");
      return;
    }
  w = lt_weights_open (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (lt_weights_get_n_files (w), >=, 2);
  g_assert_true (json_parser_load_from_file (parser, index_path, &error));
  map = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                       "weight_map");
  members = json_object_get_members (map);
  g_assert_cmpuint (g_list_length (members), ==, g_strv_length ((char **) lt_weights_get_names (w)));
  for (GList *l = members; l; l = l->next)
    {
      const char *file = lt_weights_get_file (w, l->data);
      g_assert_nonnull (lt_weights_lookup (w, l->data));
      g_assert_true (g_str_has_suffix (file, json_object_get_string_member (map, l->data)));
    }
}

static void
test_tinystories_alias (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  g_autofree char *dir = g_build_filename (shared ? shared : "../shared", "models",
                                           "tinystories-656k", NULL);
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (LtWeights) w = NULL;
  g_autoptr (GError) error = NULL;
  const LtTensor *head, *embed;
  const char *const *names;
  guint64 params = 0;

  if (!g_file_test (file, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("tinystories-656k is not in the shared folder");
      return;
    }
  w = lt_weights_open (dir, &error);
  g_assert_no_error (error);
  head = lt_weights_lookup (w, "lm_head.weight");
  embed = lt_weights_lookup (w, "model.embed_tokens.weight");
  g_assert_nonnull (head);
  g_assert_true (embed == head);
  g_assert_cmpstr (lt_weights_get_alias (w, "model.embed_tokens.weight"), ==, "lm_head.weight");
  g_assert_null (lt_weights_get_alias (w, "format"));
  g_assert_cmpint (head->dtype, ==, LT_DTYPE_F32);
  g_assert_cmpint (head->ndim, ==, 2);
  g_assert_cmpint (head->shape[0], ==, 2048);
  g_assert_cmpint (head->shape[1], ==, 128);
  g_assert_cmpstr (lt_weights_get_file (w, "model.embed_tokens.weight"), ==, file);
  names = lt_weights_get_names (w);
  g_assert_cmpuint (g_strv_length ((char **) names), ==, 20);
  g_assert_false (g_strv_contains (names, "model.embed_tokens.weight"));
  for (guint i = 0; names[i]; i++)
    params += (guint64) lt_tensor_numel (lt_weights_lookup (w, names[i]));
  g_assert_cmpuint (params, ==, 656000); /* PROVENANCE.txt: 656,000 params */
  g_assert_cmpuint (lt_weights_get_total_bytes (w), ==, 656000 * 4);

  /* the file as a single LtSafetensors */
  {
    g_autoptr (LtSafetensors) st = lt_safetensors_open (file, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (lt_safetensors_get_metadata (st, "format"), ==, "pt");
    g_assert_cmpstr (lt_safetensors_get_metadata (st, "model.embed_tokens.weight"), ==,
                     "lm_head.weight");
    g_assert_cmpuint (lt_safetensors_get_header_size (st), ==, 2160);
  }
}

/* ---- atomic writes ---- */

static void
test_atomic (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "keep.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  gsize before_len, after_len;
  int64_t small_shape[] = { 4 }, big_shape[] = { 1 << 20 }; /* 4 MiB of F32 */
  g_autoptr (LtTensor) small = lt_tensor_new ("small", LT_DTYPE_F32, 1, small_shape);
  g_autoptr (LtTensor) big = lt_tensor_new ("big", LT_DTYPE_F32, 1, big_shape);
  const LtTensor *one_small[] = { small }, *one_big[] = { big };
  struct rlimit old, lim;
  void (*old_handler) (int);
  gboolean ok;

  ((float *) small->data)[0] = 42.0f;
  g_assert_true (lt_safetensors_write (path, one_small, 1, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &before, &before_len, NULL));

  /* 1. a bad tensor list fails before anything is written */
  big->nbytes--;
  g_assert_false (lt_safetensors_write (path, one_big, 1, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "big"));
  g_clear_error (&error);
  big->nbytes++;

  /* 2. the disk "fills up" halfway through the data: the file size limit makes write() fail
   * with EFBIG after 64 KiB */
  g_assert_cmpint (getrlimit (RLIMIT_FSIZE, &old), ==, 0);
  lim = old;
  lim.rlim_cur = 64 * 1024;
  old_handler = signal (SIGXFSZ, SIG_IGN);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &lim), ==, 0);
  ok = lt_safetensors_write (path, one_big, 1, NULL, &error);
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &old), ==, 0);
  signal (SIGXFSZ, old_handler);
  g_assert_false (ok);
  g_assert_error (error, LT_ERROR, LT_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "keep.safetensors"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  g_assert_true (g_file_get_contents (path, &after, &after_len, NULL));
  g_assert_cmpmem (before, before_len, after, after_len);
  g_assert_cmpuint (count_files (dir), ==, 1); /* the temp file was removed */

  /* 3. a folder that does not exist */
  {
    g_autofree char *bad = g_build_filename (dir, "no", "such", "x.safetensors", NULL);
    g_assert_false (lt_safetensors_write (bad, one_small, 1, NULL, &error));
    g_assert_error (error, LT_ERROR, LT_ERROR_IO);
    g_clear_error (&error);
  }

  /* and the big write succeeds without the limit, replacing the file */
  g_assert_true (lt_safetensors_write (path, one_big, 1, NULL, &error));
  g_assert_no_error (error);
  {
    g_autoptr (LtSafetensors) st = lt_safetensors_open (path, &error);
    g_assert_no_error (error);
    g_assert_nonnull (lt_safetensors_lookup (st, "big"));
    g_assert_null (lt_safetensors_lookup (st, "small"));
  }
  rm_rf (dir);
}

static void
test_write_invalid (void)
{
  g_autofree char *dir = make_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "x.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  int64_t shape[] = { 2 };
  g_autoptr (LtTensor) a = lt_tensor_new ("a", LT_DTYPE_F32, 1, shape);
  g_autoptr (LtTensor) a2 = lt_tensor_new ("a", LT_DTYPE_U8, 1, shape);
  g_autoptr (LtTensor) m = lt_tensor_new ("__metadata__", LT_DTYPE_U8, 1, shape);
  const LtTensor *dup[] = { a, a2 }, *meta[] = { m };

  g_assert_false (lt_safetensors_write (path, dup, 2, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "“a”"));
  g_clear_error (&error);
  g_assert_false (lt_safetensors_write (path, meta, 1, NULL, &error));
  g_assert_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT);
  g_assert_cmpuint (count_files (dir), ==, 0);
  rm_rf (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/safetensors/roundtrip-all-dtypes", test_roundtrip_all_dtypes);
  g_test_add_func ("/safetensors/header-bytes", test_header_bytes);
  g_test_add_func ("/safetensors/rewrite-real-files", test_rewrite_real_files);
  g_test_add_func ("/safetensors/corrupt", test_corrupt);
  g_test_add_func ("/safetensors/lenient-valid", test_lenient_valid);
  g_test_add_func ("/safetensors/unpadded-alignment", test_unpadded_alignment);
  g_test_add_func ("/safetensors/sharded", test_sharded);
  g_test_add_func ("/safetensors/sharded-fixture", test_sharded_fixture);
  g_test_add_func ("/safetensors/tinystories-alias", test_tinystories_alias);
  g_test_add_func ("/safetensors/atomic", test_atomic);
  g_test_add_func ("/safetensors/write-invalid", test_write_invalid);
  return g_test_run ();
}
