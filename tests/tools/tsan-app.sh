#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
#
# tsan-app.sh: the app's worker tests (train job, export job, chat, Hub download, ...) and the
# core tests with threads, once, under ThreadSanitizer. Not part of `make test` or CI: it builds
# GLib and Lathe with TSan first (about 4 + 4 minutes on two cores), and the run takes 2-3.
#
# Why GLib is rebuilt: GLib 2.74's GMutex, GCond, GOnce and GAsyncQueue are futex-based, so TSan
# sees neither their locks nor the handoffs built on them (g_idle_add, GTask's return to the
# main context, the thread pools) unless GLib itself is instrumented: its futex locks are made
# of atomics, which TSan does see once they are compiled with -fsanitize=thread. Debian's
# libglib binds its own calls directly (-Bsymbolic), so an LD_PRELOAD interposer cannot work.
# This is what GLib's own CI does. GTK, libadwaita, json-glib, libsoup, pango, librsvg, Mesa and
# OpenBLAS stay Debian's, uninstrumented: TSan sees their intercepted calls (malloc, memset,
# strcmp, pthread_*) but not their own loads and stores.
#
#   1. Downloads the source of the installed libglib2.0-0 (Debian 12's 2.74.6) with apt-get
#      source, through a private apt configuration (deb-src lines for bookworm, -updates and
#      -security) kept in the cache: /etc/apt is not touched and root is not needed. Needs
#      dpkg-dev (dpkg-source), meson, ninja, gcc. Builds it with -Db_sanitize=thread into
#      $LATHE_TSAN_CACHE/prefix (once; later runs reuse it).
#   2. Builds and runs a canary against that GLib: one plain race, which TSan must report, and
#      handoffs through g_idle_add, a GTask and a GMutex/GCond, which it must not. If the canary
#      fails, the run stops: TSan would be either blind or drowning in false positives.
#   3. Builds Lathe with -Db_sanitize=thread in $LATHE_TSAN_BUILD (default _tsan) against that
#      GLib (PKG_CONFIG_PATH; meson puts the prefix in the binaries' rpath).
#   4. Runs the tests under Xvfb, each process writing its reports to
#      $LATHE_TSAN_BUILD/tsan-logs/<date>/tsan.<pid>, with the suppressions of tsan.supp (next
#      to this script; only reports wholly inside uninstrumented libraries, each explained).
#   5. Prints a summary: tests run and their results, reports found (total and distinct, with
#      the Lathe frames of each access), suppressions matched. Exits 0 only when every test
#      passed and no report was left.
#
# Environment knobs: LATHE_TSAN_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/lathe-tsan),
# LATHE_TSAN_BUILD (default <repo>/_tsan), LATHE_TSAN_JOBS (default 2), LATHE_TSAN_TESTS (meson
# test names, space-separated; default below).
#
# Run settings and why:
#   - G_SLICE=always-malloc: GSlice's magazines race by design on their contention counters
#     (gslice.c) and hide heap reuse from TSan; GLib >= 2.76 has no GSlice at all.
#   - OMP_THREAD_LIMIT=1: libgomp is not TSan-aware (its barriers are futex spins in an
#     uninstrumented library), so every OpenMP parallel loop would be reported as racing with the
#     next one. With one OpenMP thread, each GOMP_parallel runs on the thread that called it and
#     the kernels' own accesses stay visible against the app's threads; races between OpenMP
#     threads inside a kernel are not looked for here (that needs clang's libomp with its
#     Archer tool). OpenBLAS's pthreads pool is uninstrumented and invisible to TSan either way.
#   - TSAN_OPTIONS exitcode=0: a test's result is its own; reports are counted from the logs.
#
# Usage (from anywhere): tests/tools/tsan-app.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${LATHE_TSAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lathe-tsan}
BUILD=${LATHE_TSAN_BUILD:-$ROOT/_tsan}
JOBS=${LATHE_TSAN_JOBS:-2}
SUPP=$ROOT/tests/tools/tsan.supp
TESTS=${LATHE_TSAN_TESTS:-"test-train-job test-export-dialog test-export-method test-chat-page
  test-hub-dialog test-runs-page test-train-diverge test-dataset-preview test-train-page
  test-train-layout test-run-settings test-templates test-application test-chart
  test-dbus-action test-dbus-quit test-trainer test-hub test-chat-template test-train-cli"}
NICE=(nice -n 10)
PREFIX=$CACHE/prefix
T0=$(date +%s)

say () { printf '== %s\n' "$*"; }

# ---- 1. GLib with -fsanitize=thread ----------------------------------------------------------
if [ ! -e "$PREFIX/lib/pkgconfig/glib-2.0.pc" ]; then
  say "building GLib with ThreadSanitizer into $PREFIX"
  version=$(dpkg-query -W -f='${source:Version}' libglib2.0-0)
  apt_dir=$CACHE/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$CACHE/src"
  cat > "$apt_dir/sources.list" <<'EOF'
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
            -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
            -o "APT::Sandbox::User=$(id -un)")
  apt-get "${apt_opts[@]}" -q update >/dev/null
  rm -rf "$CACHE/src"/*
  (cd "$CACHE/src" && { apt-get "${apt_opts[@]}" -q source "glib2.0=$version" >/dev/null ||
     { echo "glib2.0 $version is no longer in the archive: using bookworm's newest" >&2;
       apt-get "${apt_opts[@]}" -q source glib2.0 >/dev/null; }; })
  src=$(find "$CACHE/src" -maxdepth 1 -type d -name 'glib2.0-*' | head -n 1)
  rm -rf "$CACHE/build"
  "${NICE[@]}" meson setup "$CACHE/build" "$src" --prefix="$PREFIX" --libdir=lib \
    -Dbuildtype=debugoptimized -Db_sanitize=thread -Dtests=false -Dinstalled_tests=false \
    -Dman=false -Dgtk_doc=false -Dlibmount=disabled -Dselinux=disabled -Dsysprof=disabled \
    -Dlibelf=disabled -Ddtrace=false -Dsystemtap=false -Dwrap_mode=nodownload >/dev/null
  if ! "${NICE[@]}" ninja -C "$CACHE/build" -j "$JOBS" > "$CACHE/build.log" 2>&1; then
    tail -n 30 "$CACHE/build.log"
    exit 2
  fi
  ninja -C "$CACHE/build" install >/dev/null
fi
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
# No LD_LIBRARY_PATH: the TSan GLib is found through the binaries' rpath, so that uninstrumented
# programs the tests start (dbus-daemon, gdbus, ...) keep Debian's GLib.
say "GLib $(pkg-config --modversion glib-2.0) with TSan: $PREFIX"

export G_SLICE=always-malloc
export OMP_THREAD_LIMIT=1
tsan_opts () {
  echo "exitcode=0 halt_on_error=0 second_deadlock_stack=1 report_signal_unsafe=0" \
       "history_size=4 print_suppressions=1 suppressions=$SUPP log_path=$1"
}

# ---- 2. The canary ---------------------------------------------------------------------------
canary_dir=$CACHE/canary
rm -rf "$canary_dir" && mkdir -p "$canary_dir"
cat > "$canary_dir/canary.c" <<'EOF'
#include <gio/gio.h>

int canary_racy; /* both threads write it with no edge between them: must be reported */
static int handed_idle;  /* worker -> main through g_idle_add */
static int handed_task;  /* GTask's worker -> its callback on the main context */
static int handed_mutex; /* under a GMutex, waited for with a GCond */
static GMutex lock;
static GCond cond;
static gboolean ready;
static GMainLoop *loop;
static int pending = 2;

static gboolean
idle_cb (gpointer data)
{
  handed_idle++;
  if (--pending == 0)
    g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static gpointer
worker (gpointer data)
{
  canary_racy = 1;
  handed_idle = 1;
  g_idle_add (idle_cb, NULL);
  g_mutex_lock (&lock);
  handed_mutex = 1;
  ready = TRUE;
  g_cond_signal (&cond);
  g_mutex_unlock (&lock);
  return NULL;
}

static void
task_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  handed_task = 1;
  g_task_return_boolean (task, TRUE);
}

static void
task_done (GObject *source, GAsyncResult *result, gpointer data)
{
  handed_task++;
  if (--pending == 0)
    g_main_loop_quit (loop);
}

int
main (void)
{
  GThread *thread;
  GTask *task;

  loop = g_main_loop_new (NULL, FALSE);
  thread = g_thread_new ("canary", worker, NULL);
  canary_racy = 2;
  task = g_task_new (NULL, NULL, task_done, NULL);
  g_task_run_in_thread (task, task_thread);
  g_object_unref (task);
  g_mutex_lock (&lock);
  while (!ready)
    g_cond_wait (&cond, &lock);
  handed_mutex++;
  g_mutex_unlock (&lock);
  g_main_loop_run (loop);
  g_thread_join (thread);
  g_print ("canary: %d %d %d %d\n", canary_racy, handed_idle, handed_task, handed_mutex);
  return handed_idle == 2 && handed_task == 2 && handed_mutex == 2 ? 0 : 1;
}
EOF
# shellcheck disable=SC2046
gcc -g -O1 -fsanitize=thread "$canary_dir/canary.c" -o "$canary_dir/canary" \
  $(pkg-config --cflags --libs gio-2.0) -Wl,-rpath,"$PREFIX/lib"
TSAN_OPTIONS=$(tsan_opts "$canary_dir/tsan") "$canary_dir/canary"
canary_reports=$(cat "$canary_dir"/tsan.* 2>/dev/null | grep -c 'WARNING: ThreadSanitizer' || true)
if [ "$canary_reports" != 1 ] || ! grep -q "Location is global 'canary_racy'" "$canary_dir"/tsan.*
then
  echo "canary: expected exactly 1 report, on canary_racy; got $canary_reports (logs in $canary_dir)"
  exit 2
fi
say "canary: the plain race reported (1), the g_idle_add / GTask / GMutex handoffs not (0)"

# ---- 3. Lathe with -fsanitize=thread ---------------------------------------------------------
if [ ! -e "$BUILD/build.ninja" ]; then
  "${NICE[@]}" meson setup "$BUILD" "$ROOT" -Db_sanitize=thread >/dev/null
fi
if ! grep -q "$PREFIX/lib" "$BUILD/build.ninja"; then
  echo "$BUILD was configured against another GLib: remove it and run again" >&2
  exit 2
fi
say "building Lathe with TSan in $BUILD"
if ! "${NICE[@]}" ninja -C "$BUILD" -j "$JOBS" > "$BUILD/tsan-build.log" 2>&1; then
  tail -n 30 "$BUILD/tsan-build.log"
  exit 2
fi

# ---- 4. The tests ----------------------------------------------------------------------------
logs=$BUILD/tsan-logs/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$logs"
say "running $(echo "$TESTS" | wc -w) tests under TSan; reports in $logs"
T1=$(date +%s)
set +e
# shellcheck disable=SC2086
TSAN_OPTIONS=$(tsan_opts "$logs/tsan") "${NICE[@]}" \
  xvfb-run -a -s "-screen 0 1280x1024x24" \
  meson test -C "$BUILD" --no-rebuild --timeout-multiplier 10 --num-processes "$JOBS" $TESTS \
  > "$logs/meson-test.txt" 2>&1
cp "$BUILD/meson-logs/testlog.json" "$logs/" 2>/dev/null
# A test that failed (some assert timings, such as test-train-job's main-loop heartbeat, which
# TSan's slowdown and a loaded machine can break, and a failed assertion skips the rest of the
# program's cases) runs once more, alone: its reports are counted from both runs.
failed=$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] not in ("OK", "SKIP"):
        print(t["name"].split(" / ")[-1])' "$logs/testlog.json" 2>/dev/null | tr '\n' ' ')
if [ -n "$failed" ]; then
  say "running again, alone: $failed"
  # shellcheck disable=SC2086
  TSAN_OPTIONS=$(tsan_opts "$logs/tsan") "${NICE[@]}" \
    xvfb-run -a -s "-screen 0 1280x1024x24" \
    meson test -C "$BUILD" --no-rebuild --timeout-multiplier 10 --num-processes 1 $failed \
    > "$logs/meson-test-again.txt" 2>&1
  cp "$BUILD/meson-logs/testlog.json" "$logs/testlog-again.json"
fi
set -e
T2=$(date +%s)

# ---- 5. Summary ------------------------------------------------------------------------------
python3 - "$logs" "$ROOT" "$((T2 - T1))" "$((T2 - T0))" <<'EOF'
import collections, glob, json, os, re, sys

logs, root, run_s, total_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def testlog(name):
    try:
        with open(os.path.join(logs, name)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []
first, again = testlog('testlog.json'), testlog('testlog-again.json')
final = collections.OrderedDict((t['name'], t) for t in first + again)
tests = list(final.values())
results = collections.Counter(t['result'] for t in tests)
print('tests run under TSan: %d (%s) in %d s (whole script %d s)'
      % (len(tests), ', '.join('%s %d' % kv for kv in sorted(results.items())), run_s, total_s))
for t in first:
    if t['result'] not in ('OK', 'SKIP'):
        print('  %s: %s the first time, %s alone' % (t['name'], t['result'],
                                                       final[t['name']]['result']))

frame_re = re.compile(r'^\s+#\d+ (\S+) (\S+) \((.*)\)$')
def frames(block):
    out = []
    for line in block:
        m = frame_re.match(line)
        if m and 'libtsan' not in m.group(3):
            out.append((m.group(1), m.group(2), m.group(3)))
    return out

reports, matched = [], collections.Counter()
processes = 0
for path in sorted(glob.glob(os.path.join(logs, 'tsan.*'))):
    processes += 1
    text = open(path, errors='replace').read()
    for m in re.finditer(r'^(\d+) (\S+:.*)$', text, re.M):
        matched[m.group(2)] += int(m.group(1))
    for chunk in text.split('==================')[1:]:
        lines = chunk.strip('\n').split('\n')
        if not lines or 'WARNING: ThreadSanitizer' not in lines[0]:
            continue
        kind = re.sub(r' \(pid=\d+\)', '', lines[0].split('ThreadSanitizer: ')[1])
        # The two accesses: the first block, and the "Previous ..." block.
        blocks, cur = [], None
        for line in lines[1:]:
            if re.match(r'^  (Read|Write|Atomic|Previous|Mutex|Location|Thread|SUMMARY)', line) \
               or re.match(r'^  \S', line):
                cur = [] if re.match(r'^  (Read|Write|Atomic|Previous)', line) else None
                if cur is not None:
                    blocks.append(cur)
                continue
            if cur is not None:
                cur.append(line)
        stacks = [frames(b) for b in blocks[:2]]
        key = (kind,) + tuple(sorted(s[0][0] if s else '?' for s in stacks))
        # Lathe's frames: those of the test program or the lathe CLI, not of a shared library.
        ours = [[f[:2] for f in s if not re.match(r'lib\S*\.so', f[2])][:3] for s in stacks]
        reports.append((key, os.path.basename(path), ours))

distinct = collections.OrderedDict()
for key, path, ours in reports:
    distinct.setdefault(key, [0, path, ours])[0] += 1
print('processes that wrote a report or matched a suppression: %d' % processes)
print('TSan reports left: %d (%d distinct)' % (len(reports), len(distinct)))
for key, (n, path, ours) in distinct.items():
    print('  %dx %s: %s  [%s]' % (n, key[0], ' / '.join(key[1:]), path))
    for i, s in enumerate(ours):
        print('      access %d: %s' % (i + 1, ', '.join('%s %s' % (fn, loc.replace('../', ''))
                                                     for fn, loc in s) or '(no Lathe frame)'))
print('suppressions matched (tsan.supp): %s'
      % (', '.join('%s x%d' % (k, v) for k, v in matched.most_common()) or 'none'))
sys.exit(0 if not reports and tests and all(t['result'] in ('OK', 'SKIP') for t in tests) else 1)
EOF
