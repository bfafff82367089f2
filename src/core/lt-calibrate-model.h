/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate-model: the model-level pass of learned quantization (issue 13) over
 * lt-calibrate's layer math — GPTQ, AWQ and dynamic mixed-bit — streaming one transformer
 * block at a time, and the MLX-layout writer of the result.
 *
 * The model is loaded as stored (dense, its weights borrowed from the mapping). The pass
 * quantizes it IN PLACE: each block linear becomes an LT_LINEAR_QUANTIZED layer, an untied
 * embedding round-to-nearest at the same bits (as MLX LM does after its GPTQ/AWQ passes),
 * the LM head (a tied one is the embedding too) by the method (see below); AWQ also rewrites
 * the f32 norms it folds 1/s into. The model is then the quantized model: evaluate it, or
 * write it with lt_calib_model_write.
 *
 * Memory: the stored weights' pages are given back before the pass and after each layer
 * (lt_calib_model_release_stored): the quantized layers + one block's linears in f32 (the LM
 * head and a tied embedding: 4096-row slabs, lt_gptq_quantize_tensor) + the GPTQ attention
 * output (tokens, H·D) +
 * the calibration hidden states (tokens, hidden) f32 + one chunk of block activations
 * (chunk_tokens rows) + the Hessian statistics of one input (in² floats; 2·in² more during a
 * GPTQ factorization, shared by the linears of one input; asym: the float hidden states and
 * attention output (then its down_proj output), the float input's statistics of q/k/v's
 * input and G, in² floats each). GPTQ over more than one chunk also keeps the quantized
 * stream's SwiGLU output (tokens, intermediate) for the block's output. The float pass of a
 * tied head gives each block's pages back after it. Dynamic also keeps the float model's final
 * hidden states and the quantized ones (2 more (tokens, hidden)).
 *
 * Per block (Hessian stats = lt_calib_stats_add over each linear's input rows, captured from
 * lt_model_block_forward's LtBlockActs chunk by chunk):
 *   (refine, the default: GPTQ's groups and AWQ's final quantization use searched group
 *   parameters, lt_calib_quantize_searched, instead of min/max and MLX LM's clipping; GPTQ
 *   runs act-order with static groups. FALSE for both: the paper / MLX LM as below.)
 *   GPTQ  true sequential, one forward of the block in stages: xn1 → GPTQ q, k, v; the
 *         attention half with them, att → GPTQ o_proj; o, xn2 → GPTQ gate, up; SwiGLU (kept)
 *         → GPTQ down; the quantized block's output x_mid + down (SwiGLU) is the next block's
 *         input. The linears of one input share one factor of H. After the last block, GPTQ of
 *         the LM head over the final-normed hidden states; a tied head is the embedding too,
 *         so it gets the stronger damping tied_damp (an untied embedding: round-to-nearest).
 *         asym (the default): the float model runs beside it (its own hidden states, the
 *         stored weights swapped back in), each stage's float input X gives G = Σ xᵀx̃ and
 *         every linear is quantized towards lt_calib_asym_target's Ŵ*, the weight whose
 *         output on the quantized model's input best matches the float model's (the float
 *         block runs once, stage by stage). Its reported errors are both against the float
 *         model's output (lt_calib_asym_output_mse's quantity): the method's ‖X Wᵀ − X̃ Ŵᵀ‖²
 *         from the two streams' outputs of the linear, round-to-nearest's from ‖X Wᵀ‖² (q/k/v:
 *         the float input's statistics) and lt_calib_asym_partial_sse. A
 *         tied head / embedding is then quantized first, on the final hidden states of a float
 *         pass, so that the blocks are calibrated on (and make up for) its input error.
 *   AWQ   one capture of the block (all four inputs); scale searches in the order qkv, o,
 *         gate/up, down, each folded at once: input_layernorm /= s (q/k/v columns ·= s);
 *         v_proj rows (and bias) /= s for o_proj, only when n_kv_heads == n_heads (else o_proj
 *         keeps s = 1, as MLX LM); post_attention_layernorm /= s (gate/up); up_proj rows /= s
 *         (down). Then the clip search on v, o, gate, up, down (MLX LM skips q and k),
 *         round-to-nearest, and the quantized block's output feeds the next block. After
 *         the last block, the LM head: an untied head's scales fold into the final norm, then
 *         its clipping search; a tied head only the clipping, on H + tied_damp·mean(diag H)·I
 *         (the embedding's weight-space error, as GPTQ's tied head).
 *   Dynamic  sensitivity of each quantizable layer (every block linear, the embedding and an
 *         untied LM head) = (KL(float ‖ only that layer at low bits) − KL(float ‖ only that
 *         layer at high bits)) per million weights, the mean KL over the calibration tokens;
 *         blocks before the layer's are not re-run (their float output is kept). Cached in a
 *         JSON file as MLX LM writes it: [["model.layers.0.mlp.down_proj", 0.12], …]. Then
 *         lt_calib_allocate_bits to the target bits per weight and round-to-nearest.
 * A layer whose input size the group size does not divide stays in its stored precision
 * (listed in model->unquantized). Results are deterministic run to run (lt-calibrate's
 * threading rules). */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "lt-calibrate.h"
#include "lt-dataset.h"
#include "lt-model.h"

G_BEGIN_DECLS

typedef enum
{
  LT_CALIB_METHOD_RTN,
  LT_CALIB_METHOD_GPTQ,
  LT_CALIB_METHOD_AWQ,
  LT_CALIB_METHOD_DYNAMIC,
  LT_CALIB_METHOD_DWQ,       /* lt-dwq's lt_dwq_run (LT_ERROR_UNSUPPORTED here) */
} LtCalibMethod;

const char *lt_calib_method_name (LtCalibMethod method);
/* -1 for an unknown name. */
int lt_calib_method_from_name (const char *name);

/* Calibration / evaluation tokens: B padding-free sequences. */
typedef struct
{
  int32_t *tokens;           /* (n_tokens) */
  int *lengths;              /* (B) */
  int B;
  int64_t n_tokens;
} LtCalibTokens;

/* Examples [first, first + count) of @ds (count < 0: all from first), each as one sequence
 * (examples of a single token are skipped). INVALID_ARGUMENT when none is left. */
LtCalibTokens *lt_calib_tokens_from_dataset (const LtDataset *ds, gssize first, gssize count,
                                             GError **error);
void lt_calib_tokens_free (LtCalibTokens *t);

/* Loads calibration data in any format Lathe trains on (a JSONL file, or a dataset folder's
 * train.jsonl), tokenized with @tok (and its chat template), sequences cut to
 * @max_seq_length. An empty file is an INVALID_ARGUMENT naming it. */
LtDataset *lt_calib_dataset_load (const char *path, LtTokenizer *tok, int max_seq_length,
                                  GError **error);

typedef struct
{
  LtCalibMethod method;
  LtQuantMode mode;          /* default LT_QUANT_AFFINE */
  int bits;                  /* default 4 (dynamic: ignored, see low_bits / high_bits) */
  int group_size;            /* default 64 */
  double damp;               /* GPTQ, default 0.01 */
  int block_size;            /* GPTQ, default 128 */
  double tied_damp;          /* GPTQ / AWQ clipping of a tied LM head, default 3.0: its rows are
                              * also the embedding, whose lookup error is weight-space error; a
                              * damping of λ = tied_damp · mean (diag H) adds λ‖ΔW‖² to the
                              * head's output error (chosen on the calibration text's
                              * perplexity, TinyStories-656K) */
  int n_grid;                /* AWQ, default 20 */
  double target_bpw;         /* dynamic, default 5.0 */
  int low_bits;              /* dynamic, default 4 */
  int high_bits;             /* dynamic, default 5 */
  int low_group_size;        /* dynamic, 0 (default): group_size */
  int high_group_size;       /* dynamic, 0 (default): group_size */
  const char *sensitivities; /* dynamic: JSON cache, read when it exists, else written; NULL:
                              * computed and not kept */
  int chunk_tokens;          /* rows of one block forward, default 2048 */
  gboolean refine;           /* GPTQ / AWQ, default TRUE: each group's affine / symmetric
                              * parameters searched for the least output error (GPTQ:
                              * LtGptqOptions.mse_search; AWQ: lt_calib_quantize_searched on
                              * the scaled weight, every linear, instead of MLX LM's
                              * clipping and round-to-nearest); FALSE: the paper's min/max
                              * groups and MLX LM's clipping */
  gboolean act_order;        /* GPTQ, default TRUE: LtGptqOptions.act_order (static groups) */
  gboolean asym;             /* GPTQ / AWQ, default TRUE: each linear's target is the float
                              * model's output on the float model's input: its weight is
                              * replaced by lt_calib_asym_target's Ŵ* (on the quantized
                              * model's inputs) before GPTQ / AWQ's searches, so that it also
                              * makes up for the error of the layers quantized before it; a
                              * tied embedding is then quantized first (on a float pass's
                              * final hidden states) and the blocks see its error. Costs a
                              * float forward beside the quantized one, the float hidden
                              * states (tokens, hidden) and one in² matrix per input. FALSE:
                              * the quantized stream only (the paper, MLX LM) */
  double asym_damp;          /* asym's ridge towards W, default 0.3: λ = asym_damp ·
                              * mean (diag H) (chosen on TinyStories-656K's sampled text,
                              * bench-quant-methods) */
} LtCalibModelOptions;

void lt_calib_model_options_init (LtCalibModelOptions *opts);

typedef struct
{
  char *module;              /* "model.layers.0.mlp.down_proj" */
  int bits;                  /* 0: kept in stored precision */
  int group_size;
  int64_t n_weights;
  double out_mse;            /* layer-output MSE on its calibration inputs (lt_calib_output_mse)
                              * of the method's Ŵ; NAN when not measured (embedding, head,
                              * dynamic) */
  double rtn_mse;            /* the same for round-to-nearest at the same bits */
  double sensitivity;        /* dynamic, else NAN */
} LtCalibLayerReport;

typedef struct
{
  GPtrArray *layers;         /* LtCalibLayerReport*, in model order */
  double bpw;                /* bits + 32/group averaged over the quantized layers' weights */
  gboolean sensitivities_read; /* dynamic: taken from the cache file */
  double seconds;
} LtCalibModelReport;

void lt_calib_model_report_free (LtCalibModelReport *report);

/* Quantizes @model (loaded as stored, not quantized) in place with @opts over @data.
 * @report may be NULL. Errors: INVALID_ARGUMENT (options, an already quantized model, data),
 * UNSUPPORTED (dwq), NUMERIC, IO/FORMAT (sensitivities file), CANCELLED (@cancellable or
 * @progress returning FALSE). On failure the model is left part quantized: free it. */
gboolean lt_calib_model_quantize (LtModel *model, const LtCalibTokens *data,
                                  const LtCalibModelOptions *opts, LtCalibModelReport **report,
                                  LtCalibProgress progress, gpointer user_data,
                                  GCancellable *cancellable, GError **error);

/* Gives the mapped pages of every stored weight of @model (block linears, embedding, LM head)
 * back to the kernel (MADV_PAGEOUT; they are read again when touched). Loading checks every
 * value, so a loaded model has its whole stored size resident; lt_calib_model_quantize calls
 * this first and then reads each weight once more, one layer (or slab of rows) at a time,
 * giving its pages back once the layer is quantized: the pass's peak is the quantized layers
 * + one layer in f32 + the activations, not the stored model on top. */
void lt_calib_model_release_stored (LtModel *model);

/* Writes @model (after lt_calib_model_quantize, its folder @src_dir) in the MLX layout into
 * the empty folder @dir: quantized layers as U32 weight + scales + biases in the stored
 * float dtype, the rest (norms as the pass left them) in it too; config.json's
 * "quantization" (and "quantization_config") holds the model's bits / group and a
 * {"group_size", "bits", "mode"} entry for every layer that differs, false for a layer kept
 * in float; the tokenizer files. Adds the bytes written to *@written (may be NULL). */
gboolean lt_calib_model_write (LtModel *model, const char *src_dir, const char *dir,
                               guint64 *written, GError **error);

/* Perplexity exp (Σ NLL / predicted tokens) of @model over @data, in batches of about
 * @chunk_tokens tokens (0: 2048). */
gboolean lt_calib_model_perplexity (LtModel *model, const LtCalibTokens *data, int chunk_tokens,
                                    double *ppl, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtCalibTokens, lt_calib_tokens_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtCalibModelReport, lt_calib_model_report_free)

G_END_DECLS
