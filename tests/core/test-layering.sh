#!/bin/sh
# The arrows of ARCHITECTURE.md §1 point down: src/core never includes GTK or libadwaita,
# src/core/kernels never includes GLib nor a header of src/core above it, and inside src/core
# no module includes the header of a module above it. Prints TAP.
top="$1"
core="$top/src/core"
echo "1..4"
bad=$(grep -rnE '#\s*include\s*[<"](gtk/|adwaita|gdk/|libadwaita)' "$core" 2>/dev/null)
if [ -z "$bad" ]; then echo "ok 1 - src/core does not include GTK or libadwaita"
else echo "not ok 1 - src/core includes GTK or libadwaita"; echo "$bad" | sed 's/^/# /'; fi
bad=$(grep -rnE '#\s*include\s*[<"](glib|gio/|json-glib|lt-error\.h|gobject/)' "$core/kernels" 2>/dev/null)
if [ -z "$bad" ]; then echo "ok 2 - src/core/kernels does not include GLib"
else echo "not ok 2 - src/core/kernels includes GLib"; echo "$bad" | sed 's/^/# /'; fi

# 3: a kernel includes only kernel headers (and config.h)
bad=""
for f in "$core"/kernels/*.c "$core"/kernels/*.h; do
  [ -e "$f" ] || continue
  incs=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
  for h in $incs; do
    [ "$h" = config.h ] && continue
    [ -e "$core/kernels/$h" ] || bad="$bad${f#$top/}: includes \"$h\" from outside src/core/kernels
"
  done
done
if [ -z "$bad" ]; then echo "ok 3 - src/core/kernels includes only its own headers"
else
  echo "not ok 3 - src/core/kernels includes a header above it"
  printf '%s' "$bad" | sed 's/^/# /'
fi

# 4: the layers inside src/core, lowest first (a module may include the headers of its own
# layer and of the layers below; "a b" share a layer). lt-model.c including lt-model-train.h
# is the arrow this test was written against.
layers="lt-error
lt-tensor lt-config lt-tokenizer lt-chat-template
lt-safetensors lt-gguf lt-quant lt-qat
lt-linear lt-adapter lt-run lt-dataset
lt-model
lt-model-train
lt-preference
lt-trainer"
rank_of () {
  printf '%s\n' "$layers" |
    awk -v m="$1" '{ for (i = 1; i <= NF; i++) if ($i == m) { print NR; exit } }'
}
bad=""
for mod in $(printf '%s\n' "$layers"); do
  r=$(rank_of "$mod")
  for f in "$core/$mod.c" "$core/$mod.h"; do
    [ -e "$f" ] || continue
    incs=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(lt-[^"]*\)\.h".*/\1/p' "$f")
    for h in $incs; do
      hr=$(rank_of "$h")
      [ -n "$hr" ] || continue
      [ "$hr" -le "$r" ] || bad="$bad${f#$top/}: includes $h.h, a layer above $mod
"
    done
  done
done
if [ -z "$bad" ]; then echo "ok 4 - no module of src/core includes a header of a layer above it"
else
  echo "not ok 4 - a module of src/core includes a header of a layer above it"
  printf '%s' "$bad" | sed 's/^/# /'
fi
