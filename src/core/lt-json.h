/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-json: typed reading of JSON files (json-glib) with errors that name the file and the key.
 *
 * Every getter reads the member @name of @obj, an object that sits at the key path @at->path
 * of the file @at->file ("" or NULL: the top level). A failure sets @at->code in LT_ERROR with
 * the message "FILE: key “PATH.NAME”: expected an integer, got a string" (or "FILE: missing
 * key “PATH.NAME”", "FILE: key “PATH.NAME”: 0 is below 1"), the key part translated.
 *
 *   lt_json_opt_*  absent or null: *out = the default (NULL for strings, arrays and objects)
 *                  and TRUE. lt_json_has tells whether the member was there.
 *   lt_json_req_*  absent or null: "missing key" and FALSE.
 *   lt_json_node_* the same checks on a value in hand (an array element, a member met while
 *                  iterating), whose key is @at->path: NULL is "missing key", a JSON null is
 *                  a wrong type ("got null").
 * On any failure *out is the default (NULL, 0, FALSE for lt_json_req_* and lt_json_node_*), so
 * a reader that tolerates a malformed member may pass a NULL @error and take the default.
 *
 * Types follow JSON: an integer is a JSON integer, or a number with no fraction (4.0, which
 * some JSON writers produce) below 2^53 in magnitude; a number is an integer or a float; a
 * boolean is true or false, never 0/1 or a string. Strings, arrays and objects are borrowed
 * from @obj.
 *
 * Writing: lt_json_to_string is the one JSON writer; every JSON file the core writes goes
 * through it (json-glib 1.6's generator writes 1e-08 as "1e-08.0", not JSON, and 0.9 as
 * 0.90000000000000002); lt-adapter's adapter_config.json is the one left on JsonGenerator.
 * Files are written with it and then atomically (temp + rename). */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lt-error.h"

G_BEGIN_DECLS

/* Where an object sits: the file it was read from, its key path in the file, and the error
 * code for a malformed member (LT_ERROR_FORMAT for model files, LT_ERROR_INVALID_ARGUMENT for
 * settings the user wrote). */
typedef struct
{
  const char *file;
  const char *path;
  int code;
} LtJsonAt;

/* An LtJsonAt for file @file, key path @path, LT_ERROR_FORMAT (a compound literal: valid for
 * the enclosing block). */
#define LT_JSON_AT(file, path) (&(const LtJsonAt) { (file), (path), LT_ERROR_FORMAT })

/* The member @name of @obj, or NULL when absent (a null member is returned as is). */
JsonNode *lt_json_member (JsonObject *obj, const char *name);
/* NULL (an absent member) or a JSON null. */
gboolean lt_json_is_null (JsonNode *node);
/* Whether @node is a value of @type (G_TYPE_STRING, G_TYPE_INT64, G_TYPE_DOUBLE or
 * G_TYPE_BOOLEAN); FALSE for NULL. */
gboolean lt_json_holds (JsonNode *node, GType type);
/* Whether @obj has @name with a value other than null. */
gboolean lt_json_has (JsonObject *obj, const char *name);
/* "a string", "an integer", "a number", "a boolean", "an object", "an array", "null"
 * (translated), for messages. */
const char *lt_json_type_name (JsonNode *node);
/* "PATH.NAME", "NAME" at the top level, or "PATH" when @name is NULL. */
char *lt_json_key (const LtJsonAt *at, const char *name);

gboolean lt_json_opt_string (const LtJsonAt *at, JsonObject *obj, const char *name,
                             const char **out, GError **error);
gboolean lt_json_req_string (const LtJsonAt *at, JsonObject *obj, const char *name,
                             const char **out, GError **error);
/* Integers in [@min, @max]. */
gboolean lt_json_opt_int (const LtJsonAt *at, JsonObject *obj, const char *name, gint64 min,
                          gint64 max, gint64 def, gint64 *out, GError **error);
gboolean lt_json_req_int (const LtJsonAt *at, JsonObject *obj, const char *name, gint64 min,
                          gint64 max, gint64 *out, GError **error);
/* The same for an int (@min and @max within int's range). */
gboolean lt_json_opt_int32 (const LtJsonAt *at, JsonObject *obj, const char *name, int min, int max,
                            int def, int *out, GError **error);
gboolean lt_json_req_int32 (const LtJsonAt *at, JsonObject *obj, const char *name, int min, int max,
                            int *out, GError **error);
gboolean lt_json_opt_double (const LtJsonAt *at, JsonObject *obj, const char *name, double def,
                             double *out, GError **error);
gboolean lt_json_req_double (const LtJsonAt *at, JsonObject *obj, const char *name, double *out,
                             GError **error);
gboolean lt_json_opt_bool (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean def,
                           gboolean *out, GError **error);
gboolean lt_json_req_bool (const LtJsonAt *at, JsonObject *obj, const char *name, gboolean *out,
                           GError **error);
gboolean lt_json_opt_array (const LtJsonAt *at, JsonObject *obj, const char *name,
                            JsonArray **out, GError **error);
gboolean lt_json_req_array (const LtJsonAt *at, JsonObject *obj, const char *name,
                            JsonArray **out, GError **error);
gboolean lt_json_opt_object (const LtJsonAt *at, JsonObject *obj, const char *name,
                             JsonObject **out, GError **error);
gboolean lt_json_req_object (const LtJsonAt *at, JsonObject *obj, const char *name,
                             JsonObject **out, GError **error);
/* @node itself (an array element, a root) must be an object; its key in messages is
 * @at->path. NULL (absent) counts as missing. */
JsonObject *lt_json_node_object (const LtJsonAt *at, JsonNode *node, GError **error);

gboolean lt_json_node_string (const LtJsonAt *at, JsonNode *node, const char **out,
                              GError **error);
gboolean lt_json_node_int (const LtJsonAt *at, JsonNode *node, gint64 min, gint64 max,
                           gint64 *out, GError **error);
gboolean lt_json_node_double (const LtJsonAt *at, JsonNode *node, double *out, GError **error);
gboolean lt_json_node_bool (const LtJsonAt *at, JsonNode *node, gboolean *out, GError **error);
/* Sets "FILE: key “PATH.NAME”: expected @expected, got (the type of @node)" and returns FALSE:
 * for the types the getters do not cover ("an array of strings", "a string or an object"). */
gboolean lt_json_wrong_type (const LtJsonAt *at, const char *name, const char *expected,
                             JsonNode *node, GError **error);

/* The shortest decimal that reads back as @v: plain where short ("20", "0.999"), else with an
 * exponent ("1e-05"). */
char *lt_json_format_double (double v);
/* JSON text of @node: members in insertion order, doubles that stay doubles (20 -> 20.0) and
 * read back exactly, non-finite ones as null, strings escaped as JSON requires and otherwise
 * left as UTF-8; @pretty: two-space indent, one member per line, arrays on one line. */
char *lt_json_to_string (JsonNode *node, gboolean pretty);

G_END_DECLS
