// SPDX-License-Identifier: GPL-3.0-or-later
// make-mlx-quant-fixtures: reference outputs of real MLX's mx::quantize (CPU) for
// tests/core/test-mlx-quant.c. Writes tests/data/mlx-quant/{f32,bf16,f16}.safetensors.
//
// Build against MLX's C++ library (built from source, see tests/tools/README.md) and run from
// the repository root:
//
//   g++ -std=c++20 -O1 tests/tools/make-mlx-quant-fixtures.cpp -I/tmp/mlx -I/tmp/mlx/build \
//     /tmp/mlx/build/libmlx.a -llapacke -llapack -lopenblas -lpthread -ldl \
//     -o /tmp/make-mlx-quant-fixtures && /tmp/make-mlx-quant-fixtures tests/data/mlx-quant
//
// Inputs are made here (splitmix64 + Box-Muller in double, rounded to f32, then converted to
// bf16/f16 by MLX's astype), so they do not depend on MLX's random module. Every file holds
//   affine.w                         input (16, 256) in the file's dtype
//   affine.b<B>.g<G>.{weight,scales,biases}  mx::quantize (affine.w, G, B, "affine"),
//                                    B in 2 3 4 5 6 8, G in 32 64 128
//   mxfp4.w                          input (128, 256) in the file's dtype
//   mxfp4.{weight,scales}            mx::quantize (mxfp4.w, 32, 4, "mxfp4")
// plus metadata "generator" and "mlx_version". The arrays are MLX's; the file is written in
// the layout of the reference safetensors writer (entries sorted by dtype alignment, then
// name; __metadata__ first; header padded to 8 bytes), which mx::save_safetensors does not
// follow, so that test-safetensors' read-and-rewrite check holds for these files too.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "mlx/mlx.h"

namespace mx = mlx::core;

static uint64_t rng_state = 0x1a7e2026ULL;

static uint64_t
splitmix64 ()
{
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double
uniform01 ()
{
  return (double) (splitmix64 () >> 11) * 0x1.0p-53;
}

static double
normal ()
{
  double u1 = uniform01 (), u2 = uniform01 ();
  if (u1 < 1e-300)
    u1 = 1e-300;
  return std::sqrt (-2.0 * std::log (u1)) * std::cos (2.0 * M_PI * u2);
}

// One row of `cols` values; `kind` picks the distribution. Group-level features (all-zero,
// constant, one-signed, outliers, MXFP4 boundary maxima) are applied per 32 values so that
// every group size sees them.
static void
fill_row (float *row, int cols, int kind)
{
  for (int c = 0; c < cols; c++)
    {
      double v;
      switch (kind % 8)
        {
        case 0: v = 0.02 * normal (); break;                      // typical weights
        case 1: v = 2.0 * uniform01 () - 1.0; break;              // uniform [-1, 1)
        case 2: v = 0.05 * normal () * std::exp (normal ()); break; // heavy tails
        case 3: v = 1e-6 * normal (); break;                      // tiny values
        case 4: v = 0.01 * normal () + 0.03; break;               // mostly positive
        case 5: v = -std::fabs (0.1 * normal ()); break;          // all negative
        case 6: v = 3.0 * normal (); break;                       // large
        default: v = 1e-3 * normal (); break;                     // small
        }
      row[c] = (float) v;
    }
  for (int g = 0; g < cols / 32; g++)
    {
      float *p = row + g * 32;
      int f = (int) (splitmix64 () % 8);
      if (kind % 3 == 0 && g == 1)
        for (int j = 0; j < 32; j++)
          p[j] = 0.0f; // all-zero group
      else if (f == 0)
        p[splitmix64 () % 32] *= 40.0f; // one outlier
      else if (f == 1)
        {
          float c = p[0];
          for (int j = 0; j < 32; j++)
            p[j] = c; // constant group
        }
      else if (f == 2 || f == 3)
        {
          // MXFP4 boundary: max|w|/6 = 2^(k + 1/2 + d), where rounding log2 in bf16/f16
          // versus f32 can pick different exponents
          int k = (int) (splitmix64 () % 12) - 8;
          double d = ((double) (splitmix64 () % 2001) - 1000.0) * 1e-5;
          double amax = 6.0 * std::exp2 (k + 0.5 + d);
          double m = 0.0;
          for (int j = 0; j < 32; j++)
            m = std::fmax (m, std::fabs ((double) p[j]));
          for (int j = 0; j < 32; j++)
            p[j] = m > 0.0 ? (float) (p[j] / m * amax * 0.999) : 0.0f;
          p[splitmix64 () % 32] = (float) ((splitmix64 () & 1) ? amax : -amax);
        }
    }
}

static std::vector<float>
make_input (int rows, int cols)
{
  std::vector<float> w ((size_t) rows * cols);
  for (int r = 0; r < rows; r++)
    fill_row (w.data () + (size_t) r * cols, cols, r);
  return w;
}

struct DtypeInfo
{
  const char *name;
  int rank; // the Rust writer's alignment order
};

static DtypeInfo
dtype_info (mx::Dtype d)
{
  if (d == mx::float32)
    return { "F32", 17 };
  if (d == mx::uint32)
    return { "U32", 16 };
  if (d == mx::bfloat16)
    return { "BF16", 14 };
  if (d == mx::float16)
    return { "F16", 13 };
  if (d == mx::uint8)
    return { "U8", 4 };
  std::fprintf (stderr, "unexpected dtype\n");
  std::exit (1);
}

// The arrays written as the reference safetensors library writes them (names are plain ASCII,
// metadata values too: no JSON escaping needed).
static void
save (const std::string &path, std::map<std::string, mx::array> &arrays,
      const std::map<std::string, std::string> &metadata)
{
  std::vector<std::string> names;
  for (auto &kv : arrays)
    {
      kv.second = mx::contiguous (kv.second);
      mx::eval (kv.second);
      names.push_back (kv.first);
    }
  std::sort (names.begin (), names.end (), [&] (const std::string &a, const std::string &b) {
    int ra = dtype_info (arrays.at (a).dtype ()).rank;
    int rb = dtype_info (arrays.at (b).dtype ()).rank;
    return ra != rb ? ra > rb : a < b;
  });
  std::string h = "{\"__metadata__\":{";
  bool first = true;
  for (auto &kv : metadata) // std::map: keys sorted
    {
      h += (first ? "\"" : ",\"") + kv.first + "\":\"" + kv.second + "\"";
      first = false;
    }
  h += "}";
  uint64_t off = 0;
  for (auto &n : names)
    {
      const mx::array &a = arrays.at (n);
      h += ",\"" + n + "\":{\"dtype\":\"" + dtype_info (a.dtype ()).name + "\",\"shape\":[";
      for (size_t d = 0; d < a.shape ().size (); d++)
        h += (d ? "," : "") + std::to_string (a.shape ()[d]);
      h += "],\"data_offsets\":[" + std::to_string (off) + "," + std::to_string (off + a.nbytes ())
           + "]}";
      off += a.nbytes ();
    }
  h += "}";
  while (h.size () % 8)
    h += " ";
  FILE *f = std::fopen (path.c_str (), "wb");
  if (!f)
    {
      std::perror (path.c_str ());
      std::exit (1);
    }
  uint64_t hl = h.size ();
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char) (hl >> (8 * i));
  std::fwrite (len, 1, 8, f);
  std::fwrite (h.data (), 1, h.size (), f);
  for (auto &n : names)
    {
      const mx::array &a = arrays.at (n);
      std::fwrite (a.data<uint8_t> (), 1, a.nbytes (), f);
    }
  if (std::fclose (f) != 0)
    {
      std::perror (path.c_str ());
      std::exit (1);
    }
}

int
main (int argc, char **argv)
{
  std::string dir = argc > 1 ? argv[1] : "tests/data/mlx-quant";
  mx::set_default_device (mx::Device::cpu);

  std::vector<float> wa = make_input (16, 256);
  std::vector<float> wm = make_input (128, 256);
  const struct
  {
    const char *name;
    mx::Dtype dtype;
  } dts[] = { { "f32", mx::float32 }, { "bf16", mx::bfloat16 }, { "f16", mx::float16 } };
  const int bits_list[] = { 2, 3, 4, 5, 6, 8 };
  const int groups[] = { 32, 64, 128 };

  for (const auto &dt : dts)
    {
      std::map<std::string, mx::array> out;
      mx::array a = mx::astype (mx::array (wa.data (), mx::Shape{ 16, 256 }, mx::float32),
                                dt.dtype);
      mx::array m = mx::astype (mx::array (wm.data (), mx::Shape{ 128, 256 }, mx::float32),
                                dt.dtype);
      mx::eval (a, m);
      out.insert ({ "affine.w", a });
      out.insert ({ "mxfp4.w", m });
      for (int b : bits_list)
        for (int g : groups)
          {
            auto q = mx::quantize (a, g, b, "affine");
            mx::eval (q);
            std::string p = "affine.b" + std::to_string (b) + ".g" + std::to_string (g);
            out.insert ({ p + ".weight", q[0] });
            out.insert ({ p + ".scales", q[1] });
            out.insert ({ p + ".biases", q[2] });
          }
      auto q = mx::quantize (m, 32, 4, "mxfp4");
      mx::eval (q);
      out.insert ({ "mxfp4.weight", q[0] });
      out.insert ({ "mxfp4.scales", q[1] });
      std::string path = dir + "/" + dt.name + ".safetensors";
      save (path, out, { { "generator", "tests/tools/make-mlx-quant-fixtures.cpp" },
                         { "mlx_version", mx::version () } });
      std::printf ("%s: %zu tensors\n", path.c_str (), out.size ());
    }
  return 0;
}
