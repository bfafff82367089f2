/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-model's private part, shared by lt-calibrate-model.c (the pass, GPTQ, the
 * writer), lt-calibrate-awq.c (AWQ) and lt-calibrate-dynamic.c (dynamic mixed-bit). Not for
 * other modules. */
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
  float *xf;                 /* (max_chunk, max (C, qd + 2·kvd, I)) one chunk's float layer
                              * input, or its float q/k/v outputs */
  float *qraw, *kraw;        /* asym with q/k norms: (max_chunk, qd / kvd) the block
                              * forward's q/k before their norm (LtBlockActs.qraw/kraw) */
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
/* A dense linear's weight read as f32 (out, in), newly allocated; NULL + error. */
G_GNUC_INTERNAL float *lt_calib_linear_f32 (const LtLinear *lin, GError **error);
/* The input of each block linear: 0 xn1 (q/k/v), 1 attention output, 2 xn2, 3 SwiGLU. */
G_GNUC_INTERNAL extern const int lt_calib_linear_input[LT_BLOCK_LINEARS];
/* Layer-output MSE of q against w0 on the inputs of @st, Ŵ[r, c] = deq[r, c] · row_mul[r] /
 * col_div[c] (either NULL for 1): the quantized weight mapped back to the unscaled model. */
G_GNUC_INTERNAL double lt_calib_q_output_mse (const LtCalibStats *st, const float *w0,
                                              const LtQuantTensor *q, const float *row_mul,
                                              const float *col_div);
/* The same for round-to-nearest of w0 at the pass's bits (scales rounded to @dt). */
G_GNUC_INTERNAL double lt_calib_rtn_output_mse (const Pass *P, const LtCalibStats *st,
                                                const float *w0, int64_t rows, int64_t cols,
                                                LtDType dt);
/* The statistics of the LM head's input: the final-normed hidden states. */
G_GNUC_INTERNAL LtCalibStats *lt_calib_head_stats (Pass *P, GError **error);
/* AWQ (lt-calibrate-awq.c): block l, then the LM head. */
G_GNUC_INTERNAL gboolean lt_calib_awq_block (Pass *P, int l, LtCalibModelReport *rep,
                                             GError **error);
G_GNUC_INTERNAL gboolean lt_calib_awq_head (Pass *P, LtCalibModelReport *rep, GError **error);
/* Dynamic mixed-bit (lt-calibrate-dynamic.c). */
G_GNUC_INTERNAL gboolean lt_calib_dynamic_quantize (Pass *P, LtCalibModelReport *rep,
                                                    GError **error);

G_END_DECLS
