#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fails when a .c or .ui file under src/app or ui with translatable strings is missing from
po/POTFILES, or when POTFILES names a file that does not exist."""
import pathlib
import re
import sys

src = pathlib.Path(sys.argv[1])
listed = set()
for line in (src / "po" / "POTFILES").read_text().splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
        listed.add(line)

C_MARK = re.compile(r'\b(?:N?C?_|ngettext)\s*\(')
UI_MARK = re.compile(r'translatable="yes"')

problems = []
for path in sorted(list((src / "src" / "app").rglob("*.c")) + list((src / "ui").rglob("*.ui"))):
    rel = path.relative_to(src).as_posix()
    text = path.read_text(encoding="utf-8")
    marked = UI_MARK.search(text) if path.suffix == ".ui" else C_MARK.search(text)
    if marked and rel not in listed:
        problems.append(f"{rel}: has translatable strings but is not in po/POTFILES")

for rel in sorted(listed):
    if not (src / rel).is_file():
        problems.append(f"po/POTFILES: {rel} does not exist")

for p in problems:
    print(p)
print("1..1")
print(("not ok" if problems else "ok") + " 1 POTFILES lists every file with translatable strings")
sys.exit(1 if problems else 0)
