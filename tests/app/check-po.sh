#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Usage: check-po.sh SOURCE_DIR
# Every translation in po/LINGUAS is complete: msgfmt --check passes with 0 untranslated and
# 0 fuzzy, and every string that xgettext finds in po/POTFILES has a translation (msgcmp).
set -e
src="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -v '^#' "$src/po/POTFILES" | grep -v '^$' > "$tmp/files"
(cd "$src" && xgettext --from-code=UTF-8 --add-comments --package-name=lathe \
  --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 \
  --keyword=g_dngettext:2,3 --keyword=ngettext:1,2 \
  -f "$tmp/files" -o "$tmp/lathe.pot")

status=0
for lang in $(grep -v '^#' "$src/po/LINGUAS"); do
  po="$src/po/$lang.po"
  stats=$(LC_ALL=C msgfmt --check --statistics -o /dev/null "$po" 2>&1) || status=1
  echo "$lang: $stats"
  case "$stats" in
    *untranslated*|*fuzzy*) echo "$lang: incomplete translation"; status=1 ;;
  esac
  if ! LC_ALL=C msgcmp "$po" "$tmp/lathe.pot"; then
    echo "$lang: strings of the sources are missing from $po"
    status=1
  fi
done
exit $status
