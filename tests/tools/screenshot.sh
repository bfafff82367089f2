#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Writes data/screenshots/ from the current UI (`make screenshots`): the real app, 1100×800
# (1400×800 mid-run), light style, headless.
#   train.png          the Train tab scrolled to Fine-tune, every row of it visible
#   train-advanced.png the Train tab scrolled to the end of QAT and Advanced (Precision, Device)
#   train-qat.png      the QAT section switched on: affine 4-bit, the grid learned
#   train-running.png  the Train tab mid-run: a real run of the demo model (data/demo), charts
#                      filled from its reports
#   runs.png           the Runs page: two real short runs of the demo, one compared with the
#                      other
#   export.png         the Export dialog after a verified export of the first of those runs
#                      (MLX 4-bit, GGUF Q8_0 with an Ollama Modelfile, PEFT)
#   chat.png           the Chat page comparing the demo model without and with that run's
#                      adapter (the demo has no chat template: plain completion)
#   chat-models.png    the Chat page's model menu open: the demo model as a recent folder, the
#                      two runs and the first one's fused export
#   train-diverged.png the Train tab after a run at a learning rate of 1e30 stopped on a NaN
#                      loss: what happened and what to try
#   preview.png        the dataset preview of the demo's SFT data at a max length of 40
#   train-gpu.png      the Train tab mid-run with the training step on the first Vulkan device
#                      (Mesa's lavapipe where there is no GPU), the Device read-out naming it;
#                      skipped where `lathe devices` lists none
#   train-gpu-memory.png the Train form's end with that device chosen for the demo model: the
#                      Device row and the memory verdict with the GPU's estimate
# Usage: tests/tools/screenshot.sh [BUILD_DIR] (default _build; build it first).
set -e
cd "$(dirname "$0")/../.."
build="${1:-_build}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p data/screenshots

shot() {
  GSETTINGS_SCHEMA_DIR="$build/data" GSETTINGS_BACKEND=memory GTK_A11Y=none GSK_RENDERER=cairo \
    LC_ALL=C.UTF-8 \
    xvfb-run -a -s "-screen 0 1600x1024x24" \
    "$build/tests/app/lathe-screenshot" "$@"
}

# Fine-tune at the top of the form: Trainer to Last layers.
LATHE_SHOT_SCROLL=250 shot data/screenshots/train.png
LATHE_SHOT_SCROLL=1700 shot data/screenshots/train-advanced.png
LATHE_SHOT_QAT=1 LATHE_SHOT_SCROLL=1150 shot data/screenshots/train-qat.png

# Two short real runs for the history (different learning rates).
for lr in 2e-3 5e-4; do
  "$build/src/cli/lathe" train --model data/demo/model --data data/demo/sft --rank 8 \
    --batch-size 4 --max-seq-length 128 --learning-rate "$lr" --iters 40 \
    --steps-per-report 2 --steps-per-eval 10 --save-every 0 \
    --adapter-path "$work/runs/demo-sft-lr$lr" > /dev/null
done
shot data/screenshots/runs.png --runs "$work/runs"
shot data/screenshots/export.png --export "$work/runs/demo-sft-lr2e-3"
shot data/screenshots/chat.png --chat "$work/runs/demo-sft-lr2e-3"
shot data/screenshots/chat-models.png --chat-models "$work/runs"
shot data/screenshots/preview.png --preview
shot data/screenshots/train-running.png --running "$work/live"
LATHE_SHOT_LR=1e30 shot data/screenshots/train-diverged.png --running "$work/diverged"
if "$build/src/cli/lathe" devices 2>/dev/null | grep -q '^vulkan:0'; then
  LATHE_SHOT_DEVICE=vulkan shot data/screenshots/train-gpu.png --running "$work/gpu"
  LATHE_SHOT_DEVICE=vulkan LATHE_SHOT_SCROLL=2400 shot data/screenshots/train-gpu-memory.png
fi
