/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-tokenizer-private.h: what the stages of lt-tokenizer share (not for other modules: their
 * interface is lt-tokenizer.h). The types of each stage (patterns, pieces, normalizers,
 * pre-tokenizers, decoders, the tokenizer itself) and the functions one file defines and
 * another calls, grouped by the file that defines them. */
#pragma once

#include <glib.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <json-glib/json-glib.h>
#include <pcre2.h>

#include "lt-error.h"
#include "lt-json.h"
#include "lt-tokenizer.h"

G_BEGIN_DECLS

#define GPT2_REGEX                                                                                 \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define WHITESPACE_REGEX "\\w+|[^\\w\\s]+"
#define CACHE_MAX_ENTRIES 65536
#define CACHE_MAX_WORD_BYTES 256

/* GPT-2's bytes_to_unicode. */
typedef struct
{
  char utf8[256][3];   /* (256, ≤2 bytes + NUL) the char of each byte */
  guint8 utf8_len[256];
  gint16 byte_of[324]; /* code point → byte, -1 if none; code points stop at U+0143 */
} ByteTable;

typedef enum
{
  SPLIT_REMOVED,
  SPLIT_ISOLATED,
  SPLIT_MERGED_WITH_PREVIOUS,
  SPLIT_MERGED_WITH_NEXT,
  SPLIT_CONTIGUOUS,
} SplitBehavior;

typedef struct
{
  pcre2_code *re; /* a Regex pattern, or NULL */
  char *literal;  /* a String pattern (may be ""), or NULL */
  gsize literal_len;
  gboolean (*char_fn) (gunichar c);
} Pattern;

typedef struct
{
  gsize start, end;
  gboolean flag; /* find: is a match; split: is removed */
} Span;

typedef struct
{
  gsize off, len;
  gsize orig; /* offset in the original input; 0 only for the very first piece */
} Piece;

typedef struct
{
  GString *buf;
  GArray *items; /* Piece */
} Pieces;

typedef enum
{
  NORM_SEQUENCE,
  NORM_PREPEND,
  NORM_REPLACE,
  NORM_UNICODE, /* NFC, NFKC, NFD, NFKD */
  NORM_LOWERCASE,
  NORM_STRIP,
  NORM_STRIP_ACCENTS,
  NORM_BYTE_LEVEL,
} NormKind;

typedef struct _Normalizer Normalizer;
struct _Normalizer
{
  NormKind kind;
  GPtrArray *children; /* Normalizer*, for Sequence */
  Pattern pattern;     /* Replace */
  char *text;          /* Prepend: the prefix; Replace: the content */
  GNormalizeMode mode; /* NORM_UNICODE */
  gboolean left, right;
};


typedef enum
{
  PRE_SEQUENCE,
  PRE_BYTE_LEVEL,
  PRE_SPLIT,
  PRE_METASPACE,
} PreKind;

typedef enum
{
  PREPEND_ALWAYS,
  PREPEND_FIRST,
  PREPEND_NEVER,
} PrependScheme;

typedef struct _PreTok PreTok;
struct _PreTok
{
  PreKind kind;
  GPtrArray *children; /* PreTok*, for Sequence */
  Pattern pattern;     /* Split (also Digits, Whitespace…) and ByteLevel's regex */
  SplitBehavior behavior;
  gboolean invert;
  gboolean add_prefix_space, use_regex; /* ByteLevel */
  char *replacement;                    /* Metaspace */
  PrependScheme scheme;
  gboolean split;
};


typedef enum
{
  DEC_SEQUENCE,
  DEC_BYTE_LEVEL,
  DEC_METASPACE,
  DEC_REPLACE,
  DEC_BYTE_FALLBACK,
  DEC_FUSE,
  DEC_STRIP,
  DEC_BPE_SUFFIX,
} DecKind;

typedef struct _Decoder Decoder;
struct _Decoder
{
  DecKind kind;
  GPtrArray *children;
  Pattern pattern; /* Replace */
  char *text;      /* Replace content; Metaspace replacement; Strip content; BPEDecoder suffix */
  PrependScheme scheme;
  gint64 start, stop;
};


typedef struct
{
  char *content;
  gsize len;
  char *match; /* what is searched: content, or its normalized form for normalized tokens */
  gsize match_len;
  int32_t id;
  gboolean single_word, lstrip, rstrip, normalized, special;
} AddedToken;

typedef struct
{
  uint64_t key; /* (left id << 32) | right id; UINT64_MAX = empty */
  uint32_t rank;
  int32_t new_id;
} MergeSlot;

typedef struct
{
  GPtrArray *bucket[256]; /* AddedToken* by the first byte of match, longest first; or NULL */
  gboolean any;
} AddedSet;

struct _LtTokenizer
{
  char *path;

  /* model: BPE */
  GHashTable *vocab;   /* char* (owned) → id */
  char **id_to_token; /* (n_ids) borrowed from vocab keys; NULL where no token */
  int32_t n_ids;
  MergeSlot *merges; /* (merge_cap) open addressing */
  gsize merge_cap;
  int32_t unk_id; /* -1 when no unk_token */
  gboolean fuse_unk, byte_fallback, ignore_merges;
  char *cont_prefix, *eow_suffix;
  int32_t byte_ids[256]; /* <0xNN> ids, -1 when absent */

  GMutex cache_lock;
  GHashTable *cache; /* word → int32_t* {n, ids…} */

  GPtrArray *added;       /* AddedToken* */
  GHashTable *added_by_id; /* id → AddedToken* */
  GHashTable *added_by_content;
  AddedSet raw_set, norm_set;

  Normalizer *normalizer;
  PreTok *pretok;
  Decoder *decoder;
  GPtrArray *templates; /* GArray of int32_t, -1 = the sequence; applied in order */

  int32_t bos_id, eos_id;
  int add_bos_token; /* -1 = absent */
  char *bos_token, *eos_token, *chat_template;
};

extern ByteTable tok_byte_table;  /* filled once by tok_byte_table_init */

static inline gsize
tok_utf8_char_len (guchar c)
{
  if (c < 0x80)
    return 1;
  if (c < 0xe0)
    return 2;
  if (c < 0xf0)
    return 3;
  return 4;
}

/* lt-tokenizer.c */
gboolean tok_fail (GError **error, int code, const char *path, const char *fmt,
                   ...) G_GNUC_PRINTF (4, 5);

/* lt-tokenizer-pretokenize.c */
gboolean tok_is_whitespace (gunichar c);
gboolean tok_is_word_char (gunichar c);
void tok_append_utf8_lossy (GString *out, const guchar *s, gsize len);
gsize tok_utf8_valid_up_to (const char *str, gsize len);
gpointer tok_byte_table_init (gpointer data);
void tok_pattern_clear (Pattern *p);
pcre2_code *tok_compile_regex (const char *pattern, const char *path, const char *key,
                               GError **error);
gboolean tok_pattern_find (const Pattern *p, const char *s, gsize len, GArray *out, GError **error);
void tok_pieces_init (Pieces *p);
void tok_pieces_reset (Pieces *p);
void tok_pieces_clear (Pieces *p);
void tok_pieces_add (Pieces *p, const char *s, gsize len, gsize orig);
void tok_pretok_free (PreTok *p);
gboolean tok_parse_prepend_scheme (JsonObject *o, PrependScheme *out, const char *path,
                                   const char *key, GError **error);
gboolean tok_parse_replacement (JsonObject *o, char **out, const char *path, const char *key,
                                GError **error);
PreTok *tok_parse_pretok (JsonNode *node, const char *path, const char *key, GError **error);
gboolean tok_pretokenize (const PreTok *p, Pieces *in, Pieces *out, GArray *scratch,
                          GError **error);

/* lt-tokenizer-normalize.c */
void tok_normalizer_free (Normalizer *n);
gboolean tok_parse_pattern (JsonObject *o, const char *name, Pattern *out, const char *path,
                            const char *key, GError **error);
Normalizer *tok_parse_normalizer (JsonNode *node, const char *path, const char *key,
                                  GError **error);
GString *tok_replace_all (const Pattern *p, const char *content, const char *s, gsize len,
                          GError **error);
GString *tok_normalize (const Normalizer *n, const char *s, gsize len, GError **error);

/* lt-bpe.c */
void bpe_merge_put (LtTokenizer *tok, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
gboolean bpe_vocab_lookup (const LtTokenizer *tok, const char *s, gsize len, int32_t *out);
void bpe_word (LtTokenizer *tok, const char *w, gsize len, GArray *ids);

/* lt-tokenizer-decode.c */
void tok_decoder_free (Decoder *d);
Decoder *tok_parse_decoder (JsonNode *node, const char *path, const char *key, GError **error);
GPtrArray *tok_new_token_list (void);
GString *tok_token_at (GPtrArray *tokens, guint i);
GPtrArray *tok_decode_chain (const Decoder *d, GPtrArray *tokens);

G_END_DECLS
