#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Perplexity of GGUF exports of TinyStories-656K with and without an importance matrix
# (issue 13 item 5). The imatrix is computed by Lathe on tests/data/stories/train.jsonl; the
# held-out text is tests/data/stories/valid.jsonl + tests/data/eval/stories.jsonl.
#   sh tests/tools/make-gguf-imatrix-ppl.sh [_build/src/cli/lathe] [../shared/models/tinystories-656k]
set -eu
LATHE=${1:-_build/src/cli/lathe}
MODEL=${2:-../shared/models/tinystories-656k}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat tests/data/stories/valid.jsonl tests/data/eval/stories.jsonl > "$W/heldout.jsonl"
"$LATHE" fuse --model "$MODEL" --gguf-path "$W/unused.gguf" --gguf-type f32 --gguf-imatrix \
  --data tests/data/stories/train.jsonl --gguf-imatrix-out "$W/train.imatrix" -f > /dev/null
ppl () {
  "$LATHE" eval --model "$1" --data "$W/heldout.jsonl" --json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.4f" % d["ppl"], d["tokens"])'
}
printf '%-8s %-18s %-18s %s\n' type "ppl plain (tokens)" "ppl imatrix" bytes
for t in f32 q8_0 q5_1 q5_0 q4_1 q4_0 q4_k_m q3_k_m q2_k; do
  "$LATHE" fuse --model "$MODEL" --gguf-path "$W/p.gguf" --gguf-type $t -f > /dev/null
  "$LATHE" fuse --model "$MODEL" --gguf-path "$W/i.gguf" --gguf-type $t \
    --gguf-imatrix-file "$W/train.imatrix" -f > /dev/null
  printf '%-8s %-18s %-18s %s\n' $t "$(ppl "$W/p.gguf")" "$(ppl "$W/i.gguf")" \
    "$(stat -c %s "$W/i.gguf")"
done
