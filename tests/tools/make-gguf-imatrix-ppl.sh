#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Perplexity of GGUF exports of TinyStories-656K with and without an importance matrix
# (issue 13 item 5). The imatrix is computed by Lathe on tests/data/stories/train.jsonl. Two
# held-out texts: A = tests/data/stories/valid.jsonl + tests/data/eval/stories.jsonl (16 real
# stories), B = 80 stories the f32 model samples (temperature 1, seeds 1-80, "Once upon a
# time", 200 tokens): B's perplexity measures how far each export is from the f32 model.
#   sh tests/tools/make-gguf-imatrix-ppl.sh [_build/src/cli/lathe] [../shared/models/tinystories-656k]
set -eu
LATHE=${1:-_build/src/cli/lathe}
MODEL=${2:-../shared/models/tinystories-656k}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat tests/data/stories/valid.jsonl tests/data/eval/stories.jsonl > "$W/heldout.jsonl"
for s in $(seq 1 80); do
  "$LATHE" generate --model "$MODEL" --temp 1 --seed $s -n 200 --prompt "Once upon a time" \
    --json 2> /dev/null |
    python3 -c 'import json,sys; print(json.dumps({"text": "Once upon a time" + json.load(sys.stdin)["text"]}))'
done > "$W/sampled.jsonl"
"$LATHE" fuse --model "$MODEL" --gguf-path "$W/unused.gguf" --gguf-type f32 --gguf-imatrix \
  --data tests/data/stories/train.jsonl --gguf-imatrix-out "$W/train.imatrix" -f > /dev/null
ppl () {
  "$LATHE" eval --model "$1" --data "$2" --json 2> /dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % d["ppl"])'
}
printf '%-8s %-10s %-10s %-10s %-10s %s\n' type "A plain" "A imatrix" "B plain" "B imatrix" bytes
for t in f32 q8_0 q5_1 q5_0 q4_1 q4_0 q4_k_m q3_k_m q2_k; do
  "$LATHE" fuse --model "$MODEL" --gguf-path "$W/p.gguf" --gguf-type $t -f > /dev/null
  "$LATHE" fuse --model "$MODEL" --gguf-path "$W/i.gguf" --gguf-type $t \
    --gguf-imatrix-file "$W/train.imatrix" -f > /dev/null
  printf '%-8s %-10s %-10s %-10s %-10s %s\n' $t "$(ppl "$W/p.gguf" "$W/heldout.jsonl")" \
    "$(ppl "$W/i.gguf" "$W/heldout.jsonl")" "$(ppl "$W/p.gguf" "$W/sampled.jsonl")" \
    "$(ppl "$W/i.gguf" "$W/sampled.jsonl")" "$(stat -c %s "$W/i.gguf")"
done
