#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Flatpak manifest parses as JSON and builds the app: app-id io.github.lathe.Lathe,
command lathe-gtk, a GNOME runtime, pinned sources (sha256) and the app last, built by meson."""
import json
import re
import sys

checks = []


def check(ok, what):
    checks.append((bool(ok), what))


with open(sys.argv[1], encoding="utf-8") as f:
    manifest = json.load(f)

check(manifest.get("app-id", manifest.get("id")) == "io.github.lathe.Lathe", "app-id")
check(manifest.get("command") == "lathe-gtk", "command is lathe-gtk")
check(manifest.get("runtime") == "org.gnome.Platform", "runtime org.gnome.Platform")
check(manifest.get("sdk") == "org.gnome.Sdk", "sdk org.gnome.Sdk")
modules = manifest.get("modules", [])
check(len(modules) >= 2, "dependencies and the app are modules")
names = [m.get("name") for m in modules if isinstance(m, dict)]
check("openblas" in [n.lower() for n in names if n], "OpenBLAS is built")
app = modules[-1] if modules else {}
check(app.get("name") == "lathe" and app.get("buildsystem") == "meson",
      "the app comes last, by meson")
for m in modules[:-1]:
    for s in m.get("sources", []):
        if s.get("type") in ("archive", "file"):
            check(s.get("url", "").startswith("https://") and
                  re.fullmatch(r"[0-9a-f]{64}", s.get("sha256", "")),
                  f"{m.get('name')}: pinned url + sha256")

print(f"1..{len(checks)}")
for i, (ok, what) in enumerate(checks, 1):
    print(f"{'ok' if ok else 'not ok'} {i} {what}")
sys.exit(0 if all(ok for ok, _ in checks) else 1)
