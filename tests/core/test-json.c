/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-json: each typed getter reads its type, refuses the others with a message that names the
 * file and the key, and tells optional (default) from required (missing key). */
#include "config.h"

#include <locale.h>
#include <math.h>
#include <string.h>

#include "lt-error.h"
#include "lt-json.h"

static const char *doc =
  "{\"s\": \"text\", \"i\": 42, \"neg\": -7, \"whole\": 4.0, \"half\": 4.5, \"big\": 1e300,"
  " \"d\": 0.25, \"huge\": 10000000000, \"b\": true, \"n\": null, \"a\": [1, 2],"
  " \"o\": {\"k\": \"v\"}}";

static JsonObject *
parse (JsonParser *parser)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (json_parser_load_from_data (parser, doc, -1, &error));
  g_assert_no_error (error);
  return json_node_get_object (json_parser_get_root (parser));
}

/* @error is LT_ERROR / @code and its message is exactly @message; clears it. */
static void
expect (GError **error, int code, const char *message)
{
  g_assert_error (*error, LT_ERROR, code);
  g_assert_cmpstr ((*error)->message, ==, message);
  g_clear_error (error);
}

static void
test_values (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o = parse (parser);
  const LtJsonAt *at = LT_JSON_AT ("/m/config.json", NULL);
  g_autoptr (GError) error = NULL;
  const char *s = NULL;
  gint64 i = 0;
  int n32 = 0;
  double d = 0;
  gboolean b = FALSE;
  JsonArray *a = NULL;
  JsonObject *sub = NULL;

  g_assert_true (lt_json_req_string (at, o, "s", &s, &error));
  g_assert_cmpstr (s, ==, "text");
  g_assert_true (lt_json_req_int (at, o, "i", G_MININT64, G_MAXINT64, &i, &error));
  g_assert_cmpint (i, ==, 42);
  g_assert_true (lt_json_req_int (at, o, "neg", -10, 0, &i, &error));
  g_assert_cmpint (i, ==, -7);
  /* a number with no fraction is an integer (some JSON writers print 4 as 4.0) */
  g_assert_true (lt_json_req_int (at, o, "whole", 0, 10, &i, &error));
  g_assert_cmpint (i, ==, 4);
  g_assert_true (lt_json_req_int32 (at, o, "neg", G_MININT, G_MAXINT, &n32, &error));
  g_assert_cmpint (n32, ==, -7);
  g_assert_true (lt_json_opt_int32 (at, o, "absent", 0, 9, 3, &n32, &error));
  g_assert_cmpint (n32, ==, 3);
  g_assert_true (lt_json_req_int (at, o, "huge", G_MININT64, G_MAXINT64, &i, &error));
  g_assert_cmpint (i, ==, G_GINT64_CONSTANT (10000000000));
  g_assert_true (lt_json_req_double (at, o, "d", &d, &error));
  g_assert_cmpfloat (d, ==, 0.25);
  /* an integer is a number */
  g_assert_true (lt_json_req_double (at, o, "i", &d, &error));
  g_assert_cmpfloat (d, ==, 42.0);
  g_assert_true (lt_json_req_bool (at, o, "b", &b, &error));
  g_assert_true (b);
  g_assert_true (lt_json_req_array (at, o, "a", &a, &error));
  g_assert_cmpuint (json_array_get_length (a), ==, 2);
  g_assert_true (lt_json_req_object (at, o, "o", &sub, &error));
  g_assert_true (lt_json_req_string (LT_JSON_AT ("/m/config.json", "o"), sub, "k", &s, &error));
  g_assert_cmpstr (s, ==, "v");
  g_assert_no_error (error);

  g_assert_true (lt_json_has (o, "s"));
  g_assert_false (lt_json_has (o, "n"));
  g_assert_false (lt_json_has (o, "absent"));
  g_assert_null (lt_json_member (o, "absent"));
  g_assert_nonnull (lt_json_member (o, "n"));
  g_assert_true (lt_json_is_null (lt_json_member (o, "n")));
  g_assert_true (lt_json_is_null (NULL));
  g_assert_true (lt_json_holds (lt_json_member (o, "i"), G_TYPE_INT64));
  g_assert_false (lt_json_holds (lt_json_member (o, "i"), G_TYPE_STRING));
  g_assert_false (lt_json_holds (NULL, G_TYPE_STRING));
}

static void
test_optional (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o = parse (parser);
  const LtJsonAt *at = LT_JSON_AT ("f.json", "");
  g_autoptr (GError) error = NULL;
  const char *s = "set";
  gint64 i = 0;
  double d = 0;
  gboolean b = FALSE;
  JsonArray *a = (JsonArray *) o;
  JsonObject *sub = o;

  /* absent and null both give the default */
  for (int k = 0; k < 2; k++)
    {
      const char *name = k == 0 ? "absent" : "n";

      g_assert_true (lt_json_opt_string (at, o, name, &s, &error));
      g_assert_null (s);
      g_assert_true (lt_json_opt_int (at, o, name, 0, 100, 17, &i, &error));
      g_assert_cmpint (i, ==, 17);
      g_assert_true (lt_json_opt_double (at, o, name, 1.5, &d, &error));
      g_assert_cmpfloat (d, ==, 1.5);
      g_assert_true (lt_json_opt_bool (at, o, name, TRUE, &b, &error));
      g_assert_true (b);
      g_assert_true (lt_json_opt_array (at, o, name, &a, &error));
      g_assert_null (a);
      g_assert_true (lt_json_opt_object (at, o, name, &sub, &error));
      g_assert_null (sub);
      g_assert_no_error (error);
    }
  /* present: the value, not the default */
  g_assert_true (lt_json_opt_int (at, o, "i", 0, 100, 17, &i, &error));
  g_assert_cmpint (i, ==, 42);
  g_assert_true (lt_json_opt_bool (at, o, "b", FALSE, &b, &error));
  g_assert_true (b);
  g_assert_no_error (error);
}

static void
test_errors (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o = parse (parser);
  const LtJsonAt *top = LT_JSON_AT ("/m/config.json", NULL);
  const LtJsonAt *nested = LT_JSON_AT ("/m/config.json", "rope_scaling");
  const LtJsonAt *user = &(const LtJsonAt) { "run.json", "lora_parameters",
                                             LT_ERROR_INVALID_ARGUMENT };
  g_autoptr (GError) error = NULL;
  const char *s;
  gint64 i;
  int n32;
  double d;
  gboolean b;
  JsonArray *a;
  JsonObject *sub;

  g_assert_false (lt_json_req_int (top, o, "s", G_MININT64, G_MAXINT64, &i, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “s”: expected an integer, got a string");
  g_assert_false (lt_json_opt_int (nested, o, "half", G_MININT64, G_MAXINT64, 0, &i, &error));
  expect (&error, LT_ERROR_FORMAT,
          "/m/config.json: key “rope_scaling.half”: expected an integer, got 4.5");
  g_assert_false (lt_json_opt_int (top, o, "big", G_MININT64, G_MAXINT64, 0, &i, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “big”: expected an integer, got 1e+300");
  g_assert_false (lt_json_req_int (top, o, "neg", 1, 100, &i, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “neg”: -7 is below 1");
  g_assert_false (lt_json_req_int (top, o, "i", 0, 8, &i, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “i”: 42 is above 8");
  /* an int holds no more than 32 bits */
  g_assert_false (lt_json_opt_int32 (top, o, "huge", G_MININT, G_MAXINT, 0, &n32, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “huge”: 10000000000 is above 2147483647");
  g_assert_false (lt_json_req_int (top, o, "n", 0, 8, &i, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “n”");
  g_assert_false (lt_json_req_string (nested, o, "absent", &s, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “rope_scaling.absent”");
  g_assert_false (lt_json_opt_string (top, o, "i", &s, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “i”: expected a string, got an integer");
  g_assert_false (lt_json_opt_double (top, o, "b", 0, &d, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “b”: expected a number, got a boolean");
  g_assert_false (lt_json_req_double (top, o, "absent", &d, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “absent”");
  g_assert_false (lt_json_opt_bool (top, o, "i", FALSE, &b, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “i”: expected a boolean, got an integer");
  g_assert_false (lt_json_req_bool (top, o, "absent", &b, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “absent”");
  g_assert_false (lt_json_opt_array (top, o, "o", &a, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “o”: expected an array, got an object");
  g_assert_false (lt_json_req_array (top, o, "n", &a, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “n”");
  g_assert_false (lt_json_opt_object (top, o, "a", &sub, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: key “a”: expected an object, got an array");
  g_assert_false (lt_json_req_object (top, o, "absent", &sub, &error));
  expect (&error, LT_ERROR_FORMAT, "/m/config.json: missing key “absent”");
  /* the error code comes from the LtJsonAt */
  g_assert_false (lt_json_req_int (user, o, "d", 1, 64, &i, &error));
  expect (&error, LT_ERROR_INVALID_ARGUMENT,
          "run.json: key “lora_parameters.d”: expected an integer, got 0.25");
  /* a node of its own (an array element) */
  g_assert_null (lt_json_node_object (LT_JSON_AT ("t.json", "added_tokens[0]"),
                                      lt_json_member (o, "s"), &error));
  expect (&error, LT_ERROR_FORMAT,
          "t.json: key “added_tokens[0]”: expected an object, got a string");
  g_assert_null (lt_json_node_object (LT_JSON_AT ("t.json", "model"), NULL, &error));
  expect (&error, LT_ERROR_FORMAT, "t.json: missing key “model”");
  g_assert_nonnull (lt_json_node_object (LT_JSON_AT ("t.json", "o"), lt_json_member (o, "o"),
                                         &error));
  g_assert_no_error (error);
}

static void
test_key (void)
{
  g_autofree char *a = lt_json_key (LT_JSON_AT ("f", NULL), "x");
  g_autofree char *b = lt_json_key (LT_JSON_AT ("f", ""), "x");
  g_autofree char *c = lt_json_key (LT_JSON_AT ("f", "model.vocab"), "x");
  g_autofree char *d = lt_json_key (LT_JSON_AT ("f", "model"), NULL);

  g_assert_cmpstr (a, ==, "x");
  g_assert_cmpstr (b, ==, "x");
  g_assert_cmpstr (c, ==, "model.vocab.x");
  g_assert_cmpstr (d, ==, "model");
}

/* The node getters: the same checks on a value in hand, keyed by @at->path; a JSON null is a
 * wrong type, an absent value is missing; on failure *out is the default. */
static void
test_node (void)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *o = parse (parser);
  const LtJsonAt at = { NULL, "lora_parameters.rank", LT_ERROR_INVALID_ARGUMENT };
  g_autoptr (GError) error = NULL;
  const char *s = "x";
  gint64 i = 5;
  double d = 5.0;
  gboolean b = TRUE;

  g_assert_true (lt_json_node_int (&at, lt_json_member (o, "whole"), 1, 8, &i, &error));
  g_assert_no_error (error);
  g_assert_cmpint (i, ==, 4);
  g_assert_false (lt_json_node_int (&at, lt_json_member (o, "i"), 1, 8, &i, &error));
  expect (&error, LT_ERROR_INVALID_ARGUMENT, "key “lora_parameters.rank”: 42 is above 8");
  g_assert_cmpint (i, ==, 0);
  g_assert_false (lt_json_node_int (&at, lt_json_member (o, "half"), 1, 8, &i, &error));
  expect (&error, LT_ERROR_INVALID_ARGUMENT,
          "key “lora_parameters.rank”: expected an integer, got 4.5");
  g_assert_false (lt_json_node_double (&at, lt_json_member (o, "n"), &d, &error));
  expect (&error, LT_ERROR_INVALID_ARGUMENT,
          "key “lora_parameters.rank”: expected a number, got null");
  g_assert_cmpfloat (d, ==, 0.0);
  g_assert_true (lt_json_node_double (&at, lt_json_member (o, "i"), &d, &error));
  g_assert_cmpfloat (d, ==, 42.0);
  g_assert_false (lt_json_node_bool (&at, lt_json_member (o, "s"), &b, &error));
  expect (&error, LT_ERROR_INVALID_ARGUMENT,
          "key “lora_parameters.rank”: expected a boolean, got a string");
  g_assert_false (b);
  g_assert_false (lt_json_node_string (LT_JSON_AT ("r.json", "x"), NULL, &s, &error));
  expect (&error, LT_ERROR_FORMAT, "r.json: missing key “x”");
  g_assert_null (s);
  g_assert_true (lt_json_node_string (&at, lt_json_member (o, "s"), &s, &error));
  g_assert_cmpstr (s, ==, "text");
  g_assert_false (lt_json_wrong_type (LT_JSON_AT ("r.json", "cfg"), "list",
                                      "an array of strings", lt_json_member (o, "o"), &error));
  expect (&error, LT_ERROR_FORMAT,
          "r.json: key “cfg.list”: expected an array of strings, got an object");
  /* a tolerant reader: the default on a wrong type */
  g_assert_false (lt_json_opt_double (LT_JSON_AT ("r.json", NULL), o, "s", NAN, &d, NULL));
  g_assert_true (isnan (d));
}

/* The writer: doubles stay doubles and read back exactly (json-glib 1.6 writes 1e-08 as
 * "1e-08.0" and 0.9 as 0.90000000000000002), non-finite doubles are null, strings are escaped,
 * members keep their order; pretty is two-space indented with arrays on one line. */
static void
test_write (void)
{
  const double values[] = { 1e-8, 0.9, 20.0, -0.0, 1e300, 0.1 + 0.2, 5e-324 };
  g_autoptr (JsonObject) o = json_object_new ();
  g_autoptr (JsonArray) a = json_array_new ();
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);
  g_autofree char *compact = NULL;
  g_autofree char *pretty = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  JsonArray *back;

  for (gsize i = 0; i < G_N_ELEMENTS (values); i++)
    json_array_add_double_element (a, values[i]);
  json_object_set_string_member (o, "z", "a \"q\" \\ \n\t\x01 é");
  json_object_set_int_member (o, "i", -42);
  json_object_set_array_member (o, "d", json_array_ref (a));
  json_object_set_double_member (o, "nan", NAN);
  json_object_set_boolean_member (o, "b", TRUE);
  json_object_set_null_member (o, "n");
  json_node_set_object (root, o);

  compact = lt_json_to_string (root, FALSE);
  g_assert_cmpstr (compact, ==,
                   "{\"z\":\"a \\\"q\\\" \\\\ \\n\\t\\u0001 é\",\"i\":-42,"
                   "\"d\":[1e-08,0.9,20.0,-0.0,1e+300,0.30000000000000004,5e-324],"
                   "\"nan\":null,\"b\":true,\"n\":null}");
  pretty = lt_json_to_string (root, TRUE);
  g_assert_true (g_str_has_prefix (pretty, "{\n  \"z\": "));
  g_assert_nonnull (strstr (pretty, ",\n  \"d\": [1e-08, 0.9, 20.0, "));
  g_assert_true (g_str_has_suffix (pretty, "\n  \"n\": null\n}"));

  /* both read back to the same doubles, bit for bit */
  g_assert_true (json_parser_load_from_data (parser, pretty, -1, &error));
  g_assert_no_error (error);
  back = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)), "d");
  g_assert_cmpuint (json_array_get_length (back), ==, G_N_ELEMENTS (values));
  for (gsize i = 0; i < G_N_ELEMENTS (values); i++)
    {
      double v = json_array_get_double_element (back, i);
      g_assert_cmpmem (&v, sizeof v, &values[i], sizeof values[i]);
    }
}

int
main (int argc, char **argv)
{
  /* the messages are checked in English */
  g_setenv ("LANGUAGE", "C", TRUE);
  setlocale (LC_ALL, "C.UTF-8");
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json/values", test_values);
  g_test_add_func ("/json/optional", test_optional);
  g_test_add_func ("/json/errors", test_errors);
  g_test_add_func ("/json/key", test_key);
  g_test_add_func ("/json/node", test_node);
  g_test_add_func ("/json/write", test_write);
  return g_test_run ();
}
