/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-model's private part, shared by lt-calibrate-model.c (the pass, GPTQ, AWQ, the
 * writer) and lt-calibrate-dynamic.c (dynamic mixed-bit). Not for other modules. */
#pragma once

#include "lt-calibrate-model.h"

G_BEGIN_DECLS

#define DYN_LOW_GROUP(o) ((o)->low_group_size > 0 ? (o)->low_group_size : (o)->group_size)
#define DYN_HIGH_GROUP(o) ((o)->high_group_size > 0 ? (o)->high_group_size : (o)->group_size)

/* The pass: the calibration tokens in chunks of whole sequences, the hidden states of the
 * current block's input and one chunk's block activations. */
typedef struct
{
  LtModel *m;
  const LtCalibTokens *data;
  const LtCalibModelOptions *o;
  LtCalibProgress progress;
  gpointer user_data;
  GCancellable *cancellable;
  int C, I, qd, kvd, L, V;
  int n_chunks;
  int *chunk_seq;            /* (n_chunks + 1) first sequence of each chunk */
  int64_t *chunk_tok;        /* (n_chunks + 1) first token */
  int max_chunk, max_len;
  int *pos;                  /* (n_tokens) */
  float *hidden;             /* (n_tokens, C) the current block's input */
  float *xn1, *q, *k, *v, *att, *x_mid, *xn2, *gate, *up, *h, *tmp, *x;
  float *att_scratch;
  float *lin_scratch;
  gsize lin_scratch_floats;
  GPtrArray *unquantized;    /* char* */
  double f0, f1;             /* progress range of the current block */
  gboolean attention_only;   /* lt_calib_pass_block: stop after the attention output */
  /* asym (GPTQ): the float model's stream beside the quantized one */
  float *hidden_f;           /* (n_tokens, C) the float model's input of the current block */
  float *xf;                 /* (max_chunk, max (C, qd, I)) one chunk's float layer input */
  const LtTensor *orig[LT_BLOCK_LINEARS]; /* the current block's stored weights */
  LtQuantTensor *swapped[LT_BLOCK_LINEARS];
} LtCalibPass;

typedef LtCalibPass Pass;

G_GNUC_INTERNAL gboolean lt_calib_try_floats (float **p, gsize n, GError **error);
/* Grows the linear scratch to what every linear of the model needs now (or @need). */
G_GNUC_INTERNAL void lt_calib_pass_scratch (Pass *P);
G_GNUC_INTERNAL void lt_calib_pass_scratch_at_least (Pass *P, gsize need);
G_GNUC_INTERNAL int lt_calib_chunk_n (const Pass *P, int c);
/* Block l over chunk c's rows x (in place), the activations left in P's buffers. */
G_GNUC_INTERNAL void lt_calib_pass_block (Pass *P, int l, int c, float *x);
/* TRUE (and LT_ERROR_CANCELLED) when the pass's cancellable is cancelled. */
G_GNUC_INTERNAL gboolean lt_calib_cancelled (Pass *P, GError **error);
/* Reports @f of the current range [f0, f1]; FALSE (CANCELLED) to stop. */
G_GNUC_INTERNAL gboolean lt_calib_pass_progress (Pass *P, double f, const char *what,
                                                 GError **error);
/* Block l over every chunk; captured inputs into stats[0..3] (xn1, att, xn2, SwiGLU; NULL
 * skips); with @write the output replaces the hidden states. */
G_GNUC_INTERNAL gboolean lt_calib_pass_capture (Pass *P, int l, LtCalibStats *const *stats,
                                                gboolean write, GError **error);
/* hidden = the embedding of the calibration tokens. */
G_GNUC_INTERNAL void lt_calib_pass_embed (Pass *P);
/* Round-to-nearest with scales rounded to @dt. */
G_GNUC_INTERNAL LtQuantTensor *lt_calib_rtn (const float *w, int64_t rows, int64_t cols,
                                             LtQuantMode mode, int bits, int group, LtDType dt,
                                             GError **error);
G_GNUC_INTERNAL void lt_calib_linear_set_quant (LtLinear *lin, LtQuantTensor *q);
/* lt_calib_linear_set_quant for good: a block linear's mapped weight pages are given back. */
G_GNUC_INTERNAL void lt_calib_pass_install (Pass *P, LtLinear *lin, LtQuantTensor *q);
G_GNUC_INTERNAL void lt_calib_linear_set_dense (LtLinear *lin, const LtTensor *w);
G_GNUC_INTERNAL LtCalibLayerReport *lt_calib_report_add (LtCalibModelReport *rep,
                                                         const char *module, int bits,
                                                         int group, int64_t n);
/* Dynamic mixed-bit (lt-calibrate-dynamic.c). */
G_GNUC_INTERNAL gboolean lt_calib_dynamic_quantize (Pass *P, LtCalibModelReport *rep,
                                                    GError **error);

G_END_DECLS
