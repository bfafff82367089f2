#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The register-level attention kernels (attention-*-rg.comp) against the -cm ones on a GPU, from
# a bundle of bench/device-bundle.sh unpacked at BUNDLE (run from the source tree's root): the
# real kernels against the CPU references with -rg forced on (test-vulkan-attention-cm), the
# kernels' ms and TFLOP/s (bench-vulkan --attention), the 1B-shape step interleaved (-cm: RG 0,
# -rg: RG 1, four-subgroup backward: RG 4; bench-vulkan --step, best and mean), then
# `lathe train`'s own account of a step (LATHE_VULKAN_PROFILE=1: the per-kernel table and the
# wall = forward+backward + optimizer + host + between-steps line) on bench/random-llama.py's
# model of STEP_SHAPE. STEP_SHAPE / STEP_SEQ (1b, 2048), ATT_ARGS (bench-vulkan --attention's
# arguments: its 1B layer), RGS ("0 1 4") and TRAIN_RGS ("0 1") override; on lavapipe, with
# LATHE_VULKAN_COOPMAT=emulate for the emulated kernels: STEP_SHAPE=tiny STEP_SEQ=256
# ATT_ARGS="0 128 4 2 64 1" RGS="0 1".
#
#   bench/device-attention-rg.sh /tmp/b
set -uo pipefail
b=${1:?usage: bench/device-attention-rg.sh BUNDLE_DIR}
work=${WORK:-/tmp/lathe-attention-rg}
shape=${STEP_SHAPE:-1b}
seq=${STEP_SEQ:-2048}
rgs=${RGS:-0 1 4}
mkdir -p "$work"
echo "== the real kernels against the CPU (LATHE_VULKAN_ATT_RG=1)"
LATHE_VULKAN_ATT_RG=1 "$b/run.sh" test-vulkan-attention-cm 2>&1 | grep -E '^(not )?ok|skip|ERROR'
for rg in $rgs; do
  echo "== bench-vulkan --attention, LATHE_VULKAN_ATT_RG=$rg"
  LATHE_VULKAN_ATT_RG=$rg "$b/run.sh" bench-vulkan --attention ${ATT_ARGS:-} 2>&1 | tail -5
done
for pass in 1 2; do
  for rg in $rgs; do
    printf 'step %s, LATHE_VULKAN_ATT_RG=%s: ' "$pass" "$rg"
    LATHE_VULKAN_ATT_RG=$rg "$b/run.sh" bench-vulkan --step --shape "$shape" --seq "$seq" \
      --reps 3 2>&1 | grep -E '^step:' || echo "failed"
  done
done
model=$work/$shape-model data=$work/$shape-data
python3 - "$model" "$data" "$shape" <<'PY' || exit 1
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("rl", os.path.join("bench", "random-llama.py"))
rl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rl)
if not os.path.exists(os.path.join(sys.argv[1], "model.safetensors")):
    rl.write_model(sys.argv[1], sys.argv[3])
rl.write_data(sys.argv[2])
PY
for rg in ${TRAIN_RGS:-0 1}; do
  echo "== lathe train, LATHE_VULKAN_ATT_RG=$rg, LATHE_VULKAN_PROFILE=1"
  rm -rf "$work/run"
  LATHE_VULKAN_ATT_RG=$rg LATHE_VULKAN_PROFILE=1 "$b/run.sh" lathe train --model "$model" \
    --data "$data" --adapter-path "$work/run" --device vulkan --compute-dtype bf16 --iters 8 \
    --batch-size 1 --max-seq-length "$seq" --rank 8 --num-layers -1 --steps-per-report 1 \
    --steps-per-eval 0 --save-every 0 2>&1 \
    | awk '/^profile of/ { on = 1 } /^per call site/ { on = 0 } on || /^profile over/'
done
