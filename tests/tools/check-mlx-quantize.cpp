// SPDX-License-Identifier: GPL-3.0-or-later
// check-mlx-quantize: compares a `lathe quantize` output with real MLX's mx::quantize of the
// source weights, byte for byte (every quantized module: packed weight, scales, biases).
//
//   g++ -std=c++20 -O1 tests/tools/check-mlx-quantize.cpp -I/tmp/mlx -I/tmp/mlx/build \
//     /tmp/mlx/build/libmlx.a -llapacke -llapack -lopenblas -lpthread -ldl -o /tmp/check-mlxq
//   lathe quantize --model SRC --out OUT --mode MODE --bits B --group-size G
//   /tmp/check-mlxq SRC/model.safetensors OUT/model.safetensors MODE B G
// Exits 1 when a byte differs.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mlx/mlx.h"

namespace mx = mlx::core;

int
main (int argc, char **argv)
{
  if (argc != 6)
    {
      std::fprintf (stderr, "usage: %s SRC.safetensors OUT.safetensors MODE BITS GROUP\n",
                    argv[0]);
      return 2;
    }
  auto src = mx::load_safetensors (argv[1]).first;
  auto out = mx::load_safetensors (argv[2]).first;
  std::string mode = argv[3];
  int bits = std::atoi (argv[4]), group = std::atoi (argv[5]);
  size_t nw = 0, dw = 0, ns = 0, ds = 0, nt = 0;
  const std::vector<std::string> parts = { ".weight", ".scales", ".biases" };

  for (auto &kv : out)
    {
      const std::string &k = kv.first;
      if (k.size () < 7 || k.substr (k.size () - 7) != ".scales")
        continue;
      std::string p = k.substr (0, k.size () - 7);
      if (src.find (p + ".weight") == src.end ())
        {
          std::printf ("%s: no source weight (tied or renamed), skipped\n", p.c_str ());
          continue;
        }
      auto q = mx::quantize (src.at (p + ".weight"), group, bits, mode);
      mx::eval (q);
      for (size_t i = 0; i < q.size (); i++)
        {
          auto a = q[i], b = out.at (p + parts[i]);
          auto ne = mx::sum (mx::astype (mx::not_equal (mx::view (a, mx::uint8),
                                                        mx::view (b, mx::uint8)),
                                         mx::int32));
          size_t d = (size_t) ne.item<int> ();
          (i == 0 ? nw : ns) += a.nbytes ();
          (i == 0 ? dw : ds) += d;
        }
      nt++;
    }
  std::printf ("%s bits %d group %d: %zu modules; differing bytes: packed weights %zu of %zu, "
               "scales and biases %zu of %zu\n", mode.c_str (), bits, group, nt, dw, nw, ds,
               ns);
  return dw + ds == 0 && nt > 0 ? 0 : 1;
}
