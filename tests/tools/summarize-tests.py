#!/usr/bin/env python3
"""Print the final 'N passed, N failed, N skipped' line from meson's testlog.json.

Counts individual TAP subtests where a test program reports them, so a GTest program with
twelve cases counts twelve; a program that failed to start counts as one failure."""
import json
import re
import sys

passed = failed = skipped = 0
for line in open(sys.argv[1], encoding="utf-8"):
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
print(f"{passed} passed, {failed} failed, {skipped} skipped")
