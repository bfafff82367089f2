#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""lathe-gtk without its compiled GSettings schema (an empty GSETTINGS_SCHEMA_DIR and no
installed schemas): one line on stderr saying how to run it, exit status 1, no signal."""
import os
import subprocess
import sys
import tempfile

binary = sys.argv[1]
with tempfile.TemporaryDirectory() as empty:
    env = dict(os.environ)
    env['GSETTINGS_SCHEMA_DIR'] = empty
    env['XDG_DATA_DIRS'] = empty  # no installed schemas either
    env['LC_ALL'] = 'C.UTF-8'
    env.pop('DISPLAY', None)
    env.pop('WAYLAND_DISPLAY', None)
    proc = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=60)

lines = [l for l in proc.stderr.splitlines() if l.strip()]
checks = [
    ('exit status 1 (got %d)' % proc.returncode, proc.returncode == 1),
    ('one line on stderr (got %d: %r)' % (len(lines), proc.stderr), len(lines) == 1),
    ('the line names make run', bool(lines) and 'make run' in lines[0]),
    ('the line names meson devenv', bool(lines) and 'meson devenv -C _build' in lines[0]),
]
print('1..%d' % len(checks))
failed = 0
for i, (name, ok) in enumerate(checks, 1):
    print('%s %d - %s' % ('ok' if ok else 'not ok', i, name))
    failed += not ok
sys.exit(1 if failed else 0)
