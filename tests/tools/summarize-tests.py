#!/usr/bin/env python3
"""Print the final 'N passed, N failed, N skipped' line from meson's testlog.json.

Counts individual TAP subtests where a test program reports them, so a GTest program with
twelve cases counts twelve; a program that failed to start counts as one failure.

With several logs (`summarize-tests.py LOG [LABEL=LOG ...]`), prints one labelled line per log
and then the total of all of them as the last line. A log that does not exist (its build
failed before any test ran) counts as one failure."""
import json
import os
import re
import sys


def count(path):
    passed = failed = skipped = 0
    if not os.path.exists(path):
        return 0, 1, 0
    for line in open(path, encoding="utf-8"):
        t = json.loads(line)
        result = t.get("result", "")
        out = t.get("stdout", "") or ""
        ok = len(re.findall(r"^ok \d+", out, re.M))
        not_ok = len(re.findall(r"^not ok \d+", out, re.M))
        skip = len(re.findall(r"^ok \d+[^\n]*# SKIP", out, re.M | re.I))
        if ok + not_ok == 0:
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
            continue
        passed += ok - skip
        skipped += skip
        failed += not_ok
        if result not in ("OK", "EXPECTEDFAIL", "SKIP") and not_ok == 0:
            failed += 1  # crashed or timed out after its last reported case
    return passed, failed, skipped


def line(p, f, s):
    return f"{p} passed, {f} failed, {s} skipped"


args = sys.argv[1:]
if len(args) == 1:
    print(line(*count(args[0])))
    sys.exit(0)
total = [0, 0, 0]
for arg in args:
    label, sep, path = arg.partition("=")
    if not sep:
        label, path = arg, arg
    c = count(path)
    note = "" if os.path.exists(path) else " (no test log: the build failed)"
    print(f"{label}: {line(*c)}{note}")
    total = [a + b for a, b in zip(total, c)]
print(line(*total))
