#!/bin/sh
# SPDX-License-Identifier: GPL-3.0-or-later
# Writes data/screenshots/train.png: the Train tab of the real app, 1100×800, light style,
# headless. Usage: tests/tools/screenshot.sh [BUILD_DIR] (default _build; build it first).
set -e
cd "$(dirname "$0")/../.."
build="${1:-_build}"
mkdir -p data/screenshots
GSETTINGS_SCHEMA_DIR="$build/data" GSETTINGS_BACKEND=memory GTK_A11Y=none GSK_RENDERER=cairo \
  LC_ALL=C.UTF-8 \
  xvfb-run -a -s "-screen 0 1280x1024x24" \
  "$build/tests/app/lathe-screenshot" data/screenshots/train.png
