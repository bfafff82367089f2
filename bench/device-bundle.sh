#!/bin/bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Packs Lathe's Vulkan benchmarks for a machine that has a GPU but not Debian 12's libraries
# (the issue 17 figures: an NVIDIA H100 with only a driver and Python there): the CLI and the
# GPU benches and tests from a build, every shared library `ldd` lists (glibc's loader too) and
# the Vulkan loader, into OUT.tar.xz with a run.sh that starts each program through the
# bundled loader. Nothing is installed here; the archive is not committed.
#
#   bench/device-bundle.sh [BUILD_DIR] [OUT]      (defaults: _build, _devbundle/b)
#
# On the GPU machine, from a copy of the source tree (bench/ and tests/data are read):
#   tar -C /tmp -xJf _devbundle/b.tar.xz
#   /tmp/b/run.sh lathe devices                   lists the GPUs the bundle's loader finds
#   bench/device-gpu-bench.sh /tmp/b              the 1B step and PyTorch beside it
# Where the driver's own Vulkan/GL libraries are missing there (an NVIDIA driver without
# libvulkan1 / libglvnd), unpacking Debian 12's libvulkan1, libglvnd0, libgl1, libglx0,
# libegl1, libgles2 and libopengl0 .debs into / and running ldconfig made the ICD load; set
# VK_DRIVER_FILES to the driver's ICD json if the loader does not find it.
set -euo pipefail
build=${1:-_build}
out=${2:-_devbundle/b}
name=$(basename "$out")
[ -x "$build/src/cli/lathe" ] || { echo "device-bundle: no $build/src/cli/lathe (build first)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out/lib"
bins="$build/src/cli/lathe $build/bench/bench-vulkan $build/bench/bench-train-step"
for t in test-vulkan test-vulkan-train test-vulkan-infer test-vulkan-pref test-vulkan-attention-cm; do
  [ -x "$build/tests/core/$t" ] && bins="$bins $build/tests/core/$t"
done
for bin in $bins; do
  cp "$bin" "$out/"
  ldd "$bin" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }' | while read -r lib; do
    [ -f "$lib" ] && cp -L "$lib" "$out/lib/"
  done
done
# opened at run time, not linked: the Vulkan loader (and oneDNN's and OpenMP's helpers), and
# the X libraries NVIDIA's ICD (libGLX_nvidia) links: the machine's own copies may need a newer
# glibc than the bundled one (seen: libX11 wanting GLIBC_2.38, and then no Vulkan driver)
for lib in libvulkan.so.1 libstdc++.so.6 libgcc_s.so.1 libX11.so.6 libXext.so.6 libxcb.so.1 \
  libXau.so.6 libXdmcp.so.6 libbsd.so.0 libmd.so.0 libGLdispatch.so.0; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ && !p { print $NF; p = 1 }')
  [ -n "$path" ] && cp -L "$path" "$out/lib/"
done
cat > "$out/run.sh" <<'EOS'
#!/bin/bash
# run.sh PROGRAM ARGS…: PROGRAM from this folder through the bundled glibc loader
d=$(dirname "$(readlink -f "$0")")
prog=$1
shift
LD_LIBRARY_PATH=$d/lib exec "$d/lib/ld-linux-x86-64.so.2" --library-path "$d/lib" "$d/$prog" "$@"
EOS
chmod +x "$out/run.sh"
tar -C "$(dirname "$out")" -cJf "$out.tar.xz" "$name"
rm -rf "$out"
echo "device-bundle: $out.tar.xz ($(du -h "$out.tar.xz" | cut -f1))"
