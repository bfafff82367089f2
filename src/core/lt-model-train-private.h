/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-model-train's private state, shared by lt-model-train.c (parameters, the step,
 * adapters on disk) and lt-model-train-qat.c (QAT: fake-quantized weights, the frozen
 * weights' fq copies, the learned grid). Not for other modules. */
#pragma once

#include <glib.h>

#include "lt-model-train.h"

#define N_LIN LT_BLOCK_LINEARS

typedef struct
{
  char *name;
  float *data;
  float *grad;
  gsize n;
  gboolean decay;
  int ndim;
  int64_t shape[2];
} Param;

/* What one block keeps for its backward: lt-model's record (pointers into the arena). */
typedef LtBlockActs Acts;

typedef struct
{
  LtAdapterSpec spec;        /* keys owned */
  gboolean attached;
  GArray *params;            /* Param */
  int first;                 /* lowest block with trainable parameters (L when none) */
  gboolean training;
  guint64 drop_seed;
  guint64 step;
  gboolean ckpt;
  gboolean qat;
  int qat_bits, qat_group;
  GArray *qat_swaps;         /* QatSwap: frozen weights replaced by their fq copies */
  /* a learned QAT grid of the frozen embedding (and the head tied to it), lt-qat-grid: its
   * parameters (V, C / group) and their gradients, ∂L/∂Ŵ (V, C) of the current micro-batch,
   * the embedding in f32, and the hash of the parameters its fq copy was made from */
  float *qe_ls, *qe_z, *qe_gls, *qe_gz, *qe_gw, *qe_orig;
  int qe_mode, qe_bits, qe_group;
  gboolean qe_ready;
  guint64 qe_key;
  LtTensor *qe_copy;         /* the swapped fq copy (in qat_swaps) or NULL */
  int chunk_cols;            /* LM-head chunk width; 0 = automatic */
  int last_n;                /* tokens of the last forward (lt_model_get_token_losses) */
  gboolean adapters_off;     /* lt_model_set_adapters_enabled (FALSE) */
  GArray *off_saved;         /* OffSaved of the switched-off adapters */

  /* full fine-tuning */
  LtTensor *embed_master;    /* (V, C) f32 */
  float *grad_embed;         /* (V, C) */
  float *grad_norms;         /* like w.f32_arena */
  gsize norms_floats;

  /* DWQ (lt_model_attach_quant_trainable): the quantized embedding's scale gradients (the
   * head's when tied, else owned) */
  float *embed_gs, *embed_gb;
  gboolean embed_grads_owned;

  /* step memory: one arena, laid out again each step (step_memory) */
  int cap;                   /* tokens the per-token arrays below hold */
  float *arena;
  gsize arena_floats;
  Acts *acts;                /* (L) per trained block without checkpointing */
  Acts shared;               /* the recompute set (checkpointing, frozen blocks), sized for
                                the largest block; its x·A pointers follow the block using it */
  float *shared_base;
  float **x_saved;           /* (L) block inputs of the trained blocks */
  float *xf, *xnf;           /* (N, C) final hidden, normed */
  float *tmp;                /* (N, 3·I + 3·C + 2·H·D + 2·KVH·D) temporaries */
  float *scratch;            /* linear-layer scratch */
  gsize scratch_floats;
  float *att_scratch;        /* attention scratch (forward and backward) */
  float *norm_scratch;       /* RMSNorm backward scratch */
  float *chunk;              /* (N, chunk) LM-head logits */
  int chunk_cols_step;       /* this step's chunk width */
  int *pos;
  float *lse_m;
  double *lse_s;
  double *lse;
  float *tgt_logit;
  float *ce_scale;
} Train;

/* A frozen weight the export will quantize, swapped for its fake-quantized copy while QAT is
 * on (lt_model_set_qat_grid with @all_weights). */
typedef struct
{
  const LtTensor **slot;     /* &lin->weight or &m->w.embed */
  const LtTensor *orig;
  LtTensor *copy;            /* owned; several slots may share one copy (tied head) */
  gboolean owner;
} QatSwap;

/* The model's training state, created on first use. */
G_GNUC_INTERNAL Train *lt_model_train_get (LtModel *m);
/* Registers a trainable parameter (d1 0: a vector of d0). */
G_GNUC_INTERNAL void lt_model_train_add_param2 (Train *t, const char *name, float *data,
                                                float *grad, int64_t d0, int64_t d1,
                                                gboolean decay);
/* Calls @fn on every linear of the trained blocks that has an adapter or a master weight. */
G_GNUC_INTERNAL void lt_model_train_foreach_linear (LtModel *m,
                                                    void (*fn) (LtLinear *, gpointer),
                                                    gpointer data);
/* A learned embedding grid's fq copy remade when its parameters changed (lt-model-train-qat). */
G_GNUC_INTERNAL void lt_model_train_qat_embed_refresh (Train *t);
