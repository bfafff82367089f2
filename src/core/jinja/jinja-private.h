/* SPDX-License-Identifier: GPL-3.0-or-later */
/* jinja-private.h: what the stages of the chat-template engine share (not installed, not for
 * other modules: the one interface is lt-chat-template.h). Types of each stage (values, AST,
 * tokens, lexer/parser/render state, call arguments) and the functions one file defines and
 * another calls, grouped by the file that defines them. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "lt-chat-template.h"
#include "lt-error.h"

G_BEGIN_DECLS

#define MAX_DEPTH 200                 /* nesting of blocks and expressions */
#define MAX_OUTPUT ((gsize) 1 << 28)  /* largest rendered text or string value, bytes */
#define MAX_ITEMS 10000000            /* largest list a template may build */
#define MAX_VALUE_DEPTH 500           /* deepest nesting printed, compared or serialized */
typedef enum
{
  V_UNDEF,  /* jinja2 Undefined: prints "", iterates empty, most operations fail */
  V_NONE,
  V_BOOL,
  V_INT,
  V_FLOAT,
  V_STR,    /* UTF-8, NUL-terminated */
  V_LIST,   /* also tuples (is_tuple) */
  V_DICT,   /* string keys, insertion order */
  V_NS,     /* namespace(): a mutable dict reached by attribute */
  V_FUNC,   /* a global function */
  V_METHOD, /* a bound method of a str or dict */
} VKind;

typedef struct _Value Value;

typedef struct
{
  GPtrArray *keys;  /* char*, owned, insertion order */
  GHashTable *map;  /* key (borrowed from keys) -> Value* (owned) */
} Dict;

struct _Value
{
  int ref;            /* < 0: immortal (shared constants), never counted */
  VKind kind;
  gboolean is_tuple;  /* V_LIST only */
  union
  {
    gboolean b;
    gint64 i;
    double f;
    char *s;          /* V_STR; V_UNDEF: what it stands for, as a message, or NULL */
    GPtrArray *list;  /* Value* */
    Dict dict;
    int func;         /* V_FUNC: G_* */
    struct
    {
      Value *self;
      int id;         /* M_* */
    } m;
  };
};
typedef enum
{
  F_ABS, F_CAPITALIZE, F_COUNT, F_DEFAULT, F_FIRST, F_FLOAT, F_INDENT, F_INT, F_ITEMS, F_JOIN,
  F_LAST, F_LIST, F_LOWER, F_MAP, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_SAFE,
  F_SELECT, F_SELECTATTR, F_STRING, F_TITLE, F_TOJSON, F_TRIM, F_UPPER,
} FilterId;
typedef enum
{
  TS_DEFINED, TS_UNDEFINED, TS_NONE, TS_BOOLEAN, TS_TRUE, TS_FALSE, TS_INTEGER, TS_FLOAT, TS_NUMBER,
  TS_STRING, TS_MAPPING, TS_ITERABLE, TS_SEQUENCE, TS_CALLABLE, TS_ODD, TS_EVEN, TS_DIVISIBLEBY,
  TS_EQ,
  TS_NE, TS_LT, TS_LE, TS_GT, TS_GE, TS_IN, TS_SAMEAS, TS_LOWER, TS_UPPER,
} TestId;
typedef enum
{
  G_RAISE_EXCEPTION, G_STRFTIME_NOW, G_NAMESPACE, G_RANGE, G_DICT,
} GlobalId;
/* Methods: str ones first, then dict ones (M_ITEMS onwards). */
typedef enum
{
  M_STRIP, M_LSTRIP, M_RSTRIP, M_STARTSWITH, M_ENDSWITH, M_SPLIT, M_REPLACE, M_UPPER, M_LOWER,
  M_TITLE, M_CAPITALIZE, M_JOIN,
  M_ITEMS, M_KEYS, M_VALUES, M_GET,
} MethodId;
typedef enum
{
  /* statements */
  N_BODY,      /* list: statements */
  N_TEXT,      /* name: the text */
  N_OUTPUT,    /* a: expression */
  N_IF,        /* a: condition, b: body, c: else body (an elif is an N_IF inside it) or NULL */
  N_FOR,       /* names: targets (flag: unpack), a: iterable, b: filter or NULL, c: body,
                * d: else body or NULL */
  N_SET,       /* names: targets (flag: unpack), a: value */
  N_SET_ATTR,  /* names[0]: namespace, name: attribute, a: value */
  N_SET_BLOCK, /* names[0]: target, a: body */
  N_BREAK,
  N_CONTINUE,
  /* expressions */
  E_CONST,     /* value */
  E_NAME,      /* name */
  E_LIST,      /* list: items; flag: tuple */
  E_DICT,      /* list: keys, list2: values */
  E_ATTR,      /* a.name */
  E_ITEM,      /* a[b] */
  E_SLICE,     /* a[b:c:d], any of b, c, d may be NULL */
  E_CALL,      /* a(list..., names=list2...); op: GlobalId or MethodId */
  E_FILTER,    /* a|name(list..., names=list2...); op: FilterId */
  E_TEST,      /* a is [not] name(list...); op: TestId, flag: negated */
  E_NOT,       /* not a */
  E_NEG,       /* -a */
  E_POS,       /* +a */
  E_BIN,       /* a op b */
  E_CMP,       /* list[0] ops[0] list[1] ops[1] list[2] ... */
  E_COND,      /* b if a else c */
} NodeType;

enum
{
  OP_FLOORDIV = 256,
  OP_POW,
  OP_EQ,
  OP_NE,
  OP_LE,
  OP_GE,
  OP_AND,
  OP_OR,
  OP_IN,
  OP_NOTIN,
};

typedef struct _Node Node;
struct _Node
{
  NodeType type;
  int pos;            /* byte offset in the source */
  int op;
  gboolean flag;
  char *name;
  Value *value;
  Node *a, *b, *c, *d;
  GPtrArray *list;    /* Node* (borrowed: every node is owned by the template) */
  GPtrArray *list2;   /* Node* */
  GPtrArray *names;   /* char*, owned */
  GArray *ops;        /* int */
};

struct _LtChatTemplate
{
  char *src;           /* the source with newlines normalized */
  GArray *line_starts; /* int: offset of each line */
  GPtrArray *nodes;    /* every Node, owned */
  Node *root;
};
typedef enum
{
  T_EOF,
  T_TEXT,
  T_VAR_BEGIN,
  T_VAR_END,
  T_BLOCK_BEGIN,
  T_BLOCK_END,
  T_NAME,
  T_STRING,
  T_INT,
  T_FLOAT,
  T_OP,
} TokType;

typedef struct
{
  TokType type;
  int op;       /* T_OP: a character or OP_* */
  int pos;
  char *str;    /* T_TEXT, T_NAME, T_STRING */
  gint64 i;
  double f;
} Token;
typedef struct
{
  LtChatTemplate *t;
  const char *src;
  gsize n;
  GArray *toks;
  GError **error;
} Lexer;

typedef struct _Frame Frame;
struct _Frame
{
  GHashTable *vars;  /* name -> Value* */
  Frame *parent;
};

typedef struct
{
  LtChatTemplate *t;
  GString *out;
  Frame *frame;
  GHashTable *ctx;   /* the render's variables: name -> Value* */
  GError **error;
} Render;

typedef enum
{
  EXEC_OK,
  EXEC_ERR,
  EXEC_BREAK,
  EXEC_CONTINUE,
} Exec;
typedef struct
{
  GPtrArray *pos;    /* Value* */
  GPtrArray *names;  /* const char* (borrowed from the node) */
  GPtrArray *kw;     /* Value* */
} Args;

typedef struct
{
  LtChatTemplate *t;
  Token *toks;
  guint n;
  guint i;
  GError **error;
  int loop_depth;
  int depth;
} Parser;


/* json.dumps options (tojson) */
typedef struct
{
  gboolean ensure_ascii;
  int indent;            /* < 0: None */
  const char *item_sep;
  const char *key_sep;
  gboolean sort_keys;
} JsonOpts;

extern const char *const global_names[G_DICT + 1];  /* indexed by GlobalId */
extern const char *const method_names[M_GET + 1];  /* indexed by MethodId */

/* jinja-value.c */
Value *v_ref (Value *v);
Value *v_new (VKind kind);
void v_unref (Value *v);
void v_unref_cb (gpointer p);
Value *v_none (void);
Value *v_bool (gboolean b);
Value *v_int (gint64 i);
Value *v_float (double f);
Value *v_str_take (char *s);
Value *v_str (const char *s);
Value *v_str_len (const char *s, gsize len);
Value *v_undef (char *why);
Value *v_list_new (void);
void v_list_append (Value *list, Value *item);
Value *v_dict_new (VKind kind);
void v_dict_set (Value *dict, const char *key, Value *item);
Value *v_dict_get (Value *dict, const char *key);
gboolean v_is_number (const Value *v);
gboolean v_is_intlike (const Value *v);
gint64 v_as_int (const Value *v);
double v_as_float (const Value *v);
const char *v_type_name (const Value *v);
Value *v_from_json (JsonNode *node, int depth);
gboolean py_isspace (gunichar c);
char *py_strip (const char *s, const char *chars, gboolean left, gboolean right);
void jinja_append_str (GString *out, Value *v);
char *v_to_str (Value *v);
const char *jinja_json_append (GString *out, Value *v, const JsonOpts *o, int level);
void jinja_const_free (Value *v);

/* lt-chat-template.c */
void jinja_pos_to_line_col (LtChatTemplate *t, int pos, int *line, int *col);
void jinja_set_error (LtChatTemplate *t, GError **error, int code, int pos, const char *fmt,
                      ...) G_GNUC_PRINTF (5, 6);

/* jinja-lexer.c */
gboolean jinja_lex (Lexer *L);

/* jinja-parser.c */
Node *jinja_parse_body (Parser *P, const char *const *end_names, int *matched);

/* jinja-ops.c */
gboolean py_truthy (Value *v);
gboolean py_eq (Value *a, Value *b);
gboolean py_cmp (Value *a, Value *b, int *result);
gint64 py_len (Value *v);
GPtrArray *py_iter (Render *R, Node *n, Value *v);
Value *jinja_list_from_array (GPtrArray *items, gboolean is_tuple);
gboolean py_contains (Render *R, Node *n, Value *container, Value *item, gboolean *result);
Value *jinja_get_attr (Render *R, Node *n, Value *obj, const char *name);
Value *jinja_get_item (Render *R, Node *n, Value *obj, Value *key);
Value *jinja_slice (Render *R, Node *n, Value *obj, Value *vstart, Value *vstop, Value *vstep);
Value *jinja_check_str_size (Render *R, Node *n, Value *v);
Value *jinja_arith (Render *R, Node *n, int op, Value *a, Value *b);

/* jinja-builtins.c */
int jinja_find_filter (const char *name);
int jinja_find_test (const char *name);
int jinja_find_name (const char *const *names, guint n, const char *name);
void jinja_args_clear (Args *a);
gboolean jinja_eval_args (Render *R, Node *n, Args *a);
gboolean jinja_apply_test (Render *R, Node *n, int id, const char *name, Value *v, GPtrArray *args,
                           gboolean *result);
Value *jinja_apply_filter (Render *R, Node *n, int id, const char *name, Value *v, Args *a);
Value *jinja_call_method (Render *R, Node *n, Value *self, MethodId id, Args *a);
Value *jinja_call_global (Render *R, Node *n, GlobalId id, Args *a);

/* jinja-eval.c */
Value *jinja_rfail (Render *R, Node *n, int code, const char *fmt, ...) G_GNUC_PRINTF (4, 5);
Value *jinja_fail_undefined (Render *R, Node *n, Value *v);
GHashTable *jinja_vars_new (void);
Value *jinja_eval (Render *R, Node *n);
Exec jinja_exec_body (Render *R, Node *body);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Value, v_unref)

G_END_DECLS
