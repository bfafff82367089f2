/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-calibrate: the layer math of learned quantization (issue 13): Hessian statistics of a
 * linear layer's input, GPTQ, the AWQ scale and clipping searches, and the mixed-bit
 * allocation of dynamic quantization.
 *
 * Legend:  n   calibration rows (tokens) of a linear layer's input X (n, in)
 *          in  input features = columns of W (rows = out, cols = in, row-major, lt-quant.h)
 *          g   group size (32, 64, 128), groups run along a row as in lt-quant.h
 *
 * Statistics. One LtCalibStats per distinct linear input (q/k/v share one, gate/up share
 * one): H (in, in) = 2/N · Σ xᵀx over all N rows seen so far (the GPTQ Hessian; streaming:
 * each call rescales the old H by N_old/N), and Σ|x| per input channel (AWQ's mean |x|).
 * diag(H)/2 is the per-channel mean square activation (llama.cpp's imatrix) for GGUF. Every
 * output error below is computed from H, never from X: for Ŵ = W − Δ,
 *
 *   out_mse (W, Ŵ) = ‖X Δᵀ‖² / (N · rows) = tr (Δ H Δᵀ) / (2 · rows)
 *
 * the mean squared error per element of the layer output on the calibration rows.
 *
 * GPTQ (Frantar et al. 2022, "GPTQ", Algorithm 1, as AutoGPTQ lays it out): dead columns
 * (H_ii = 0) get H_ii = 1 and W[:, i] = 0; λ = damp · mean (diag H) is added to the
 * diagonal; U = the upper Cholesky factor of H⁻¹ (H = L Lᵀ, H⁻¹ = L⁻ᵀ L⁻¹, then
 * Cholesky again); columns are quantized in order, in blocks of block_size columns: column j
 * is rounded with its group's parameters, e = (w_j − ŵ_j) / U_jj, the block's later columns
 * get w_k −= e · U_jk, and once a block is done the rest of the matrix gets the lazy batch
 * update W[:, after] −= E · U[block, after]. A group's parameters (lt-quant's rule for the
 * mode: affine min/max, symmetric absmax, …) are computed from the CURRENT weights of its g
 * columns when the group starts (static groups off, act order off). block_size is rounded
 * up to a multiple of g so that a group never straddles two blocks: every column of a group
 * has received every earlier column's error when its parameters are computed, and the result
 * does not depend on block_size except through float rounding. The codes, scales and biases
 * are stored in an ordinary LtQuantTensor (symmetric, affine, nf4, mxfp4, ternary, g 32/64/128),
 * so the result is written (lt_quant_tensor_to_mlx) and loaded like any lt-quant tensor and
 * dequantizes to exactly the Ŵ whose errors GPTQ propagated.
 * Cost: in³ for the factorizations plus rows·in² for the updates; memory 2·in² floats plus
 * a copy of one slab of W: the rows are independent once U is known, so they run in slabs of
 * 4096 (lt_gptq_quantize_tensor reads a stored weight that way, never whole in f32).
 *
 * AWQ (Lin et al. 2023, as AutoAWQ / MLX LM's awq.py): for a group of linears sharing one
 * input, s_c = max (mean|x_c|^α, 1e-4), normalised by sqrt (max s · min s), α = i / n_grid for
 * i = 0 … n_grid−1; the α minimising Σ_layers ‖X Wᵀ − (X/s) Q(W diag s)ᵀ‖² wins (the first on
 * ties; α = 0 is plain round-to-nearest, so the search never does worse than RTN on this
 * objective). The caller multiplies W by diag(s) and folds 1/s into what produces X. Then,
 * per layer, the clipping search: for every (row, group) the clip p·max|w_g| with
 * p = 1 − i/n_grid, i = 0 … ⌊max_shrink·n_grid⌋−1, minimising the group's share of the output
 * error δ_gᵀ H'_gg δ_g (H' = the Hessian of X/s; cross-group terms ignored, as AutoAWQ).
 * Deterministic: same input → same bits (see Threads).
 *
 * SIMD: the searched group parameters' inner loops have AVX2/FMA versions chosen at run time
 * (lt-calibrate-search.c); on a CPU without them the scalar loops sum in another order and
 * may pick another candidate on a near tie. GPTQ's column update gives the same bits either
 * way.
 *
 * Threads (lt-threads.h): products run in fixed blocks of rows, taken by OpenMP threads (each
 * a single-threaded sgemm) in the one-pool mode, or in turn with OpenBLAS threading each in
 * the two-pool mode. Within one mode the results are the same bits run after run and for any
 * OpenMP thread count; between the modes OpenBLAS's own threading changes the last bits of
 * the sums (2e-9 of max |H| on the fixture; GPTQ codes and the AWQ choice the same).
 *
 * Dynamic (mixed-bit): bits per weight of an MLX quantized layer of b bits and group g is
 * b + 32/g (one 16-bit scale and one 16-bit bias per group, as MLX LM's
 * compute_bits_per_weight counts them for bf16/f16 models). The allocator gives the high width
 * to layers in order of decreasing sensitivity while the total stays at or below the target.
 *
 * ---- Design: the model-level pass (to be wired by the lead; not in this module yet) ----
 * Streaming, one transformer block at a time, never the whole model in f32:
 *   1. Embed the calibration batch: hidden (n_tok, hidden) f32 — the only activation kept
 *      across blocks (plus, for GPTQ/AWQ, the unquantized block's output as the next input).
 *   2. For block b: load (dequantize) only block b's weights in f32. Run its forward over the
 *      calibration hidden states with a capture hook on each linear's input: the hook calls
 *      lt_calib_stats_add() on the stats of that input (attn-norm output → q/k/v, attention
 *      output → o_proj, post-attn-norm output → gate/up, SwiGLU output → down_proj), in chunks
 *      of rows, so X is never stored whole. Needs from lt-model: a per-block forward
 *      (lt_model_block_forward (model, b, hidden, n_tok, hook, user_data)) and the hook type
 *      (linear index + input rows).
 *   3. AWQ: per shared input, lt_awq_search_scales over the linears fed by it; fold 1/s into
 *      the producer — input_layernorm.weight /= s (q/k/v), post_attention_layernorm.weight
 *      /= s (gate/up), v_proj rows /= s for o_proj (only when n_kv_heads == n_heads, or with the
 *      GQA row repetition), up_proj rows /= s for down_proj — and scale the consumers' columns by
 *      s; then lt_awq_search_clip per linear (MLX LM skips q_proj and k_proj), and quantize.
 *      Re-run the block forward with the quantized block to get the next block's input (MLX LM
 *      feeds the unquantized block's output instead; either is one flag).
 *   4. GPTQ: after the capture, lt_gptq_quantize each linear with its stats, in the order
 *      q,k,v,o,gate,up,down (optionally re-capturing o/down inputs after quantizing q/k/v,
 *      "true sequential"). Free the block's f32 weights and the stats before block b+1.
 *   5. Dynamic: per-layer sensitivities (the model-level part: KL of the output with only that
 *      layer quantized low vs high, cached in a JSON file) → lt_calib_allocate_bits → MLX
 *      config.json "quantization": {"group_size": G, "bits": B, "model.layers.N.mlp.down_proj":
 *      {"group_size": g, "bits": b}, …} — per-layer entries as MLX LM writes them; the writer
 *      is lt-export's (it must accept per-tensor bits/group).
 * Peak memory: the stored model + one block in f32 + hidden states + the stats (in² floats per
 * distinct input; 2·in² more during one GPTQ factorization). */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "lt-quant.h"

G_BEGIN_DECLS

/* Progress of a long calibration call: a fraction in [0, 1] and what is being done; return
 * FALSE to stop (the call then fails with LT_ERROR_CANCELLED), as LtExportProgress. */
typedef gboolean (*LtCalibProgress) (double fraction, const char *what, gpointer user_data);

/* ---- statistics ---------------------------------------------------------------------- */

typedef struct
{
  int64_t in;        /* input features */
  int64_t n;         /* rows seen */
  float *h;          /* (in, in) row-major 2/n · XᵀX; only the upper triangle (j >= i) is kept
                      * up to date: read it through lt_calib_stats_get_hessian */
  double *abs_sum;   /* (in) Σ |x| per channel */
} LtCalibStats;

LtCalibStats *lt_calib_stats_new (int64_t in, GError **error);
void lt_calib_stats_free (LtCalibStats *stats);
/* H = N_old/N · H + 2/N · XᵀX with N = N_old + n; x (n, in). Blocks of H run in parallel
 * (OpenMP, single-threaded sgemm per block). NaN/Inf in x is LT_ERROR_NUMERIC. */
gboolean lt_calib_stats_add (LtCalibStats *stats, const float *x, int64_t n,
                             GCancellable *cancellable, GError **error);
/* The full symmetric H into out (in, in). */
void lt_calib_stats_get_hessian (const LtCalibStats *stats, float *out);
/* mean |x| per channel into out (in). */
void lt_calib_stats_get_abs_mean (const LtCalibStats *stats, float *out);
/* out_mse (W, Ŵ) above: tr ((W−Ŵ) H (W−Ŵ)ᵀ) / (2·rows), w and w_hat (rows, in). */
double lt_calib_output_mse (const LtCalibStats *stats, const float *w, const float *w_hat,
                            int64_t rows);

/* ---- GPTQ ---------------------------------------------------------------------------- */

typedef struct
{
  LtQuantMode mode;  /* default LT_QUANT_AFFINE (the MLX export grid) */
  int bits;          /* default 4 */
  int group_size;    /* 32, 64 (default), 128 */
  double damp;       /* relative damping, default 0.01 */
  int block_size;    /* default 128; rounded up to a multiple of group_size */
  gboolean measure;  /* default TRUE: fill out_mse and rtn_mse (2 more rows·in² products) */
  gboolean mse_search; /* default FALSE (the paper's min/max groups, the reference fixture):
                      * affine / symmetric group parameters searched (lt_calib_quantize_searched's
                      * grid and refit) for the least Σ_j δ_j² / U_jj², GPTQ's error of the
                      * group once later columns compensate */
  gboolean act_order; /* default FALSE: columns in order of decreasing H_jj, with static
                      * groups (every group's parameters from the original weights first:
                      * lt_calib_quantize_searched with mse_search, else lt-quant's) */
  gboolean release_source; /* default FALSE: lt_gptq_quantize_tensor gives each slab's pages
                      * of the source back to the kernel once read (MADV_PAGEOUT: a mapped
                      * file's are re-read if touched again) */
} LtGptqOptions;

void lt_gptq_options_init (LtGptqOptions *opts);

typedef struct
{
  double out_mse;    /* out_mse (W, Ŵ_gptq); NAN unless measure */
  double rtn_mse;    /* out_mse (W, Ŵ_rtn) of lt_quant_tensor_quantize; NAN unless measure */
  double proxy;      /* Σ e², e = (w − ŵ)/U_jj: the objective with the damped H, free */
  double lambda;     /* the damping added to the diagonal */
  int64_t n_dead;    /* columns with H_ii = 0 */
  int block_size;    /* the block size used */
} LtGptqResult;

/* GPTQ of w (rows, cols) with stats->in == cols. The result is an ordinary lt-quant tensor
 * (f32 scales; round them with lt_quant_tensor_round_scales for a bf16 export, as for RTN).
 * @result may be NULL. Errors: INVALID_ARGUMENT (bad options, shape, no rows seen),
 * NUMERIC (non-finite w, or H + λI not positive definite: raise damp), CANCELLED. */
LtQuantTensor *lt_gptq_quantize (const float *w, int64_t rows, int64_t cols,
                                 const LtCalibStats *stats, const LtGptqOptions *opts,
                                 LtGptqResult *result, LtCalibProgress progress,
                                 gpointer user_data, GCancellable *cancellable, GError **error);

/* lt_gptq_quantize of a stored weight @src ((rows, cols), F32/F16/BF16), read as f32 in
 * slabs of 4096 rows: at most one slab of the weight is in f32 at a time (GPTQ's rows are
 * independent once U is known). The same codes, scales and biases as lt_gptq_quantize of the
 * whole weight read as f32; the measures and proxy are summed slab by slab. */
LtQuantTensor *lt_gptq_quantize_tensor (const LtTensor *src, const LtCalibStats *stats,
                                        const LtGptqOptions *opts, LtGptqResult *result,
                                        LtCalibProgress progress, gpointer user_data,
                                        GCancellable *cancellable, GError **error);

/* ---- the asymmetric target ----------------------------------------------------------- */

/* When the quantized model's inputs X̃ of a layer differ from the float model's X (earlier
 * layers quantized), the output error that matters is ‖X Wᵀ − X̃ Ŵᵀ‖², not ‖X̃ (W − Ŵ)ᵀ‖²
 * (GPTAQ, Li et al. 2025). It equals ‖X̃ (Ŵ* − Ŵ)ᵀ‖² + a constant for the least-squares
 * target Ŵ* = W G (H + λI)⁻¹, G = 2/N XᵀX̃, H = 2/N X̃ᵀX̃: quantizing Ŵ* with H (GPTQ, or
 * AWQ's searches) minimises it. @g (in, in) holds the raw sums Σ xᵀx̃ over the same N rows as
 * @stats (lt_calib_cross_add); λ = @damp · mean (diag H). @w (rows, in) is replaced by Ŵ*.
 * Errors: INVALID_ARGUMENT (no rows), NUMERIC (non-finite, or not positive definite). */
void lt_calib_cross_add (float *g, int64_t in, const float *x_float, const float *x_quant,
                         int64_t n);
gboolean lt_calib_asym_target (const LtCalibStats *stats, const float *g, double damp,
                               float *w, int64_t rows, GError **error);
/* lt_calib_asym_target in two steps, for the linears that share one input: the map M (in, in)
 * (newly allocated; NULL + error as above), then Ŵ* = W Mᵀ for each (@scratch: rows · in
 * floats). */
float *lt_calib_asym_map (const LtCalibStats *stats, const float *g, double damp,
                          GError **error);
void lt_calib_asym_apply (const float *map, int64_t in, float *w, int64_t rows, float *scratch);
/* The error asym minimises, per element of the layer output: ‖X Wᵀ − X̃ Ŵᵀ‖² / (N · rows),
 * from @stats (X̃), @stats_f (X, the same N rows) and @g (raw Σ xᵀx̃); w, w_hat (rows, in). */
double lt_calib_asym_output_mse (const LtCalibStats *stats, const LtCalibStats *stats_f,
                                 const float *g, const float *w, const float *w_hat,
                                 int64_t rows);

/* ---- AWQ ----------------------------------------------------------------------------- */

typedef struct
{
  LtQuantMode mode;  /* default LT_QUANT_AFFINE */
  int bits;          /* default 4 */
  int group_size;    /* default 64 */
  int n_grid;        /* default 20 */
  double max_shrink; /* default 0.5 */
} LtAwqOptions;

void lt_awq_options_init (LtAwqOptions *opts);

typedef struct
{
  const float *w;    /* (rows, in) */
  int64_t rows;
} LtAwqLinear;

typedef struct
{
  double ratio;      /* the chosen α */
  int index;         /* its grid index i (α = i / n_grid) */
  double mse;        /* Σ_layers ‖XΔᵀ‖² / (N · Σ rows) at α */
  double rtn_mse;    /* the same at α = 0 (plain round-to-nearest) */
} LtAwqScaleResult;

/* Scale search for @n_linears linears sharing the input of @stats: writes s (in) to
 * @scales. @result may be NULL. */
gboolean lt_awq_search_scales (const LtCalibStats *stats, const LtAwqLinear *linears,
                               int n_linears, const LtAwqOptions *opts, float *scales,
                               LtAwqScaleResult *result, LtCalibProgress progress,
                               gpointer user_data, GCancellable *cancellable, GError **error);

/* Clipping search on one linear whose weight @w (rows, in) is already W·diag(s) (@scales =
 * s, or NULL for none): w is clipped in place, group by group, to ±p·max|w_g| with the best
 * p, which goes to @clip (rows, in / group_size) when not NULL. @mse_before / @mse_after
 * (either may be NULL): Σ over groups of δ_gᵀ H'_gg δ_g / (2·rows) for p = 1 and for the
 * chosen p. */
gboolean lt_awq_search_clip (const LtCalibStats *stats, const float *scales, float *w,
                             int64_t rows, const LtAwqOptions *opts, float *clip,
                             double *mse_before, double *mse_after, LtCalibProgress progress,
                             gpointer user_data, GCancellable *cancellable, GError **error);

/* ---- searched group parameters ------------------------------------------------------- */

/* Quantizes w (rows, cols = stats->in) with the affine / symmetric parameters of each group
 * (row, g) that minimise its share of the layer output error δ_gᵀ H'_gg δ_g (H' = diag(1/s)
 * H diag(1/s) with @col_scales s, for a weight already scaled by AWQ; NULL: H): starting
 * from lt-quant's round-to-nearest parameters, a grid of shrunk ranges (affine: the minimum
 * raised and the maximum lowered by 0, 3, …, 21% of the range each, 64 pairs; symmetric:
 * absmax · (1 − 0.02·i), i < 16), each followed by the weighted least-squares refit of the
 * scale and bias to the levels it gave; the best of all, so never worse than
 * round-to-nearest on this objective. @row_damp (rows, or NULL): row r's groups are judged
 * on H'_gg + row_damp[r]·I instead (a tied embedding's lookup error, weighted by how often
 * its token occurs). @stats NULL: the weights' own squared error (data-free; @col_scales
 * and @row_damp ignored). Other modes: round-to-nearest. Deterministic. */
LtQuantTensor *lt_calib_quantize_searched (const LtCalibStats *stats, const float *col_scales,
                                           const float *row_damp, const float *w,
                                           int64_t rows, int64_t cols,
                                           LtQuantMode mode, int bits, int group_size,
                                           GError **error);

/* ---- dynamic mixed-bit allocation ---------------------------------------------------- */

/* b + 32/g: bits per weight of an MLX quantized layer with 16-bit scales and biases. */
double lt_calib_bits_per_weight (int bits, int group_size);

/* Chooses high or low bits for each of @n_layers layers (sizes in weights @n_weights,
 * sensitivities any finite doubles, larger = more sensitive): all start low; in order of
 * decreasing sensitivity (ties: lower index first) a layer becomes high when the whole stays
 * at or below @target_bpw (a layer that would overshoot is skipped and smaller, less
 * sensitive ones are still tried). Writes the bits of each layer to @bits_out and the
 * achieved bits per weight to @bpw_out. INVALID_ARGUMENT when the target lies outside
 * [all low, all high] or an input is bad. Pure. */
gboolean lt_calib_allocate_bits (const double *sensitivity, const int64_t *n_weights,
                                 int n_layers, int low_bits, int low_group_size,
                                 int high_bits, int high_group_size, double target_bpw,
                                 int *bits_out, double *bpw_out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtCalibStats, lt_calib_stats_free)

G_END_DECLS
