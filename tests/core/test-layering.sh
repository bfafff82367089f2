#!/bin/sh
# The arrows of ARCHITECTURE.md §1 point down: src/core never includes GTK or libadwaita, and
# src/core/kernels never includes GLib. Prints TAP.
top="$1"
echo "1..2"
bad=$(grep -rnE '#\s*include\s*[<"](gtk/|adwaita|gdk/|libadwaita)' "$top/src/core" 2>/dev/null)
if [ -z "$bad" ]; then echo "ok 1 - src/core does not include GTK or libadwaita"
else echo "not ok 1 - src/core includes GTK or libadwaita"; echo "$bad" | sed 's/^/# /'; fi
bad=$(grep -rnE '#\s*include\s*[<"](glib|gio/|json-glib|lt-error\.h|gobject/)' "$top/src/core/kernels" 2>/dev/null)
if [ -z "$bad" ]; then echo "ok 2 - src/core/kernels does not include GLib"
else echo "not ok 2 - src/core/kernels includes GLib"; echo "$bad" | sed 's/^/# /'; fi
