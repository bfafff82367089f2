/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan: whole sequences of kernels recorded into one stream and submitted once — a Llama
 * block's forward, and a LoRA linear layer's training step (forward, backward, clip, AdamW) —
 * against the same computation composed from the CPU references (lt-kernels.h) and
 * LtOptimizer. The single kernels are test-vulkan's. Skips like it.
 * Tolerance: 1e-5 relative to max(1, |ref|) for every output (measured ≤ 1.4e-6 on lavapipe). */
#include "config.h"

#include "src/core/kernels/lt-kernels.h"
#include "src/core/lt-error.h"
#include "src/core/lt-optimizer.h"
#include "src/core/lt-linear.h"
#include "src/core/lt-qat.h"
#include "src/core/lt-quant.h"
#include "src/core/lt-vulkan-kernels.h"
#include "tests/core/test-vulkan.h"

/* ---- a whole block in one submit ---- */

/* A Llama block's forward recorded into one stream and submitted once — embedding, RMSNorm,
 * the q/k/v/o and MLP products on bf16 weights, RoPE, attention, SwiGLU, both residual adds —
 * against the same block composed from the CPU references. */
static void
test_block_forward (void)
{
  enum { T = 24, C = 64, H = 4, KVH = 2, D = 16, I = 96, V = 40, P = 32 };
  const int QD = H * D, KD = KVH * D;
  g_autoptr (GError) error = NULL;
  g_autofree float *emb = g_new (float, V * C), *wn1 = g_new (float, C), *wn2 = g_new (float, C);
  g_autofree float *wq = g_new (float, QD * C), *wk = g_new (float, KD * C);
  g_autofree float *wv = g_new (float, KD * C), *wo = g_new (float, C * QD);
  g_autofree float *wg = g_new (float, I * C), *wu = g_new (float, I * C);
  g_autofree float *wd = g_new (float, C * I), *inv = g_new (float, D / 2);
  g_autofree float *table = g_new (float, P * D);
  g_autofree guint16 *q16 = g_new (guint16, QD * C), *k16 = g_new (guint16, KD * C);
  g_autofree guint16 *v16 = g_new (guint16, KD * C), *o16 = g_new (guint16, C * QD);
  g_autofree guint16 *g16 = g_new (guint16, I * C), *u16 = g_new (guint16, I * C);
  g_autofree guint16 *d16 = g_new (guint16, C * I);
  g_autofree float *x = g_new (float, T * C), *h = g_new (float, T * C);
  g_autofree float *q = g_new (float, T * QD), *k = g_new (float, T * KD);
  g_autofree float *v = g_new (float, T * KD), *att = g_new (float, T * QD);
  g_autofree float *o = g_new (float, T * C), *ga = g_new (float, T * I);
  g_autofree float *up = g_new (float, T * I), *y = g_new (float, T * C);
  g_autofree float *got = g_new (float, T * C);
  gint32 ids[T];
  int pos[T];
  g_autoptr (LtVulkanStream) s = NULL;
  double e;

  REQUIRE_DEVICE ();
  fill (emb, V * C, 120, -1, 1);
  fill (wn1, C, 121, 0.5, 1.5);
  fill (wn2, C, 122, 0.5, 1.5);
  fill (wq, QD * C, 123, -0.2, 0.2);
  fill (wk, KD * C, 124, -0.2, 0.2);
  fill (wv, KD * C, 125, -0.2, 0.2);
  fill (wo, C * QD, 126, -0.2, 0.2);
  fill (wg, I * C, 127, -0.2, 0.2);
  fill (wu, I * C, 128, -0.2, 0.2);
  fill (wd, C * I, 129, -0.2, 0.2);
  to_bf16 (q16, wq, QD * C);
  to_bf16 (k16, wk, KD * C);
  to_bf16 (v16, wv, KD * C);
  to_bf16 (o16, wo, C * QD);
  to_bf16 (g16, wg, I * C);
  to_bf16 (u16, wu, I * C);
  to_bf16 (d16, wd, C * I);
  for (int i = 0; i < D / 2; i++)
    inv[i] = (float) pow (10000.0, -2.0 * i / D);
  lt_vulkan_rope_table (table, inv, P, D);
  for (int t = 0; t < T; t++)
    {
      ids[t] = (t * 7 + 3) % V;
      pos[t] = t;
    }

  /* the CPU block */
  for (int t = 0; t < T; t++)
    memcpy (x + t * C, emb + ids[t] * C, sizeof (float) * C);
  lt_rmsnorm_forward_ref (h, x, wn1, 1e-5f, T, C);
  lt_matmul_forward_ref (q, h, q16, LT_KDTYPE_BF16, NULL, T, C, QD);
  lt_matmul_forward_ref (k, h, k16, LT_KDTYPE_BF16, NULL, T, C, KD);
  lt_matmul_forward_ref (v, h, v16, LT_KDTYPE_BF16, NULL, T, C, KD);
  lt_rope_forward_ref (q, pos, inv, T, H, D);
  lt_rope_forward_ref (k, pos, inv, T, KVH, D);
  lt_attention_forward_ref (att, q, k, v, T, T, H, KVH, D);
  lt_matmul_forward_ref (o, att, o16, LT_KDTYPE_BF16, NULL, T, QD, C);
  lt_add (x, x, o, (gsize) T * C);
  lt_rmsnorm_forward_ref (h, x, wn2, 1e-5f, T, C);
  lt_matmul_forward_ref (ga, h, g16, LT_KDTYPE_BF16, NULL, T, C, I);
  lt_matmul_forward_ref (up, h, u16, LT_KDTYPE_BF16, NULL, T, C, I);
  lt_swiglu_forward_ref (ga, ga, up, (gsize) T * I);
  lt_matmul_forward_ref (y, ga, d16, LT_KDTYPE_BF16, NULL, T, I, C);
  lt_add (y, y, x, (gsize) T * C);

  /* the GPU block: weights uploaded once, the step recorded and submitted once */
  g_autoptr (LtVulkanBuffer) bemb = upload (emb, sizeof (float) * V * C);
  g_autoptr (LtVulkanBuffer) bn1 = upload (wn1, sizeof (float) * C);
  g_autoptr (LtVulkanBuffer) bn2 = upload (wn2, sizeof (float) * C);
  g_autoptr (LtVulkanBuffer) bwq = upload (q16, sizeof (guint16) * QD * C);
  g_autoptr (LtVulkanBuffer) bwk = upload (k16, sizeof (guint16) * KD * C);
  g_autoptr (LtVulkanBuffer) bwv = upload (v16, sizeof (guint16) * KD * C);
  g_autoptr (LtVulkanBuffer) bwo = upload (o16, sizeof (guint16) * C * QD);
  g_autoptr (LtVulkanBuffer) bwg = upload (g16, sizeof (guint16) * I * C);
  g_autoptr (LtVulkanBuffer) bwu = upload (u16, sizeof (guint16) * I * C);
  g_autoptr (LtVulkanBuffer) bwd = upload (d16, sizeof (guint16) * C * I);
  g_autoptr (LtVulkanBuffer) btab = upload (table, sizeof (float) * P * D);
  g_autoptr (LtVulkanBuffer) bids = upload (ids, sizeof ids);
  g_autoptr (LtVulkanBuffer) bpos = upload (pos, sizeof pos);
  g_autoptr (LtVulkanBuffer) bx = lt_vulkan_buffer_new (vk, sizeof (float) * T * C, &error);
  g_autoptr (LtVulkanBuffer) bh = lt_vulkan_buffer_new (vk, sizeof (float) * T * C, &error);
  g_autoptr (LtVulkanBuffer) bq = lt_vulkan_buffer_new (vk, sizeof (float) * T * QD, &error);
  g_autoptr (LtVulkanBuffer) bk = lt_vulkan_buffer_new (vk, sizeof (float) * T * KD, &error);
  g_autoptr (LtVulkanBuffer) bv = lt_vulkan_buffer_new (vk, sizeof (float) * T * KD, &error);
  g_autoptr (LtVulkanBuffer) ba = lt_vulkan_buffer_new (vk, sizeof (float) * T * QD, &error);
  g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * T * C, &error);
  g_autoptr (LtVulkanBuffer) bg = lt_vulkan_buffer_new (vk, sizeof (float) * T * I, &error);
  g_autoptr (LtVulkanBuffer) bu = lt_vulkan_buffer_new (vk, sizeof (float) * T * I, &error);
  g_assert_no_error (error);
  LtVulkanMatrix mh = { bh, 0, C, LT_KDTYPE_F32 }, ma = { ba, 0, QD, LT_KDTYPE_F32 };
  LtVulkanMatrix mg = { bg, 0, I, LT_KDTYPE_F32 }, mu = { bu, 0, I, LT_KDTYPE_F32 };
  LtVulkanMatrix mq = { bq, 0, QD, LT_KDTYPE_F32 }, mk = { bk, 0, KD, LT_KDTYPE_F32 };
  LtVulkanMatrix mv = { bv, 0, KD, LT_KDTYPE_F32 }, mo = { bo, 0, C, LT_KDTYPE_F32 };
  LtVulkanMatrix wmq = { bwq, 0, C, LT_KDTYPE_BF16 }, wmk = { bwk, 0, C, LT_KDTYPE_BF16 };
  LtVulkanMatrix wmv = { bwv, 0, C, LT_KDTYPE_BF16 }, wmo = { bwo, 0, QD, LT_KDTYPE_BF16 };
  LtVulkanMatrix wmg = { bwg, 0, C, LT_KDTYPE_BF16 }, wmu = { bwu, 0, C, LT_KDTYPE_BF16 };
  LtVulkanMatrix wmd = { bwd, 0, I, LT_KDTYPE_BF16 };
  const LtTrans N_ = LT_NO_TRANS, T_ = LT_TRANS;
  const LtComputeDType F = LT_COMPUTE_F32;

  s = stream ();
  g_assert_true (lt_vulkan_embedding (s, bx, bemb, LT_KDTYPE_F32, bids, T, C, V, &error));
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bh, bx, bn1, 1e-5f, T, C, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, QD, C, 1, &mh, &wmq, 0, &mq, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, KD, C, 1, &mh, &wmk, 0, &mk, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, KD, C, 1, &mh, &wmv, 0, &mv, F, &error));
  g_assert_true (lt_vulkan_rope (s, bq, 0, bpos, btab, P, T, H, D, FALSE, &error));
  g_assert_true (lt_vulkan_rope (s, bk, 0, bpos, btab, P, T, KVH, D, FALSE, &error));
  g_assert_true (lt_vulkan_attention_forward (s, ba, NULL, bq, bk, bv, LT_KDTYPE_F32, T, T, H,
                                              KVH, D, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, C, QD, 1, &ma, &wmo, 0, &mo, F, &error));
  g_assert_true (lt_vulkan_add (s, bx, bx, bo, (gsize) T * C, &error));
  g_assert_true (lt_vulkan_rmsnorm_forward (s, bh, bx, bn2, 1e-5f, T, C, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, I, C, 1, &mh, &wmg, 0, &mg, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, I, C, 1, &mh, &wmu, 0, &mu, F, &error));
  g_assert_true (lt_vulkan_swiglu_forward (s, bg, bg, bu, (gsize) T * I, &error));
  /* y = a·Wdᵀ, then the second residual */
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, C, I, 1, &mg, &wmd, 0, &mo, F, &error));
  g_assert_true (lt_vulkan_add (s, bo, bo, bx, (gsize) T * C, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, 16);
  run (s);
  download (bo, got, sizeof (float) * T * C);
  e = max_rel (got, y, T * C);
  g_test_message ("one block forward (16 dispatches, one submit) T=%d C=%d H=%d KVH=%d I=%d: "
                  "max rel error %.3g", T, C, H, KVH, I, e);
  g_assert_cmpfloat (e, <=, 1e-5);
}

/* ---- a LoRA step in one submit ---- */

/* One training step of a LoRA linear layer recorded into one stream: the forward
 * y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ over a frozen bf16 W, the backward from an upstream dy (dB = s·dyᵀ·h,
 * dh = s·dy·B, dA = dhᵀ·x, dx = dy·W + dh·A), the global-norm clip and AdamW on A and B —
 * against the CPU references and LtOptimizer. */
static void
test_lora_step (void)
{
  enum { T = 37, IN = 96, OUT = 80, R = 8 };
  const float sc = 2.0f; /* alpha / r */
  const double lr = 1e-3, max_norm = 0.5;
  g_autoptr (GError) error = NULL;
  g_autofree float *x = g_new (float, T * IN), *w = g_new (float, OUT * IN);
  g_autofree float *A = g_new (float, R * IN), *B = g_new (float, OUT * R);
  g_autofree float *dy = g_new (float, T * OUT), *h = g_new (float, T * R);
  g_autofree float *y = g_new (float, T * OUT), *dx = g_new0 (float, T * IN);
  g_autofree float *dA = g_new0 (float, R * IN), *dB = g_new0 (float, OUT * R);
  g_autofree float *dh = g_new0 (float, T * R), *zero = g_new0 (float, OUT * IN);
  g_autofree float *gy = g_new (float, T * OUT), *gdx = g_new (float, T * IN);
  g_autofree float *gA = g_new (float, R * IN), *gB = g_new (float, OUT * R);
  g_autofree float *gdA = g_new (float, R * IN), *gdB = g_new (float, OUT * R);
  g_autofree float *gvA = g_new (float, R * IN);
  g_autofree guint16 *w16 = g_new (guint16, OUT * IN);
  const float *state_m, *state_v;
  LtOptimizerParams hp = { LT_OPTIMIZER_ADAMW, 0.01, 0.9, 0.999, 1e-8, 0 };
  g_autoptr (LtOptimizer) opt = lt_optimizer_new (&hp);
  g_autoptr (LtVulkanStream) s = NULL;
  double norm, ey, edx, eA, eB, edA, edB, ev;

  REQUIRE_DEVICE ();
  fill (x, T * IN, 150, -1, 1);
  fill (w, OUT * IN, 151, -0.3, 0.3);
  fill (A, R * IN, 152, -0.1, 0.1);
  fill (B, OUT * R, 153, -0.1, 0.1); /* non-zero, so that dA is too */
  fill (dy, T * OUT, 154, -1, 1);
  to_bf16 (w16, w, OUT * IN);

  g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * T * IN);
  g_autoptr (LtVulkanBuffer) bw = upload (w16, sizeof (guint16) * OUT * IN);
  g_autoptr (LtVulkanBuffer) bA = upload (A, sizeof (float) * R * IN);
  g_autoptr (LtVulkanBuffer) bB = upload (B, sizeof (float) * OUT * R);
  g_autoptr (LtVulkanBuffer) bdy = upload (dy, sizeof (float) * T * OUT);
  g_autoptr (LtVulkanBuffer) bmA = upload (zero, sizeof (float) * R * IN);
  g_autoptr (LtVulkanBuffer) bvA = upload (zero, sizeof (float) * R * IN);
  g_autoptr (LtVulkanBuffer) bmB = upload (zero, sizeof (float) * OUT * R);
  g_autoptr (LtVulkanBuffer) bvB = upload (zero, sizeof (float) * OUT * R);
  g_autoptr (LtVulkanBuffer) bh = lt_vulkan_buffer_new (vk, sizeof (float) * T * R, &error);
  g_autoptr (LtVulkanBuffer) by = lt_vulkan_buffer_new (vk, sizeof (float) * T * OUT, &error);
  g_autoptr (LtVulkanBuffer) bdh = lt_vulkan_buffer_new (vk, sizeof (float) * T * R, &error);
  g_autoptr (LtVulkanBuffer) bdx = lt_vulkan_buffer_new (vk, sizeof (float) * T * IN, &error);
  g_autoptr (LtVulkanBuffer) bdA = lt_vulkan_buffer_new (vk, sizeof (float) * R * IN, &error);
  g_autoptr (LtVulkanBuffer) bdB = lt_vulkan_buffer_new (vk, sizeof (float) * OUT * R, &error);
  g_autoptr (LtVulkanBuffer) bp = NULL;
  g_autoptr (LtVulkanBuffer) bss = lt_vulkan_buffer_new (vk, sizeof (float), &error);
  bp = lt_vulkan_buffer_new (vk, sizeof (float) * LT_VULKAN_SUMSQ_PARTIAL, &error);
  g_assert_no_error (error);
  LtVulkanMatrix mx = { bx, 0, IN, LT_KDTYPE_F32 }, mw = { bw, 0, IN, LT_KDTYPE_BF16 };
  LtVulkanMatrix mA = { bA, 0, IN, LT_KDTYPE_F32 }, mB = { bB, 0, R, LT_KDTYPE_F32 };
  LtVulkanMatrix mh = { bh, 0, R, LT_KDTYPE_F32 }, my = { by, 0, OUT, LT_KDTYPE_F32 };
  LtVulkanMatrix mdy = { bdy, 0, OUT, LT_KDTYPE_F32 }, mdh = { bdh, 0, R, LT_KDTYPE_F32 };
  LtVulkanMatrix mdx = { bdx, 0, IN, LT_KDTYPE_F32 }, mdA = { bdA, 0, IN, LT_KDTYPE_F32 };
  LtVulkanMatrix mdB = { bdB, 0, R, LT_KDTYPE_F32 };
  const LtTrans N_ = LT_NO_TRANS, T_ = LT_TRANS;
  const LtComputeDType F = LT_COMPUTE_F32;

  s = stream ();
  /* forward */
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, R, IN, 1, &mx, &mA, 0, &mh, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, OUT, IN, 1, &mx, &mw, 0, &my, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, T_, T, OUT, R, sc, &mh, &mB, 1, &my, F, &error));
  /* backward */
  g_assert_true (lt_vulkan_gemm (s, T_, N_, OUT, R, T, sc, &mdy, &mh, 0, &mdB, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, N_, T, R, OUT, sc, &mdy, &mB, 0, &mdh, F, &error));
  g_assert_true (lt_vulkan_gemm (s, T_, N_, R, IN, T, 1, &mdh, &mx, 0, &mdA, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, N_, T, IN, OUT, 1, &mdy, &mw, 0, &mdx, F, &error));
  g_assert_true (lt_vulkan_gemm (s, N_, N_, T, IN, R, 1, &mdh, &mA, 1, &mdx, F, &error));
  /* clip, AdamW */
  g_assert_true (lt_vulkan_sum_squares (s, bdA, R * IN, bp, bss, FALSE, &error));
  g_assert_true (lt_vulkan_sum_squares (s, bdB, OUT * R, bp, bss, TRUE, &error));
  g_assert_true (lt_vulkan_clip_by_norm (s, bdA, R * IN, bss, (float) max_norm, &error));
  g_assert_true (lt_vulkan_clip_by_norm (s, bdB, OUT * R, bss, (float) max_norm, &error));
  g_assert_true (lt_vulkan_adamw (s, bA, bdA, bmA, bvA, R * IN, lr, hp.beta1, hp.beta2, hp.eps,
                                  hp.weight_decay, 1, &error));
  g_assert_true (lt_vulkan_adamw (s, bB, bdB, bmB, bvB, OUT * R, lr, hp.beta1, hp.beta2, hp.eps,
                                  hp.weight_decay, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (lt_vulkan_stream_get_n_dispatches (s), ==, 16);
  run (s);
  download (by, gy, sizeof (float) * T * OUT);
  download (bdx, gdx, sizeof (float) * T * IN);
  download (bA, gA, sizeof (float) * R * IN);
  download (bB, gB, sizeof (float) * OUT * R);
  download (bdA, gdA, sizeof (float) * R * IN);
  download (bdB, gdB, sizeof (float) * OUT * R);
  download (bvA, gvA, sizeof (float) * R * IN);

  /* the CPU step, from the references */
  lt_matmul_forward_ref (h, x, A, LT_KDTYPE_F32, NULL, T, IN, R);
  lt_matmul_forward_ref (y, x, w16, LT_KDTYPE_BF16, NULL, T, IN, OUT);
  for (int t = 0; t < T; t++)
    for (int o = 0; o < OUT; o++)
      {
        double acc = 0.0;
        for (int r = 0; r < R; r++)
          acc += (double) h[t * R + r] * B[o * R + r];
        y[t * OUT + o] += (float) (sc * acc);
      }
  lt_matmul_backward_dw_ref (dB, dy, OUT, h, T, R, OUT);
  for (int i = 0; i < OUT * R; i++)
    dB[i] *= sc;
  lt_matmul_backward_dx_ref (dh, dy, OUT, B, LT_KDTYPE_F32, T, R, OUT);
  for (int i = 0; i < T * R; i++)
    dh[i] *= sc;
  lt_matmul_backward_dw_ref (dA, dh, R, x, T, IN, R);
  lt_matmul_backward_dx_ref (dx, dy, OUT, w16, LT_KDTYPE_BF16, T, IN, OUT);
  lt_matmul_backward_dx_ref (dx, dh, R, A, LT_KDTYPE_F32, T, IN, R);
  lt_optimizer_add (opt, "A", A, dA, R * IN, TRUE);
  lt_optimizer_add (opt, "B", B, dB, OUT * R, TRUE);
  norm = lt_optimizer_clip_grad_norm (opt, max_norm);
  g_assert_cmpfloat (norm, >, max_norm); /* the clip acts */
  lt_optimizer_step (opt, lr);
  lt_optimizer_get_state (opt, 0, &state_m, &state_v);

  /* the clipped gradients and the second moment carry the gradients' scale (AdamW's first
   * update, m/√v, does not) */
  edA = max_rel (gdA, dA, R * IN);
  edB = max_rel (gdB, dB, OUT * R);
  ev = max_rel (gvA, state_v, R * IN);
  g_test_message ("LoRA step gradients after the clip: dA %.3g, dB %.3g, v(A) %.3g "
                  "(max rel error)", edA, edB, ev);
  g_assert_cmpfloat (edA, <=, 1e-5);
  g_assert_cmpfloat (edB, <=, 1e-5);
  g_assert_cmpfloat (ev, <=, 1e-5);
  ey = max_rel (gy, y, T * OUT);
  edx = max_rel (gdx, dx, T * IN);
  eA = max_rel (gA, A, R * IN);
  eB = max_rel (gB, B, OUT * R);
  g_test_message ("LoRA step (16 dispatches, one submit) T=%d in=%d out=%d r=%d: y %.3g, "
                  "dx %.3g, A %.3g, B %.3g after clip (norm %.3f) and AdamW (max rel error)", T,
                  IN, OUT, R, ey, edx, eA, eB, norm);
  g_assert_cmpfloat (ey, <=, 1e-5);
  g_assert_cmpfloat (edx, <=, 1e-5);
  g_assert_cmpfloat (eA, <=, 1e-5);
  g_assert_cmpfloat (eB, <=, 1e-5);
}


/* ---- quantized weights ---- */

/* lt_vulkan_gemm_q and lt_vulkan_embedding_q on every format load-time quantization (and MLX
 * folders) give — symmetric 4-bit and 8-bit (stored affine), affine 3-bit (codes straddling
 * words) and 5-bit, ternary, nf4, mxfp4 — against the CPU: Ŵ de-quantized by lt-quant's
 * reference expansion, then a double-precision product. The forward y = x·Ŵᵀ over a row window
 * (the LM head's chunks), the input gradient dx = dy·Ŵ accumulated (beta 1), the embedding
 * rows; then both products with bf16 operands against the same reference on bf16-rounded
 * operands. Tolerance 1e-5 relative to max(1, |ref|) for the products (f32 summation order);
 * the embedding rows, Ŵ itself, bit for bit (quant.glsl's exact fmaf). */
static void
test_gemm_q (void)
{
  static const struct
  {
    LtQuantMode mode;
    int bits, group;
  } fmts[] = {
    { LT_QUANT_SYMMETRIC, 4, 32 }, { LT_QUANT_SYMMETRIC, 8, 64 }, { LT_QUANT_AFFINE, 3, 32 },
    { LT_QUANT_AFFINE, 5, 64 },    { LT_QUANT_TERNARY, 2, 32 },   { LT_QUANT_NF4, 4, 64 },
    { LT_QUANT_MXFP4, 4, 32 },
  };
  enum { T = 29, IN = 128, OUT = 72, R0 = 8, NR = 56 };

  REQUIRE_DEVICE ();
  for (guint f = 0; f < G_N_ELEMENTS (fmts); f++)
    for (int bf = 0; bf <= 1; bf++)
      {
        g_autoptr (GError) error = NULL;
        g_autofree float *w = g_new (float, OUT * IN), *wq = g_new (float, OUT * IN);
        g_autofree float *x = g_new (float, T * IN), *dy = g_new (float, T * NR);
        g_autofree float *dx0 = g_new (float, T * IN), *y = g_new (float, T * NR);
        g_autofree float *dx = g_new (float, T * IN), *gy = g_new (float, T * NR);
        g_autofree float *gdx = g_new (float, T * IN), *emb = g_new (float, T * IN);
        g_autofree float *gemb = g_new (float, T * IN);
        gint32 ids[T];
        g_autoptr (LtQuantTensor) q = NULL;
        g_autoptr (LtVulkanStream) s = NULL;
        LtVulkanQMatrix qm;
        double ey, edx, ee;

        fill (w, OUT * IN, 400 + f, -0.5, 0.5);
        fill (x, T * IN, 410 + f, -1, 1);
        fill (dy, T * NR, 420 + f, -1, 1);
        fill (dx0, T * IN, 430 + f, -1, 1);
        for (int t = 0; t < T; t++)
          ids[t] = (t * 11 + 5) % OUT;
        q = lt_quant_tensor_quantize (w, OUT, IN, fmts[f].mode, fmts[f].bits, fmts[f].group,
                                      &error);
        g_assert_no_error (error);
        lt_quant_tensor_dequantize_rows_ref (q, 0, OUT, wq);
        g_assert_true (lt_vulkan_qmatrix_upload (vk, q, &qm, &error));
        g_assert_no_error (error);

        /* the CPU: y = x·Ŵ[R0:R0+NR]ᵀ, dx = dx0 + dy·Ŵ[R0:R0+NR], the embedding rows */
        for (int t = 0; t < T; t++)
          {
            for (int o = 0; o < NR; o++)
              {
                double acc = 0.0;
                for (int i = 0; i < IN; i++)
                  acc += (double) (bf ? lt_compute_round_bf16 (x[t * IN + i]) : x[t * IN + i])
                         * (bf ? lt_compute_round_bf16 (wq[(R0 + o) * IN + i])
                               : wq[(R0 + o) * IN + i]);
                y[t * NR + o] = (float) acc;
              }
            for (int i = 0; i < IN; i++)
              {
                double acc = dx0[t * IN + i];
                for (int o = 0; o < NR; o++)
                  acc += (double) (bf ? lt_compute_round_bf16 (dy[t * NR + o]) : dy[t * NR + o])
                         * (bf ? lt_compute_round_bf16 (wq[(R0 + o) * IN + i])
                               : wq[(R0 + o) * IN + i]);
                dx[t * IN + i] = (float) acc;
              }
            memcpy (emb + t * IN, wq + ids[t] * IN, sizeof (float) * IN);
          }

        g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * T * IN);
        g_autoptr (LtVulkanBuffer) bdy = upload (dy, sizeof (float) * T * NR);
        g_autoptr (LtVulkanBuffer) bdx = upload (dx0, sizeof (float) * T * IN);
        g_autoptr (LtVulkanBuffer) bids = upload (ids, sizeof ids);
        g_autoptr (LtVulkanBuffer) by = lt_vulkan_buffer_new (vk, sizeof (float) * T * NR, &error);
        g_autoptr (LtVulkanBuffer) be = lt_vulkan_buffer_new (vk, sizeof (float) * T * IN, &error);
        g_assert_no_error (error);
        LtVulkanMatrix mx = { bx, 0, IN, LT_KDTYPE_F32 }, my = { by, 0, NR, LT_KDTYPE_F32 };
        LtVulkanMatrix mdy = { bdy, 0, NR, LT_KDTYPE_F32 }, mdx = { bdx, 0, IN, LT_KDTYPE_F32 };
        LtComputeDType prec = bf ? LT_COMPUTE_BF16 : LT_COMPUTE_F32;
        LtVulkanQMatrix view = qm;
        view.row0 = R0;
        s = stream ();
        g_assert_true (lt_vulkan_gemm_q (s, LT_TRANS, T, NR, IN, 1.0f, &mx, &view, 0.0f, &my,
                                         prec, &error));
        g_assert_true (lt_vulkan_gemm_q (s, LT_NO_TRANS, T, IN, NR, 1.0f, &mdy, &view, 1.0f,
                                         &mdx, prec, &error));
        g_assert_true (lt_vulkan_embedding_q (s, be, &qm, bids, T, &error));
        g_assert_no_error (error);
        run (s);
        download (by, gy, sizeof (float) * T * NR);
        download (bdx, gdx, sizeof (float) * T * IN);
        download (be, gemb, sizeof (float) * T * IN);
        ey = max_rel (gy, y, T * NR);
        edx = max_rel (gdx, dx, T * IN);
        ee = max_rel (gemb, emb, T * IN);
        g_test_message ("gemm_q %s %d-bit group %d (%s operands): y %.3g, dx %.3g, embedding "
                        "%.3g (max rel error)", lt_quant_mode_name (fmts[f].mode), fmts[f].bits,
                        fmts[f].group, bf ? "bf16" : "f32", ey, edx, ee);
        g_assert_cmpfloat (ey, <=, 1e-5);
        g_assert_cmpfloat (edx, <=, 1e-5);
        g_assert_cmpfloat (ee, ==, 0.0); /* the de-quantization is bit for bit */
        lt_vulkan_qmatrix_clear (&qm);
      }
}

/* ---- QAT ---- */

/* lt_vulkan_qat_weight against lt-qat on the CPU: W_eff = W + s·(AB)ᵀ row by row
 * (lt_qat_lora_row), its scales from lt_fake_quantize (recomputed), then the frozen-scale
 * fake quantization the trainer's steps use — every grid (symmetric per group and per tensor,
 * affine, mxfp4, nf4), W f32 and bf16, and DoRA's W_eff (each row scaled by m / ‖·‖). The
 * same arithmetic in the same order: every element equal (a driver whose division is not
 * correctly rounded may move an element on a rounding boundary: at most 1 in 1000 allowed). */
static void
test_qat_weight (void)
{
  static const struct
  {
    LtQuantMode mode;
    int bits, group;
  } grids[] = {
    { LT_QUANT_SYMMETRIC, 4, 32 }, { LT_QUANT_SYMMETRIC, 3, 0 }, { LT_QUANT_AFFINE, 4, 64 },
    { LT_QUANT_AFFINE, 8, 32 },    { LT_QUANT_MXFP4, 4, 32 },    { LT_QUANT_NF4, 4, 64 },
  };
  enum { OUT = 40, IN = 128, R = 8 };
  const float sc = 2.0f;

  REQUIRE_DEVICE ();
  for (guint gi = 0; gi < G_N_ELEMENTS (grids); gi++)
    for (int bf = 0; bf <= 2; bf++)
      {
        /* bf 0: W f32, 1: W bf16, 2: W f32 with DoRA's m / ‖·‖ per row */
        int group = grids[gi].group, eff = group > 0 ? group : IN;
        gsize ng = (gsize) OUT * (IN / eff);
        g_autoptr (GError) error = NULL;
        g_autofree float *w = g_new (float, OUT * IN), *A = g_new (float, IN * R);
        g_autofree float *B = g_new (float, R * OUT), *weff = g_new (float, OUT * IN);
        g_autofree float *ref = g_new (float, OUT * IN), *got = g_new (float, OUT * IN);
        g_autofree float *grid = g_new0 (float, 2 * ng + 16);
        float *scales = grid, *biases = grid + ng;
        g_autofree float *mag = g_new (float, OUT), *nrm = g_new (float, OUT);
        g_autofree guint16 *w16 = g_new (guint16, OUT * IN);
        g_autoptr (LtVulkanStream) s = NULL;
        const float *lut = grids[gi].mode == LT_QUANT_MXFP4 ? lt_qk_fp4_lut : lt_qk_nf4_lut;
        gsize bad = 0;
        double e;

        fill (w, OUT * IN, 500 + gi, -0.4, 0.4);
        fill (A, IN * R, 510 + gi, -0.1, 0.1);
        fill (B, R * OUT, 520 + gi, -0.1, 0.1);
        fill (mag, OUT, 530 + gi, 0.5, 1.5);
        fill (nrm, OUT, 540 + gi, 0.8, 1.2);
        if (bf == 1)
          {
            to_bf16 (w16, w, OUT * IN);
            for (int i = 0; i < OUT * IN; i++)
              w[i] = lt_compute_round_bf16 (w[i]);
          }
        for (int o = 0; o < OUT; o++)
          {
            lt_qat_lora_row (w + o * IN, A, B, IN, R, OUT, o, sc, weff + o * IN);
            if (bf == 2)
              {
                /* lt_linear_qat_weight's DoRA row */
                float g = mag[o] / nrm[o];
                for (int i = 0; i < IN; i++)
                  weff[o * IN + i] *= g;
              }
          }
        g_assert_true (lt_fake_quantize (grids[gi].mode, weff, ref, OUT, IN, grids[gi].bits, group,
                                         scales, biases, TRUE));
        g_assert_true (lt_fake_quantize (grids[gi].mode, weff, ref, OUT, IN, grids[gi].bits, group,
                                         scales, biases, FALSE));
        if (group == 0)
          for (int o = 1; o < OUT; o++)
            scales[o] = scales[0]; /* lt-linear's layout: the tensor's scale on every row */

        memcpy (grid + 2 * ng, lut, sizeof (float) * 16);
        g_autoptr (LtVulkanBuffer) bw = bf == 1 ? upload (w16, sizeof (guint16) * OUT * IN)
                                                : upload (w, sizeof (float) * OUT * IN);
        g_autoptr (LtVulkanBuffer) bA = upload (A, sizeof (float) * IN * R);
        g_autoptr (LtVulkanBuffer) bB = upload (B, sizeof (float) * R * OUT);
        g_autoptr (LtVulkanBuffer) bg = upload (grid, sizeof (float) * (2 * ng + 16));
        g_autoptr (LtVulkanBuffer) bm = upload (mag, sizeof (float) * OUT);
        g_autoptr (LtVulkanBuffer) bn = upload (nrm, sizeof (float) * OUT);
        g_autoptr (LtVulkanBuffer) bo = lt_vulkan_buffer_new (vk, sizeof (float) * OUT * IN,
                                                              &error);
        g_assert_no_error (error);
        s = stream ();
        g_assert_true (lt_vulkan_qat_weight (s, bo, bw, bf == 1 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32,
                                             bA, bB, R, sc, bg, bf == 2 ? bm : NULL,
                                             bf == 2 ? bn : NULL, grids[gi].mode,
                                             grids[gi].bits, eff, OUT, IN, &error));
        g_assert_no_error (error);
        run (s);
        download (bo, got, sizeof (float) * OUT * IN);
        for (int i = 0; i < OUT * IN; i++)
          bad += got[i] != ref[i];
        e = max_abs (got, ref, OUT * IN);
        g_test_message ("qat weight %s %d-bit group %d (W %s): %" G_GSIZE_FORMAT " of %d elements "
                        "differ, max abs difference %.3g", lt_quant_mode_name (grids[gi].mode),
                        grids[gi].bits, group,
                        bf == 0 ? "f32" : bf == 1 ? "bf16" : "f32, DoRA", bad, OUT * IN, e);
        g_assert_cmpuint (bad, <=, (gsize) OUT * IN / 1000);
      }
}

/* ---- DoRA and dropout ---- */

/* DoRA's kernels against lt-linear on one layer (in 96, out 40, r 4, B non-zero): the row
 * norms ‖W + s·(AB)ᵀ‖ (lt_linear_dora_norms) over an f32, a bf16 and a packed affine-4 W
 * (≤ 1e-6 relative: f32 tree sums against the CPU's double), the magnitude scaling with a bias
 * and the magnitude gradient Σ dy·z / ‖·‖ (≤ 1e-5 relative to max(1, |ref|)); then adapter
 * dropout: xa = dropout (x)·A from lt_vulkan_dropout + GEMM against lt_linear_forward_train with
 * the same LtDropout (the CPU's mask, p 0.25: equal within f32 summation order, 1e-5), and the
 * backward's accumulate form. */
static void
test_dora_dropout (void)
{
  enum { N = 21, IN = 96, OUT = 40, R = 4 };
  const float sc = 1.5f;
  int64_t shape[2] = { OUT, IN };
  g_autoptr (GError) error = NULL;
  g_autofree float *w = g_new (float, OUT * IN), *norm = g_new (float, OUT);
  g_autofree float *gnorm = g_new (float, OUT), *y = g_new (float, N * OUT);
  g_autofree float *z = g_new (float, N * OUT), *dy = g_new (float, N * OUT);
  g_autofree float *bias = g_new (float, OUT), *ref = g_new (float, N * OUT);
  g_autofree float *got = g_new (float, N * OUT), *dm = g_new (float, OUT);
  g_autofree float *gdm = g_new (float, OUT), *x = g_new (float, N * IN);
  g_autofree float *xa = g_new (float, N * R), *gxa = g_new (float, N * R);
  g_autofree float *scratch = NULL, *acc = g_new (float, N * IN), *gacc = g_new (float, N * IN);
  LtDropout drop = { 0.25f, 0x1234567890abcdefull };
  double e;

  REQUIRE_DEVICE ();
  fill (w, OUT * IN, 600, -0.3, 0.3);
  for (int kind = 0; kind < 3; kind++)
    {
      g_autoptr (LtTensor) t = lt_tensor_new ("w", kind == 1 ? LT_DTYPE_BF16 : LT_DTYPE_F32, 2,
                                              shape);
      LtLinear lin;
      LtVulkanQMatrix qm = { 0 };
      g_autoptr (LtVulkanStream) s = NULL;
      g_autoptr (LtVulkanBuffer) bw = NULL;

      if (kind == 1)
        to_bf16 (t->data, w, OUT * IN);
      else
        memcpy (t->data, w, sizeof (float) * OUT * IN);
      if (kind == 2)
        {
          LtQuantTensor *q = lt_quant_tensor_quantize (w, OUT, IN, LT_QUANT_AFFINE, 4, 32, &error);
          g_assert_no_error (error);
          g_assert_true (lt_vulkan_qmatrix_upload (vk, q, &qm, &error));
          g_assert_true (lt_linear_init_quantized (&lin, "q", q, NULL, &error));
        }
      else
        {
          g_assert_true (lt_linear_init_dense (&lin, "w", t, NULL, &error));
          bw = upload (t->data, kind == 1 ? 2 * OUT * IN : 4 * OUT * IN);
        }
      g_assert_no_error (error);
      g_assert_true (lt_linear_attach_lora (&lin, R, sc, 0.0f, TRUE, 7, &error));
      g_assert_no_error (error);
      fill (lin.lora->b, R * OUT, 601 + kind, -0.2, 0.2);
      fill (lin.lora->m, OUT, 604 + kind, 0.5, 2.0);
      lt_linear_dora_norms (&lin, norm);

      g_autoptr (LtVulkanBuffer) bA = upload (lin.lora->a, sizeof (float) * IN * R);
      g_autoptr (LtVulkanBuffer) bB = upload (lin.lora->b, sizeof (float) * R * OUT);
      g_autoptr (LtVulkanBuffer) bm = upload (lin.lora->m, sizeof (float) * OUT);
      g_autoptr (LtVulkanBuffer) bn = lt_vulkan_buffer_new (vk, sizeof (float) * OUT, &error);
      g_assert_no_error (error);
      s = stream ();
      g_assert_true (lt_vulkan_dora_norm (s, bn, bw, kind == 1 ? LT_KDTYPE_BF16 : LT_KDTYPE_F32,
                                          kind == 2 ? &qm : NULL, bA, bB, R, sc, OUT, IN,
                                          &error));
      g_assert_no_error (error);
      run (s);
      download (bn, gnorm, sizeof (float) * OUT);
      e = max_rel (gnorm, norm, OUT);
      g_test_message ("dora norms (W %s): max rel error %.3g",
                      kind == 0 ? "f32" : kind == 1 ? "bf16" : "affine 4-bit", e);
      g_assert_cmpfloat (e, <=, 1e-6);

      if (kind == 0)
        {
          /* the magnitude: y = z·m/‖·‖ + b, dm = Σ dy·z / ‖·‖ (the CPU's norms) */
          fill (z, N * OUT, 610, -2, 2);
          fill (dy, N * OUT, 611, -1, 1);
          fill (bias, OUT, 612, -0.5, 0.5);
          for (int o = 0; o < OUT; o++)
            {
              double a = 0.0;
              for (int n = 0; n < N; n++)
                {
                  ref[n * OUT + o] = z[n * OUT + o] * (lin.lora->m[o] / norm[o]) + bias[o];
                  a += (double) dy[n * OUT + o] * z[n * OUT + o];
                }
              dm[o] = 0.25f + (float) (a / norm[o]);
            }
          g_autoptr (LtVulkanBuffer) bz = upload (z, sizeof (float) * N * OUT);
          g_autoptr (LtVulkanBuffer) bdy = upload (dy, sizeof (float) * N * OUT);
          g_autoptr (LtVulkanBuffer) bb = upload (bias, sizeof (float) * OUT);
          g_autoptr (LtVulkanBuffer) bnc = upload (norm, sizeof (float) * OUT);
          g_autoptr (LtVulkanBuffer) bdm = NULL;
          g_autoptr (LtVulkanBuffer) by = lt_vulkan_buffer_new (vk, 4 * N * OUT, &error);
          for (int o = 0; o < OUT; o++)
            gdm[o] = 0.25f;
          bdm = upload (gdm, sizeof (float) * OUT);
          g_clear_pointer (&s, lt_vulkan_stream_free);
          s = stream ();
          g_assert_true (lt_vulkan_dora_scale (s, by, bz, bm, bnc, bb, N, OUT, &error));
          g_assert_true (lt_vulkan_dora_dm (s, bdm, bdy, bz, bnc, N, OUT, TRUE, &error));
          g_assert_no_error (error);
          run (s);
          download (by, got, sizeof (float) * N * OUT);
          download (bdm, gdm, sizeof (float) * OUT);
          e = max_rel (got, ref, N * OUT);
          g_test_message ("dora scale: max rel error %.3g; dm %.3g", e, max_rel (gdm, dm, OUT));
          g_assert_cmpfloat (e, <=, 1e-6);
          g_assert_cmpfloat (max_rel (gdm, dm, OUT), <=, 1e-5);

          /* dropout: xa = dropout (x)·A, the CPU's mask */
          gsize sf = lt_linear_train_scratch_floats (&lin, N);
          scratch = g_new (float, sf);
          lin.lora->dropout = drop.p;
          g_clear_pointer (&lin.lora->m, g_free); /* plain LoRA */
          fill (x, N * IN, 613, -1, 1);
          lt_linear_forward_train (&lin, x, N, y, xa, &drop, scratch, sf);
          fill (acc, N * IN, 614, -1, 1);
          memcpy (gacc, acc, sizeof (float) * N * IN);
          g_autoptr (LtVulkanBuffer) bx = upload (x, sizeof (float) * N * IN);
          g_autoptr (LtVulkanBuffer) bacc = upload (acc, sizeof (float) * N * IN);
          g_autoptr (LtVulkanBuffer) bxd = lt_vulkan_buffer_new (vk, 4 * N * IN, &error);
          g_autoptr (LtVulkanBuffer) bxa = lt_vulkan_buffer_new (vk, 4 * N * R, &error);
          g_assert_no_error (error);
          LtVulkanMatrix mxd = { bxd, 0, IN, LT_KDTYPE_F32 }, ma = { bA, 0, R, LT_KDTYPE_F32 };
          LtVulkanMatrix mxa = { bxa, 0, R, LT_KDTYPE_F32 };
          g_clear_pointer (&s, lt_vulkan_stream_free);
          s = stream ();
          g_assert_true (lt_vulkan_dropout (s, bxd, bx, N * IN, drop.p, drop.seed, FALSE,
                                            &error));
          g_assert_true (lt_vulkan_gemm (s, LT_NO_TRANS, LT_NO_TRANS, N, R, IN, 1.0f, &mxd, &ma,
                                         0.0f, &mxa, LT_COMPUTE_F32, &error));
          g_assert_true (lt_vulkan_dropout (s, bacc, bx, N * IN, drop.p, drop.seed, TRUE,
                                            &error));
          g_assert_no_error (error);
          run (s);
          download (bxa, gxa, sizeof (float) * N * R);
          download (bacc, gacc, sizeof (float) * N * IN);
          e = max_rel (gxa, xa, N * R);
          /* the accumulate form: acc + dropout (x), the kept ones x·keep */
          {
            g_autofree float *xd = g_new (float, N * IN);
            gsize kept = 0;
            download (bxd, xd, sizeof (float) * N * IN);
            for (int i = 0; i < N * IN; i++)
              {
                kept += xd[i] != 0.0f;
                g_assert_cmpfloat (gacc[i], ==, acc[i] + xd[i]);
              }
            g_test_message ("dropout p %.2f: %" G_GSIZE_FORMAT " of %d kept; xa against "
                            "lt_linear_forward_train %.3g", drop.p, kept, N * IN, e);
            g_assert_cmpuint (kept, >, N * IN / 2);
            g_assert_cmpuint (kept, <, N * IN);
          }
          g_assert_cmpfloat (e, <=, 1e-5);
        }
      lt_linear_clear (&lin);
      lt_vulkan_qmatrix_clear (&qm);
    }
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  vulkan_test_open ();
  g_test_add_func ("/vulkan-step/block-forward", test_block_forward);
  g_test_add_func ("/vulkan-step/lora-step", test_lora_step);
  g_test_add_func ("/vulkan-step/gemm-q", test_gemm_q);
  g_test_add_func ("/vulkan-step/qat-weight", test_qat_weight);
  g_test_add_func ("/vulkan-step/dora-dropout", test_dora_dropout);
  status = g_test_run ();
  vulkan_test_close ();
  return status;
}
