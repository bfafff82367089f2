#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The tensor-core GEMM's large tile on a GPU machine (issue 17), from a bundle of
# bench/device-bundle.sh unpacked at BUNDLE, run from the source tree's root:
#   - bench-vulkan --coopmat-xp: the large tile's kernel time at the 1B products after a
#     warm-up, today's (0) beside the 128 x 128 tile it replaced (4) and the ablations 1, 2, 3,
#     5 (they leave out the global loads, the per-slice fragment loads, the barrier, the
#     multiply-adds: wrong results, where the time goes; shaders/meson.build), with the
#     driver's register counts (LATHE_VULKAN_PIPELINE_STATS=1);
#   - bench-vulkan --check (every product against the CPU reference);
#   - the 1B step with today's tile and with variant 4, twice each, interleaved; then today's
#     per-kernel profile.
# Writes OUT_DIR/summary.txt and OUT_DIR/r.tar.xz (every output in full).
#
#   bench/device-coopmat-xp.sh /tmp/b "$OUT"
set -u
b=${1:?usage: bench/device-coopmat-xp.sh BUNDLE_DIR OUT_DIR}
out=${2:?usage: bench/device-coopmat-xp.sh BUNDLE_DIR OUT_DIR}
r=$out/r
mkdir -p "$r"
LATHE_VULKAN_PIPELINE_STATS=1 timeout 200 "$b/run.sh" bench-vulkan --coopmat-xp 0 20 \
  "0 4 1 2 3 5 0 4" > "$r/xp.txt" 2>&1
timeout 100 "$b/run.sh" bench-vulkan --check 0 5 > "$r/check.txt" 2>&1
echo "rc $?" >> "$r/check.txt"
for x in 0 4 0 4; do
  printf 'XP %s: ' "$x" >> "$r/step.txt"
  LATHE_VULKAN_COOPMAT_XP=$x timeout 60 "$b/run.sh" bench-vulkan --step --shape 1b --seq 2048 \
    --reps 3 2>&1 | grep -E '^step:' >> "$r/step.txt" || echo failed >> "$r/step.txt"
done
LATHE_VULKAN_PROFILE=1 LATHE_VULKAN_PIPELINE_STATS=1 timeout 60 \
  "$b/run.sh" bench-vulkan --step --shape 1b --seq 2048 --reps 2 > "$r/prof.txt" 2>&1
tar -C "$out" -cJf "$out/r.tar.xz" r
{
  grep -v '^gemm\|^coopmat\|^attention' "$r/xp.txt" | head -40
  grep -E 'coopmat-(brow-|bcol-)?(xp[0-9]+-)?128-n16 \[' "$r/xp.txt"
  grep -E 'MISMATCH|^rc |all rows' "$r/check.txt"
  cat "$r/step.txt"
  sed -n '/^kernel /,/^(all timed/p' "$r/prof.txt" | head -24
} > "$out/summary.txt"
rm -rf "$r"
cat "$out/summary.txt"
