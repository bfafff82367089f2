// SPDX-License-Identifier: GPL-3.0-or-later
// Workgroup reductions over 256 threads (local_size_x = 256) through shared memory. Every
// thread calls them in uniform control flow and gets the result; red[] is free again after.
shared float red[256];

float
lt_wg_sum (float v)
{
  const uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier ();
  for (uint s = 128u; s > 0u; s >>= 1)
    {
      if (t < s)
        red[t] += red[t + s];
      barrier ();
    }
  const float r = red[0];
  barrier ();
  return r;
}

float
lt_wg_max (float v)
{
  const uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier ();
  for (uint s = 128u; s > 0u; s >>= 1)
    {
      if (t < s)
        red[t] = max (red[t], red[t + s]);
      barrier ();
    }
  const float r = red[0];
  barrier ();
  return r;
}
