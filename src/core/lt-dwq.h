/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-dwq: distilled weight quantization (DWQ, issue 13), as MLX LM's mlx_lm/quant/dwq.py
 * defines it, written here from that description.
 *
 * The student is a model quantized with MLX affine codes (Ŵ = s·q + b per group of a row,
 * lt-quant.h); the teacher is the same model unquantized (or at 8 bits). The codes q stay
 * fixed; the scales s and biases b of every affine quantized layer below 8 bits (the block
 * linears, the embedding and the LM head; tied: one set), the biases of those layers and the
 * RMSNorm weights are trained with Adam to minimise, per token t,
 *
 *   KL_t = Σ_v p_t(v) · (log p_t(v) − log q_t(v)),  p = softmax (z_teacher / T),
 *                                                   q = softmax (z_student / T)
 *
 * averaged over the tokens of a batch (MLX LM: kl_div_loss of the logits scaled by 1/T,
 * T = 2, mean over the unmasked tokens). Gradients: ∂KL/∂z_student = (q − p) / T, then the
 * training core's backward (lt_model_forward_backward_head); for a quantized weight
 * ∂L/∂s[r, g] = Σ_{j∈g} ∂L/∂Ŵ[r, j]·q[r, j] and ∂L/∂b[r, g] = Σ_{j∈g} ∂L/∂Ŵ[r, j]
 * (lt_quant_tensor_accumulate_grad), ∂L/∂Ŵ formed a tile of rows at a time.
 *
 * Memory: the teacher and the student are each their own stored weights (the teacher's dense
 * weights stay in the mmapped file in their dtype; no f32 copy of either model); per batch the
 * teacher's final hidden states (N, C) are kept, never its logits: both LM heads run in
 * vocabulary chunks (two passes: the online log-sum-exp of each, then the KL and its
 * gradient), so (N, V) logits never exist. Plus the student's training activations
 * (lt-model-train.h; less with grad_checkpointing) and Adam's two moments per trained value.
 *
 * Differences from MLX LM: the forward uses the f32 master values of s and b (MLX rounds them
 * to the model dtype in every forward); at the end they are rounded once to each tensor's
 * stored scale dtype (lt_quant_tensor_round_scales), so the model in memory is the one the
 * MLX writer stores, and kl_after is measured after that rounding. */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "lt-model.h"
#include "lt-run.h"

G_BEGIN_DECLS

/* One calibration sequence (token ids of the student's vocabulary). */
typedef struct
{
  const int32_t *tokens;
  int length;
} LtDwqSequence;

typedef struct
{
  double learning_rate;      /* Adam (β 0.9 / 0.999, ε 1e-8, bias-corrected); 1e-6 */
  int batch_size;            /* sequences per step; 4 */
  int iters;                 /* steps; 0 = one pass over the training sequences (MLX LM),
                              * ⌈n_train / batch_size⌉; more wraps round in a new order */
  int max_seq_length;        /* 1025: a sequence is cut to this many tokens and its last
                              * token dropped (MLX LM feeds batch[:, :-1]) */
  double temperature;        /* 2.0 (MLX LM) */
  gboolean train_norms;      /* TRUE: the RMSNorm weights train too */
  gboolean grad_checkpointing; /* FALSE: keep every block's activations */
  guint64 seed;              /* the order of the training batches; 123 */
  LtLrSchedule lr_schedule;  /* constant (MLX LM), cosine or linear decay over the steps
                              * (lt_lr_schedule_at, no warm-up) */
  int n_samples;             /* 0 (default): train on @train only; N > 0: the teacher first
                              * writes N sequences (temperature 1 from BOS, at most
                              * sample_length tokens, stopping after EOS, drawn from @seed),
                              * trained on with @train: distillation text that never runs out
                              * and needs no held-out data */
  int sample_length;         /* 128 */
  gboolean init_search;      /* FALSE (default, MLX LM): train from the student's codes,
                              * scales and biases as given; TRUE: first, every trained tensor
                              * whose weight is dense in the teacher (same shape) is
                              * re-quantized from it with the group parameters of least
                              * squared weight error (lt_calib_quantize_searched without
                              * statistics: data-free), then trained */
  int valid_every;           /* 0 (default): validation only before and after; N > 0 (with
                              * validation sequences): also every N steps, and the trained
                              * values end as they were at the best validation KL (the start
                              * included), so the KL never ends worse than it started */
} LtDwqOptions;

void lt_dwq_options_init (LtDwqOptions *opts);

typedef struct
{
  double kl_before;          /* mean KL per token (temperature T) on the validation sequences */
  double kl_after;           /* the same after training (scales rounded to their dtype) */
  gboolean worse;            /* kl_after > kl_before: the caller should warn (MLX LM does) */
  double train_kl_first;     /* the first and last training batches' mean KL */
  double train_kl_last;
  int iters;                 /* steps taken */
  int best_iter;             /* valid_every: the step whose values were kept (0: the start);
                              * else iters */
  gint64 valid_tokens;       /* tokens KL was measured on */
  guint n_tensors;           /* trained tensors */
  gsize n_values;            /* trained values */
} LtDwqResult;

typedef enum
{
  LT_DWQ_PHASE_VALIDATE_BEFORE,
  LT_DWQ_PHASE_TRAIN,
  LT_DWQ_PHASE_VALIDATE_AFTER,
} LtDwqPhase;

/* Called after each validation batch (step of steps, kl: the running mean so far) and each
 * training step (kl: that batch's mean). */
typedef void (*LtDwqProgress) (LtDwqPhase phase, int step, int steps, double kl,
                               gpointer user_data);

/* Trains @student's quantization parameters in place (see above) on @train and measures KL on
 * @valid before and after (n_valid 0: on the first training batch instead). @teacher: the
 * same architecture and vocabulary, any weights lt-model loads (dense or quantized); its
 * parameters are not touched. @student must have affine quantized layers below 8 bits
 * (load-time quantization with mode affine, or an MLX quantized folder) and no trainable
 * parameters yet; afterwards it holds the DWQ state (its Train state: free it with the
 * model). @result may be NULL. Errors: INVALID_ARGUMENT (options, vocabularies differ, no
 * sequence of ≥ 2 tokens, a token outside the vocabulary), UNSUPPORTED (nothing to train),
 * NUMERIC (a non-finite gradient), NO_MEMORY, CANCELLED (@cancellable; the student is then
 * partly trained: reload it). All cores (OpenMP / OpenBLAS as lt-linear sets them). */
gboolean lt_dwq_run (LtModel *teacher, LtModel *student, const LtDwqSequence *train,
                     int n_train, const LtDwqSequence *valid, int n_valid,
                     const LtDwqOptions *opts, LtDwqProgress progress, gpointer user_data,
                     GCancellable *cancellable, LtDwqResult *result, GError **error);

/* Mean KL per token (temperature @temperature) of @student against @teacher over @seqs cut as
 * lt_dwq_run cuts them, in batches of @batch_size; *tokens (may be NULL) the tokens counted.
 * For tests and benches (lt_dwq_run measures kl_before / kl_after with it). */
gboolean lt_dwq_eval_kl (LtModel *teacher, LtModel *student, const LtDwqSequence *seqs,
                         int n_seqs, int batch_size, int max_seq_length, double temperature,
                         double *kl, gint64 *tokens, GCancellable *cancellable,
                         GError **error);

/* One batch of lt_dwq_run's step without the update: adds to the student's trainable
 * gradients (lt_model_get_param, after lt_model_attach_quant_trainable) the gradient of the
 * batch's mean KL, returned in *kl. For the gradient check. */
gboolean lt_dwq_batch_grad (LtModel *teacher, LtModel *student, const LtDwqSequence *seqs,
                            int n_seqs, int max_seq_length, double temperature, double *kl,
                            GError **error);

/* Appends @n sequences @m writes (temperature 1 from BOS, at most @max_len tokens, stopping
 * after EOS; drawn from @seed) to @seqs (GArray* of int32_t): LtDwqOptions.n_samples' text,
 * and a bench's low-noise held-out text (the NLL of a quantized model over the float model's
 * own samples, less the float model's, estimates KL(float ‖ quantized)). */
gboolean lt_dwq_teacher_samples (LtModel *m, int n, int max_len, guint64 seed, GPtrArray *seqs,
                                 GCancellable *cancellable, GError **error);

G_END_DECLS
