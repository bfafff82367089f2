/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-json: typed getters that name the file and the key, and the one JSON writer (see
 * lt-json.h). */
#include "config.h"

#include "lt-json.h"

#include <glib/gi18n-lib.h>
#include <math.h>
#include <string.h>

/* 2^53: the integers a double holds exactly. */
#define EXACT_LIMIT 9007199254740992.0

JsonNode *
lt_json_member (JsonObject *obj, const char *name)
{
  g_return_val_if_fail (obj != NULL && name != NULL, NULL);
  return json_object_get_member (obj, name);
}

gboolean
lt_json_is_null (JsonNode *node)
{
  return node == NULL || JSON_NODE_HOLDS_NULL (node);
}

gboolean
lt_json_has (JsonObject *obj, const char *name)
{
  return !lt_json_is_null (lt_json_member (obj, name));
}

gboolean
lt_json_holds (JsonNode *node, GType type)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == type;
}

const char *
lt_json_type_name (JsonNode *node)
{
  if (node == NULL)
    return _("null");
  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT:
      return _("an object");
    case JSON_NODE_ARRAY:
      return _("an array");
    case JSON_NODE_NULL:
      return _("null");
    case JSON_NODE_VALUE:
    default:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_STRING:
          return _("a string");
        case G_TYPE_INT64:
          return _("an integer");
        case G_TYPE_DOUBLE:
          return _("a number");
        case G_TYPE_BOOLEAN:
          return _("a boolean");
        default:
          return _("a value");
        }
    }
}

char *
lt_json_key (const LtJsonAt *at, const char *name)
{
  gboolean top = at->path == NULL || at->path[0] == '\0';

  if (name == NULL)
    return g_strdup (top ? "" : at->path);
  return top ? g_strdup (name) : g_strconcat (at->path, ".", name, NULL);
}

/* "FILE: " + @msg. */
static gboolean
fail (const LtJsonAt *at, GError **error, char *msg)
{
  if (at->file != NULL && at->file[0] != '\0')
    g_set_error (error, LT_ERROR, at->code, "%s: %s", at->file, msg);
  else
    g_set_error_literal (error, LT_ERROR, at->code, msg);
  g_free (msg);
  return FALSE;
}

static gboolean
missing (const LtJsonAt *at, const char *name, GError **error)
{
  g_autofree char *key = lt_json_key (at, name);
  return fail (at, error, g_strdup_printf (_("missing key “%s”"), key));
}

gboolean
lt_json_wrong_type (const LtJsonAt *at, const char *name, const char *expected, JsonNode *node,
                    GError **error)
{
  g_autofree char *key = lt_json_key (at, name);
  return fail (at, error, g_strdup_printf (_("key “%s”: expected %s, got %s"), key, expected,
                                           lt_json_type_name (node)));
}

/* ---- strings ---- */

/* The checks of one value @node (not NULL) at key @name of @at; a JSON null is a wrong type. */
static gboolean
string_value (const LtJsonAt *at, const char *name, JsonNode *node, const char **out,
              GError **error)
{
  if (!lt_json_holds (node, G_TYPE_STRING))
    return lt_json_wrong_type (at, name, _("a string"), node, error);
  *out = json_node_get_string (node);
  return TRUE;
}

static gboolean
get_string (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required,
            const char **out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = NULL;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  return string_value (at, name, node, out, error);
}

gboolean
lt_json_opt_string (const LtJsonAt *at, JsonObject *obj, const char *name, const char **out,
                    GError **error)
{
  return get_string (at, obj, name, FALSE, out, error);
}

gboolean
lt_json_req_string (const LtJsonAt *at, JsonObject *obj, const char *name, const char **out,
                    GError **error)
{
  return get_string (at, obj, name, TRUE, out, error);
}

/* ---- integers ---- */

static gboolean
int_value (const LtJsonAt *at, const char *name, JsonNode *node, gint64 min, gint64 max,
           gint64 *out, GError **error)
{
  gint64 v;

  if (lt_json_holds (node, G_TYPE_INT64))
    v = json_node_get_int (node);
  else if (lt_json_holds (node, G_TYPE_DOUBLE))
    {
      double d = json_node_get_double (node);

      if (!(d == floor (d) && fabs (d) < EXACT_LIMIT))
        {
          g_autofree char *key = lt_json_key (at, name);
          g_autofree char *s = lt_json_format_double (d);
          return fail (at, error, g_strdup_printf (_("key “%s”: expected an integer, got %s"),
                                                   key, s));
        }
      v = (gint64) d;
    }
  else
    return lt_json_wrong_type (at, name, _("an integer"), node, error);

  if (v < min || v > max)
    {
      /* the numbers as strings: a format macro inside _() would cut the message in xgettext */
      g_autofree char *key = lt_json_key (at, name);
      g_autofree char *got = g_strdup_printf ("%" G_GINT64_FORMAT, v);
      g_autofree char *limit = g_strdup_printf ("%" G_GINT64_FORMAT, v < min ? min : max);
      return fail (at, error, g_strdup_printf (v < min ? _("key “%s”: %s is below %s")
                                                       : _("key “%s”: %s is above %s"),
                                               key, got, limit));
    }
  *out = v;
  return TRUE;
}

static gboolean
get_int (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required, gint64 min,
         gint64 max, gint64 def, gint64 *out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = def;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  return int_value (at, name, node, min, max, out, error);
}

gboolean
lt_json_opt_int (const LtJsonAt *at, JsonObject *obj, const char *name, gint64 min, gint64 max,
                 gint64 def, gint64 *out, GError **error)
{
  return get_int (at, obj, name, FALSE, min, max, def, out, error);
}

gboolean
lt_json_req_int (const LtJsonAt *at, JsonObject *obj, const char *name, gint64 min, gint64 max,
                 gint64 *out, GError **error)
{
  return get_int (at, obj, name, TRUE, min, max, 0, out, error);
}

gboolean
lt_json_opt_int32 (const LtJsonAt *at, JsonObject *obj, const char *name, int min, int max,
                   int def, int *out, GError **error)
{
  gint64 v;

  *out = def;
  if (!get_int (at, obj, name, FALSE, min, max, def, &v, error))
    return FALSE;
  *out = (int) v;
  return TRUE;
}

gboolean
lt_json_req_int32 (const LtJsonAt *at, JsonObject *obj, const char *name, int min, int max,
                   int *out, GError **error)
{
  gint64 v;

  *out = 0;
  if (!get_int (at, obj, name, TRUE, min, max, 0, &v, error))
    return FALSE;
  *out = (int) v;
  return TRUE;
}

/* ---- numbers ---- */

static gboolean
double_value (const LtJsonAt *at, const char *name, JsonNode *node, double *out, GError **error)
{
  if (lt_json_holds (node, G_TYPE_DOUBLE))
    *out = json_node_get_double (node);
  else if (lt_json_holds (node, G_TYPE_INT64))
    *out = (double) json_node_get_int (node);
  else
    return lt_json_wrong_type (at, name, _("a number"), node, error);
  return TRUE;
}

static gboolean
get_double (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required,
            double def, double *out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = def;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  return double_value (at, name, node, out, error);
}

gboolean
lt_json_opt_double (const LtJsonAt *at, JsonObject *obj, const char *name, double def,
                    double *out, GError **error)
{
  return get_double (at, obj, name, FALSE, def, out, error);
}

gboolean
lt_json_req_double (const LtJsonAt *at, JsonObject *obj, const char *name, double *out,
                    GError **error)
{
  return get_double (at, obj, name, TRUE, 0.0, out, error);
}

/* ---- booleans ---- */

static gboolean
bool_value (const LtJsonAt *at, const char *name, JsonNode *node, gboolean *out, GError **error)
{
  if (!lt_json_holds (node, G_TYPE_BOOLEAN))
    return lt_json_wrong_type (at, name, _("a boolean"), node, error);
  *out = json_node_get_boolean (node);
  return TRUE;
}

static gboolean
get_bool (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required,
          gboolean def, gboolean *out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = def;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  return bool_value (at, name, node, out, error);
}

gboolean
lt_json_opt_bool (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean def,
                  gboolean *out, GError **error)
{
  return get_bool (at, obj, name, FALSE, def, out, error);
}

gboolean
lt_json_req_bool (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean *out,
                  GError **error)
{
  return get_bool (at, obj, name, TRUE, FALSE, out, error);
}

/* ---- arrays and objects ---- */

static gboolean
get_array (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required,
           JsonArray **out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = NULL;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (node))
    return lt_json_wrong_type (at, name, _("an array"), node, error);
  *out = json_node_get_array (node);
  return TRUE;
}

gboolean
lt_json_opt_array (const LtJsonAt *at, JsonObject *obj, const char *name, JsonArray **out,
                   GError **error)
{
  return get_array (at, obj, name, FALSE, out, error);
}

gboolean
lt_json_req_array (const LtJsonAt *at, JsonObject *obj, const char *name, JsonArray **out,
                   GError **error)
{
  return get_array (at, obj, name, TRUE, out, error);
}

static gboolean
get_object (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean required,
            JsonObject **out, GError **error)
{
  JsonNode *node = lt_json_member (obj, name);

  *out = NULL;
  if (lt_json_is_null (node))
    return required ? missing (at, name, error) : TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    return lt_json_wrong_type (at, name, _("an object"), node, error);
  *out = json_node_get_object (node);
  return TRUE;
}

gboolean
lt_json_opt_object (const LtJsonAt *at, JsonObject *obj, const char *name, JsonObject **out,
                    GError **error)
{
  return get_object (at, obj, name, FALSE, out, error);
}

gboolean
lt_json_req_object (const LtJsonAt *at, JsonObject *obj, const char *name, JsonObject **out,
                    GError **error)
{
  return get_object (at, obj, name, TRUE, out, error);
}

JsonObject *
lt_json_node_object (const LtJsonAt *at, JsonNode *node, GError **error)
{
  if (node == NULL)
    {
      missing (at, NULL, error);
      return NULL;
    }
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      lt_json_wrong_type (at, NULL, _("an object"), node, error);
      return NULL;
    }
  return json_node_get_object (node);
}

gboolean
lt_json_node_string (const LtJsonAt *at, JsonNode *node, const char **out, GError **error)
{
  *out = NULL;
  return node == NULL ? missing (at, NULL, error) : string_value (at, NULL, node, out, error);
}

gboolean
lt_json_node_int (const LtJsonAt *at, JsonNode *node, gint64 min, gint64 max, gint64 *out,
                  GError **error)
{
  *out = 0;
  return node == NULL ? missing (at, NULL, error)
                      : int_value (at, NULL, node, min, max, out, error);
}

gboolean
lt_json_node_double (const LtJsonAt *at, JsonNode *node, double *out, GError **error)
{
  *out = 0.0;
  return node == NULL ? missing (at, NULL, error) : double_value (at, NULL, node, out, error);
}

gboolean
lt_json_node_bool (const LtJsonAt *at, JsonNode *node, gboolean *out, GError **error)
{
  *out = FALSE;
  return node == NULL ? missing (at, NULL, error) : bool_value (at, NULL, node, out, error);
}

/* ---- writing ---- */

char *
lt_json_format_double (double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  /* Plain notation where it is short ("20", "0.999"), else exponent ("1e-05"). */
  if (v == 0.0 || (fabs (v) >= 1e-4 && fabs (v) < 1e15))
    for (int prec = 0; prec <= 17; prec++)
      {
        char fmt[8];

        g_snprintf (fmt, sizeof fmt, "%%.%df", prec);
        g_ascii_formatd (buf, sizeof buf, fmt, v);
        if (g_ascii_strtod (buf, NULL) == v)
          return g_strdup (buf);
      }
  for (int prec = 1; prec <= 17; prec++)
    {
      char fmt[8];

      g_snprintf (fmt, sizeof fmt, "%%.%dg", prec);
      g_ascii_formatd (buf, sizeof buf, fmt, v);
      if (g_ascii_strtod (buf, NULL) == v)
        break;
    }
  return g_strdup (buf);
}

static void
write_indent (GString *out, gboolean pretty, int depth)
{
  if (!pretty)
    return;
  g_string_append_c (out, '\n');
  for (int i = 0; i < depth; i++)
    g_string_append (out, "  ");
}

static void
write_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const unsigned char *p = (const unsigned char *) s; *p != '\0'; p++)
    switch (*p)
      {
      case '"':
        g_string_append (out, "\\\"");
        break;
      case '\\':
        g_string_append (out, "\\\\");
        break;
      case '\n':
        g_string_append (out, "\\n");
        break;
      case '\t':
        g_string_append (out, "\\t");
        break;
      case '\r':
        g_string_append (out, "\\r");
        break;
      default:
        if (*p < 0x20)
          g_string_append_printf (out, "\\u%04x", *p);
        else
          g_string_append_c (out, (char) *p);
      }
  g_string_append_c (out, '"');
}

static void
write_node (GString *out, JsonNode *node, gboolean pretty, int depth)
{
  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT:
      {
        JsonObject *obj = json_node_get_object (node);
        g_autoptr (GList) members = json_object_get_members (obj);

        g_string_append_c (out, '{');
        for (GList *l = members; l != NULL; l = l->next)
          {
            write_indent (out, pretty, depth + 1);
            write_string (out, l->data);
            g_string_append (out, pretty ? ": " : ":");
            write_node (out, json_object_get_member (obj, l->data), pretty, depth + 1);
            if (l->next != NULL)
              g_string_append_c (out, ',');
          }
        if (members != NULL)
          write_indent (out, pretty, depth);
        g_string_append_c (out, '}');
        break;
      }
    case JSON_NODE_ARRAY:
      {
        JsonArray *a = json_node_get_array (node);
        guint n = json_array_get_length (a);

        g_string_append_c (out, '[');
        for (guint i = 0; i < n; i++)
          {
            if (i > 0)
              g_string_append (out, pretty ? ", " : ",");
            write_node (out, json_array_get_element (a, i), pretty, depth + 1);
          }
        g_string_append_c (out, ']');
        break;
      }
    case JSON_NODE_NULL:
      g_string_append (out, "null");
      break;
    case JSON_NODE_VALUE:
    default:
      switch (json_node_get_value_type (node))
        {
        case G_TYPE_STRING:
          write_string (out, json_node_get_string (node));
          break;
        case G_TYPE_INT64:
          g_string_append_printf (out, "%" G_GINT64_FORMAT, json_node_get_int (node));
          break;
        case G_TYPE_BOOLEAN:
          g_string_append (out, json_node_get_boolean (node) ? "true" : "false");
          break;
        case G_TYPE_DOUBLE:
          {
            double v = json_node_get_double (node);
            g_autofree char *s = NULL;

            if (!isfinite (v))
              {
                g_string_append (out, "null");
                break;
              }
            s = lt_json_format_double (v);
            g_string_append (out, s);
            if (strpbrk (s, ".eEn") == NULL) /* keep it a double: 20 -> 20.0 */
              g_string_append (out, ".0");
            break;
          }
        default:
          g_string_append (out, "null");
        }
    }
}

char *
lt_json_to_string (JsonNode *node, gboolean pretty)
{
  GString *out = g_string_new (NULL);

  g_return_val_if_fail (node != NULL, NULL);
  write_node (out, node, pretty, 0);
  return g_string_free (out, FALSE);
}
