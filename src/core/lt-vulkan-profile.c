/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-vulkan-profile: per-dispatch GPU time from timestamp queries, added up per kernel (the
 * design is in lt-vulkan-profile.h; the snapshot API in lt-vulkan.h). */
#include "config.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lt-vulkan-profile.h"

static void
row_free (LtVulkanProfileRow *row)
{
  g_free (row->kernel);
  g_free (row->note);
  g_free (row);
}

void
lt_vulkan_profile_snapshot_free (LtVulkanProfileSnapshot *snap)
{
  if (snap == NULL)
    return;
  g_ptr_array_unref (snap->rows);
  g_free (snap);
}

static LtVulkanProfileSnapshot *
snapshot_new (void)
{
  LtVulkanProfileSnapshot *snap = g_new0 (LtVulkanProfileSnapshot, 1);
  snap->rows = g_ptr_array_new_with_free_func ((GDestroyNotify) row_free);
  return snap;
}

static int
by_total_desc (gconstpointer a, gconstpointer b)
{
  const LtVulkanProfileRow *x = *(LtVulkanProfileRow *const *) a;
  const LtVulkanProfileRow *y = *(LtVulkanProfileRow *const *) b;
  return x->total_ms < y->total_ms ? 1 : x->total_ms > y->total_ms ? -1 : 0;
}

static void
append_row (GString *out, const char *name, guint64 count, double ms, double flops,
            double all_ms, int n_steps)
{
  char gf[32] = "-";
  if (flops > 0.0 && ms > 0.0)
    g_snprintf (gf, sizeof gf, "%.1f", flops / (ms * 1e-3) / 1e9);
  g_string_append_printf (out, "%-44s %8.1f %10.3f %10.4f %6.1f%% %10s\n", name,
                          (double) count / n_steps, ms / n_steps,
                          count > 0 ? ms / (double) count : 0.0,
                          all_ms > 0.0 ? 100.0 * ms / all_ms : 0.0, gf);
}

char *
lt_vulkan_profile_format (const LtVulkanProfileSnapshot *snap, int n_steps)
{
  GString *out = g_string_new (NULL);
  g_autoptr (GHashTable) by_kernel = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr (GPtrArray) kernels = g_ptr_array_new_with_free_func ((GDestroyNotify) row_free);
  double rows_ms = 0.0;

  n_steps = MAX (n_steps, 1);
  for (guint i = 0; i < snap->rows->len; i++)
    {
      const LtVulkanProfileRow *r = g_ptr_array_index (snap->rows, i);
      LtVulkanProfileRow *k = g_hash_table_lookup (by_kernel, r->kernel);
      if (k == NULL)
        {
          k = g_new0 (LtVulkanProfileRow, 1);
          k->kernel = g_strdup (r->kernel);
          g_ptr_array_add (kernels, k);
          g_hash_table_insert (by_kernel, k->kernel, k);
        }
      k->count += r->count;
      k->total_ms += r->total_ms;
      k->flops += r->flops;
      rows_ms += r->total_ms;
    }
  g_ptr_array_sort (kernels, by_total_desc);
  g_string_append_printf (out, "GPU time per step: %.3f ms in %.1f submits, %.1f dispatches "
                          "(%" G_GUINT64_FORMAT " untimed); over %d step(s)\n",
                          snap->total_ms / n_steps, (double) snap->n_submits / n_steps,
                          (double) snap->n_dispatches / n_steps, snap->n_untimed, n_steps);
  g_string_append_printf (out, "%-44s %8s %10s %10s %7s %10s\n", "kernel", "calls", "ms",
                          "ms/call", "share", "GFLOP/s");
  for (guint i = 0; i < kernels->len; i++)
    {
      const LtVulkanProfileRow *k = g_ptr_array_index (kernels, i);
      append_row (out, k->kernel, k->count, k->total_ms, k->flops, snap->total_ms, n_steps);
    }
  append_row (out, "(all timed dispatches)", snap->n_dispatches - snap->n_untimed, rows_ms, 0.0,
              snap->total_ms, n_steps);
  g_string_append (out, "\nper call site (kernel + what its entry point noted), longest first\n");
  for (guint i = 0; i < snap->rows->len; i++)
    {
      const LtVulkanProfileRow *r = g_ptr_array_index (snap->rows, i);
      g_autofree char *name = r->note != NULL ? g_strdup_printf ("%s %s", r->kernel, r->note)
                                              : g_strdup (r->kernel);
      append_row (out, name, r->count, r->total_ms, r->flops, snap->total_ms, n_steps);
    }
  return g_string_free (out, FALSE);
}

#ifdef LT_HAVE_VULKAN

#define QUERIES_PER_POOL 4096u

struct _LtVulkanProfile
{
  VkDevice device;
  gboolean timestamps; /* the queue has them */
  guint64 valid_mask;
  double period_ns;
  PFN_vkCreateQueryPool create_pool;
  PFN_vkDestroyQueryPool destroy_pool;
  PFN_vkCmdResetQueryPool cmd_reset;
  PFN_vkCmdWriteTimestamp cmd_timestamp;
  PFN_vkGetQueryPoolResults get_results;

  GMutex lock; /* table, totals, paused */
  GHashTable *table; /* "kernel\037note" → LtVulkanProfileRow * */
  guint64 n_submits, n_dispatches, n_untimed;
  double total_ms;
  gboolean paused; /* lt_vulkan_profile_set_paused: results dropped, not added */
};

typedef struct
{
  LtVulkanKernel kernel;
  const char *note; /* interned, or NULL */
  double flops;
  gboolean timed;
} Record;

struct _LtVulkanProfileStream
{
  LtVulkanProfile *p;
  GArray *pools;    /* VkQueryPool */
  guint n_queries;  /* written in this recording: the start + one per timed dispatch */
  GArray *records;  /* Record, one per dispatch of this recording */
  const char *note; /* for the next dispatch (interned) */
  double flops;
};

LtVulkanProfile *
lt_vulkan_profile_new (PFN_vkGetInstanceProcAddr get_proc, VkInstance instance,
                       VkPhysicalDevice phys, guint32 family, VkDevice device,
                       float timestamp_period)
{
  const char *env = g_getenv ("LATHE_VULKAN_PROFILE");
  PFN_vkGetPhysicalDeviceQueueFamilyProperties qfp;
  LtVulkanProfile *p;
  guint32 n = 0;

  if (env == NULL || strcmp (env, "1") != 0)
    return NULL;
  p = g_new0 (LtVulkanProfile, 1);
  p->device = device;
  p->period_ns = timestamp_period;
  g_mutex_init (&p->lock);
  p->table = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) row_free);
#define LOAD(field, T, name) p->field = (T) get_proc (instance, name)
  LOAD (create_pool, PFN_vkCreateQueryPool, "vkCreateQueryPool");
  LOAD (destroy_pool, PFN_vkDestroyQueryPool, "vkDestroyQueryPool");
  LOAD (cmd_reset, PFN_vkCmdResetQueryPool, "vkCmdResetQueryPool");
  LOAD (cmd_timestamp, PFN_vkCmdWriteTimestamp, "vkCmdWriteTimestamp");
  LOAD (get_results, PFN_vkGetQueryPoolResults, "vkGetQueryPoolResults");
#undef LOAD
  qfp = (PFN_vkGetPhysicalDeviceQueueFamilyProperties)
    get_proc (instance, "vkGetPhysicalDeviceQueueFamilyProperties");
  if (qfp != NULL)
    {
      qfp (phys, &n, NULL);
      g_autofree VkQueueFamilyProperties *q = g_new0 (VkQueueFamilyProperties, MAX (n, 1));
      qfp (phys, &n, q);
      if (family < n && q[family].timestampValidBits > 0)
        {
          guint bits = q[family].timestampValidBits;
          p->valid_mask = bits >= 64 ? G_MAXUINT64 : (((guint64) 1 << bits) - 1);
          p->timestamps = p->create_pool != NULL && p->destroy_pool != NULL
                          && p->cmd_reset != NULL && p->cmd_timestamp != NULL
                          && p->get_results != NULL && timestamp_period > 0.0f;
        }
    }
  return p;
}

void
lt_vulkan_profile_free (LtVulkanProfile *p)
{
  if (p == NULL)
    return;
  g_hash_table_unref (p->table);
  g_mutex_clear (&p->lock);
  g_free (p);
}

LtVulkanProfileStream *
lt_vulkan_profile_stream_new (LtVulkanProfile *p)
{
  LtVulkanProfileStream *ps;

  if (p == NULL || !p->timestamps)
    return NULL;
  ps = g_new0 (LtVulkanProfileStream, 1);
  ps->p = p;
  ps->pools = g_array_new (FALSE, FALSE, sizeof (VkQueryPool));
  ps->records = g_array_new (FALSE, FALSE, sizeof (Record));
  return ps;
}

void
lt_vulkan_profile_stream_free (LtVulkanProfileStream *ps)
{
  if (ps == NULL)
    return;
  for (guint i = 0; i < ps->pools->len; i++)
    ps->p->destroy_pool (ps->p->device, g_array_index (ps->pools, VkQueryPool, i), NULL);
  g_array_unref (ps->pools);
  g_array_unref (ps->records);
  g_free (ps);
}

void
lt_vulkan_profile_stream_reset (LtVulkanProfileStream *ps)
{
  ps->n_queries = 0;
  g_array_set_size (ps->records, 0);
  ps->note = NULL;
  ps->flops = 0.0;
}

/* Writes the next query of the recording at the bottom of the pipe; FALSE when no pool. */
static gboolean
write_timestamp (LtVulkanProfileStream *ps, VkCommandBuffer cmd)
{
  guint pool = ps->n_queries / QUERIES_PER_POOL, q = ps->n_queries % QUERIES_PER_POOL;

  if (pool == ps->pools->len)
    {
      VkQueryPoolCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
        .queryType = VK_QUERY_TYPE_TIMESTAMP,
        .queryCount = QUERIES_PER_POOL,
      };
      VkQueryPool qp;
      if (ps->p->create_pool (ps->p->device, &ci, NULL, &qp) != VK_SUCCESS)
        return FALSE;
      g_array_append_val (ps->pools, qp);
    }
  VkQueryPool qp = g_array_index (ps->pools, VkQueryPool, pool);
  if (q == 0) /* a pool's first use in this recording */
    ps->p->cmd_reset (cmd, qp, 0, QUERIES_PER_POOL);
  ps->p->cmd_timestamp (cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qp, q);
  ps->n_queries++;
  return TRUE;
}

void
lt_vulkan_profile_before (LtVulkanProfileStream *ps, VkCommandBuffer cmd)
{
  if (ps->n_queries == 0 && ps->records->len == 0)
    write_timestamp (ps, cmd); /* the start; a failure shows as every dispatch untimed */
}

void
lt_vulkan_profile_after (LtVulkanProfileStream *ps, VkCommandBuffer cmd, LtVulkanKernel kernel)
{
  Record r = { kernel, ps->note, ps->flops, FALSE };

  r.timed = ps->n_queries > 0 && write_timestamp (ps, cmd);
  g_array_append_val (ps->records, r);
  ps->note = NULL;
  ps->flops = 0.0;
}

void
lt_vulkan_profile_collect (LtVulkanProfileStream *ps)
{
  LtVulkanProfile *p = ps->p;
  g_autofree guint64 *ts = NULL;
  guint n = ps->n_queries, at = 1;
  guint64 untimed = 0;
  gboolean ok = TRUE;

  if (ps->records->len == 0)
    return;
  ts = g_new0 (guint64, MAX (n, 1));
  for (guint first = 0; first < n && ok; first += QUERIES_PER_POOL)
    {
      guint count = MIN (QUERIES_PER_POOL, n - first);
      VkQueryPool qp = g_array_index (ps->pools, VkQueryPool, first / QUERIES_PER_POOL);
      ok = p->get_results (p->device, qp, 0, count, count * sizeof (guint64), ts + first,
                           sizeof (guint64), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT)
           == VK_SUCCESS;
    }
  g_mutex_lock (&p->lock);
  if (p->paused)
    {
      g_mutex_unlock (&p->lock);
      lt_vulkan_profile_stream_reset (ps);
      return;
    }
  p->n_submits++;
  p->n_dispatches += ps->records->len;
  if (ok && n > 1)
    p->total_ms += (double) ((ts[n - 1] - ts[0]) & p->valid_mask) * p->period_ns * 1e-6;
  for (guint i = 0; i < ps->records->len; i++)
    {
      const Record *r = &g_array_index (ps->records, Record, i);
      if (!ok || !r->timed)
        {
          untimed++;
          continue;
        }
      double ms = (double) ((ts[at] - ts[at - 1]) & p->valid_mask) * p->period_ns * 1e-6;
      at++;
      g_autofree char *key = g_strdup_printf ("%s\037%s", lt_vulkan_kernels[r->kernel].name,
                                              r->note != NULL ? r->note : "");
      LtVulkanProfileRow *row = g_hash_table_lookup (p->table, key);
      if (row == NULL)
        {
          row = g_new0 (LtVulkanProfileRow, 1);
          row->kernel = g_strdup (lt_vulkan_kernels[r->kernel].name);
          row->note = g_strdup (r->note);
          g_hash_table_insert (p->table, g_steal_pointer (&key), row);
        }
      row->count++;
      row->total_ms += ms;
      row->flops += r->flops;
    }
  p->n_untimed += untimed;
  g_mutex_unlock (&p->lock);
  lt_vulkan_profile_stream_reset (ps);
}

void
lt_vulkan_stream_note (LtVulkanStream *s, double flops, const char *format, ...)
{
  LtVulkanProfileStream *ps = lt_vulkan_stream_get_profile (s);
  g_autofree char *note = NULL;
  va_list ap;

  if (ps == NULL)
    return;
  va_start (ap, format);
  note = g_strdup_vprintf (format, ap);
  va_end (ap);
  ps->note = g_intern_string (note);
  ps->flops = flops;
}

gboolean
lt_vulkan_profile_is_on (LtVulkan *vk, const char **why)
{
  LtVulkanProfile *p = lt_vulkan_get_profile (vk);
  const char *reason = NULL;

  if (p == NULL)
    reason = "not asked for (LATHE_VULKAN_PROFILE=1 when the device is opened)";
  else if (!p->timestamps)
    reason = "the device's compute queue has no timestamps (timestampValidBits 0)";
  if (why != NULL)
    *why = reason;
  return reason == NULL;
}

LtVulkanProfileSnapshot *
lt_vulkan_profile_snapshot (LtVulkan *vk)
{
  LtVulkanProfile *p = lt_vulkan_get_profile (vk);
  LtVulkanProfileSnapshot *snap = snapshot_new ();
  GHashTableIter it;
  gpointer value;

  if (p == NULL)
    return snap;
  g_mutex_lock (&p->lock);
  snap->n_submits = p->n_submits;
  snap->n_dispatches = p->n_dispatches;
  snap->n_untimed = p->n_untimed;
  snap->total_ms = p->total_ms;
  g_hash_table_iter_init (&it, p->table);
  while (g_hash_table_iter_next (&it, NULL, &value))
    {
      const LtVulkanProfileRow *r = value;
      LtVulkanProfileRow *c = g_new0 (LtVulkanProfileRow, 1);
      *c = *r;
      c->kernel = g_strdup (r->kernel);
      c->note = g_strdup (r->note);
      g_ptr_array_add (snap->rows, c);
    }
  g_mutex_unlock (&p->lock);
  g_ptr_array_sort (snap->rows, by_total_desc);
  return snap;
}

void
lt_vulkan_profile_reset (LtVulkan *vk)
{
  LtVulkanProfile *p = lt_vulkan_get_profile (vk);

  if (p == NULL)
    return;
  g_mutex_lock (&p->lock);
  g_hash_table_remove_all (p->table);
  p->n_submits = p->n_dispatches = p->n_untimed = 0;
  p->total_ms = 0.0;
  g_mutex_unlock (&p->lock);
}

void
lt_vulkan_profile_set_paused (LtVulkan *vk, gboolean paused)
{
  LtVulkanProfile *p = lt_vulkan_get_profile (vk);

  if (p == NULL)
    return;
  g_mutex_lock (&p->lock);
  p->paused = paused;
  g_mutex_unlock (&p->lock);
}

#else /* !LT_HAVE_VULKAN */

void
lt_vulkan_stream_note (LtVulkanStream *s, double flops, const char *format, ...)
{
}

gboolean
lt_vulkan_profile_is_on (LtVulkan *vk, const char **why)
{
  if (why != NULL)
    *why = "Lathe was built without the Vulkan backend";
  return FALSE;
}

LtVulkanProfileSnapshot *
lt_vulkan_profile_snapshot (LtVulkan *vk)
{
  return snapshot_new ();
}

void
lt_vulkan_profile_reset (LtVulkan *vk)
{
}

void
lt_vulkan_profile_set_paused (LtVulkan *vk, gboolean paused)
{
}

#endif /* LT_HAVE_VULKAN */
