// SPDX-License-Identifier: GPL-3.0-or-later
// One AdamW step over n parameters, the update of lt-optimizer.c (PyTorch's AdamW) in f32:
// w ← w − lr·wd·w;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
// w ← w − (lr / bc1)·m / (√v / bc2_sqrt + ε), with bc1 = 1 − β1ᵗ and bc2_sqrt = √(1 − β2ᵗ)
// computed on the host in double. w, g, m, v (n). Grid-stride loop.
#version 450
layout (local_size_x = 256) in;

layout (std430, set = 0, binding = 0) buffer Wb { float w[]; };
layout (std430, set = 0, binding = 1) readonly buffer Gb { float g[]; };
layout (std430, set = 0, binding = 2) buffer Mb { float m[]; };
layout (std430, set = 0, binding = 3) buffer Vb { float v[]; };

layout (push_constant) uniform Params
{
  uint n;
  float lr, beta1, beta2, eps, wd, step_size, bc2_sqrt;
} p;

void
main ()
{
  const uint stride = gl_NumWorkGroups.x * 256u;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride)
    {
      const float gi = g[i];
      float wi = w[i];
      wi -= p.lr * p.wd * wi;
      const float mi = p.beta1 * m[i] + (1.0 - p.beta1) * gi;
      const float vi = p.beta2 * v[i] + (1.0 - p.beta2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      wi -= p.step_size * mi / (sqrt (vi) / p.bc2_sqrt + p.eps);
      w[i] = wi;
    }
}
