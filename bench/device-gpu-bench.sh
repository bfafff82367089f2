#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The issue 17 measurements on a GPU machine, from a bundle of bench/device-bundle.sh unpacked
# at BUNDLE (run from the source tree's root): the Vulkan devices, the 1B-shape step with the
# thin LoRA kernel on and off and with the tensor cores' operands packed or read as stored
# (LATHE_VULKAN_COOPMAT_DIRECT; bench-vulkan --step), then `lathe train --device vulkan` beside
# PyTorch-CUDA at each shape (bench/torch-cuda-anchor.py; its PyTorch rows skip without torch,
# peft or CUDA). SHAPES overrides the anchor's shapes (default "smollm 1b"), STEP_SHAPE and
# STEP_SEQ the step's (1b, 2048; `tiny` and 256 on lavapipe); PROFILE=1 also prints the step's
# per-kernel GPU time.
#
#   bench/device-gpu-bench.sh /tmp/b
set -uo pipefail
b=${1:?usage: bench/device-gpu-bench.sh BUNDLE_DIR}
work=${WORK:-/tmp/lathe-gpu-bench}
mkdir -p "$work"
"$b/run.sh" lathe devices || exit 1
shape=${STEP_SHAPE:-1b}
seq=${STEP_SEQ:-2048}
for thin in 1 0; do
  printf 'thin kernel %s: ' "$([ $thin = 1 ] && echo on || echo off)"
  LATHE_VULKAN_GEMM_THIN=$thin "$b/run.sh" bench-vulkan --step --shape "$shape" --seq "$seq" \
    --reps 3 2>&1 | grep -E '^step:' || echo "failed"
done
# the tensor-core GEMM's operands packed (0), B as stored (b, the default), A and B (ab)
for direct in 0 b ab; do
  printf 'operands as stored %s: ' "$direct"
  LATHE_VULKAN_COOPMAT_DIRECT=$direct "$b/run.sh" bench-vulkan --step --shape "$shape" \
    --seq "$seq" --reps 3 2>&1 | grep -E '^step:' || echo "failed"
done
if [ "${PROFILE:-0}" = 1 ]; then
  LATHE_VULKAN_PROFILE=1 "$b/run.sh" bench-vulkan --step --shape "$shape" --seq "$seq" --reps 2 \
    2>&1 | sed -n '/^kernel /,/^(all timed/p'
fi
args=()
for s in ${SHAPES:-smollm 1b}; do args+=(--shape "$s"); done
python3 bench/torch-cuda-anchor.py --lathe "$b/run.sh lathe" "${args[@]}" --steps 3 --work "$work"
