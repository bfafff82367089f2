/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the benchmarks. */
#pragma once

#include <stdint.h>

#include <glib.h>

#include "lt-calibrate-model.h"
#include "lt-config.h"

/* config.json of the bench model: Llama-shaped (SmolLM-135M dims) — hidden 576, 30 layers,
 * 9 heads / 3 KV heads, intermediate 1536, vocab 49152, tied embeddings, bf16. */
extern const char bench_llama_config_json[];

/* A fixed-seed xorshift64* stream, so every run builds the same random weights. */
uint32_t bench_rng_u32 (void);

/* Monotonic seconds. */
double bench_now_s (void);
/* This machine's best sgemm GFLOP/s for C (M, N) = A (M, K) · B (N, K)ᵀ (the layout lt-linear
 * uses) over @reps timed runs after one warm-up, with whatever BLAS threading is set. */
double bench_sgemm_rate (int M, int N, int K, int reps);
/* The best seconds of @reps calls of @fn (@data) after one warm-up call. */
double bench_best_s (int reps, void (*fn) (gpointer data), gpointer data);
/* @n values uniform in [−0.5, 0.5) from the fixed stream. */
void bench_fill_uniform (float *p, gsize n);
/* GFLOP/s of Y (M, N) = X (M, K) · Wᵀ with W bf16 (N, K) through lt-compute's bf16 backend
 * (lt_compute_gemm_w with the bf16 dtype, threaded as the model's products are; best of @reps
 * after one warm-up): the bf16 matmul peak an MFU is taken against. */
double bench_bf16_matmul_rate (int M, int N, int K, int reps);

/* The bench model's weights (random bf16 from the fixed stream, in one fixed order: embedding,
 * final norm, then per block q, k, v, o, gate, up, down, the two norms), GPtrArray of
 * LtTensor* owned by the array. */
GPtrArray *bench_model_tensors (const LtConfig *config);

/* Writes DIR/config.json (bench_llama_config_json) and DIR/model.safetensors with random
 * bf16 weights from the fixed stream (linear layers uniform ±1/√in, embedding ±0.05, norms
 * 1), so a bench can load the model as a user's folder would be, with any load options.
 * Returns 0, or -1 after printing why. */
int bench_write_model (const char *dir);

/* One LtCalibTokens (lt-calibrate-model.h) holding @seqs (GArray of int32 token ids each) in
 * order, one sequence a row: what lt_dwq_teacher_samples writes, for the perplexity helpers. */
LtCalibTokens *bench_calib_tokens_pack (GPtrArray *seqs);
