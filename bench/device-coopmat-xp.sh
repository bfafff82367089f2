#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The tensor-core GEMM's measurement variants on a GPU machine (issue 17: the GEMM runs at
# 100-170 TFLOP/s against the 540 its multiply-adds reach from registers), from a bundle of
# bench/device-bundle.sh unpacked at BUNDLE, run from the source tree's root:
#   - bench-vulkan --coopmat-xp: each LATHE_VULKAN_COOPMAT_XP variant's kernel time at the 1B
#     products after a warm-up (shaders/meson.build lists the variants: 1, 2, 3, 5 leave a
#     part out and give wrong results — where the time goes; 4, 6-10 are other tiles and
#     feeds), with the driver's register counts (LATHE_VULKAN_PIPELINE_STATS=1);
#   - bench-vulkan --check with variant 8 (its rows against the CPU reference);
#   - the 1B step with today's tile, variant 8 (B as stored) and variant 9 (packed operands),
#     twice each, interleaved; then variant 8's per-kernel profile.
# Writes OUT_DIR/summary.txt and OUT_DIR/r.tar.xz (every output in full).
#
#   bench/device-coopmat-xp.sh /tmp/b "$OUT"
set -u
b=${1:?usage: bench/device-coopmat-xp.sh BUNDLE_DIR OUT_DIR}
out=${2:?usage: bench/device-coopmat-xp.sh BUNDLE_DIR OUT_DIR}
r=$out/r
mkdir -p "$r"
LATHE_VULKAN_PIPELINE_STATS=1 timeout 200 "$b/run.sh" bench-vulkan --coopmat-xp 0 20 \
  "0 8 9 10 1 2 3 5 0 8 9" > "$r/xp.txt" 2>&1
LATHE_VULKAN_COOPMAT_XP=8 timeout 100 "$b/run.sh" bench-vulkan --check 0 5 > "$r/check8.txt" 2>&1
echo "rc $?" >> "$r/check8.txt"
for c in 0:b 8:b 9:0 0:b 8:b 9:0; do
  x=${c%:*}; d=${c#*:}
  printf 'XP %s, operands as stored %s: ' "$x" "$d" >> "$r/step.txt"
  LATHE_VULKAN_COOPMAT_DIRECT=$d LATHE_VULKAN_COOPMAT_XP=$x timeout 60 "$b/run.sh" bench-vulkan \
    --step --shape 1b --seq 2048 --reps 3 2>&1 | grep -E '^step:' >> "$r/step.txt" \
    || echo failed >> "$r/step.txt"
done
LATHE_VULKAN_COOPMAT_XP=8 LATHE_VULKAN_PROFILE=1 LATHE_VULKAN_PIPELINE_STATS=1 timeout 60 \
  "$b/run.sh" bench-vulkan --step --shape 1b --seq 2048 --reps 2 > "$r/prof8.txt" 2>&1
tar -C "$out" -cJf "$out/r.tar.xz" r
{
  grep -v '^gemm\|^coopmat\|^attention' "$r/xp.txt" | head -40
  grep -E 'coopmat-(brow-|bcol-)?(xp[0-9]+-)?128-n16 \[' "$r/xp.txt"
  grep -E 'MISMATCH|^rc |all rows' "$r/check8.txt"
  cat "$r/step.txt"
  sed -n '/^kernel /,/^(all timed/p' "$r/prof8.txt" | head -24
} > "$out/summary.txt"
rm -rf "$r"
cat "$out/summary.txt"
