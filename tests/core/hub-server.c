/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The test Hub (hub-server.h). */
#include "config.h"

#include <string.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <libsoup/soup.h>

#include "hub-server.h"



Hub hub;

static char *
git_blob_sha1 (GBytes *data)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA1);
  g_autofree char *head = g_strdup_printf ("blob %zu", g_bytes_get_size (data));

  g_checksum_update (sum, (const guchar *) head, strlen (head) + 1); /* with its NUL */
  g_checksum_update (sum, g_bytes_get_data (data, NULL), g_bytes_get_size (data));
  return g_strdup (g_checksum_get_string (sum));
}

static void
fixture_file_free (FixtureFile *f)
{
  g_free (f->path);
  g_bytes_unref (f->data);
  g_free (f->etag);
  g_free (f);
}

static void
add_file (const char *path, GBytes *data, gboolean lfs)
{
  FixtureFile *f = g_new0 (FixtureFile, 1);

  f->path = g_strdup (path);
  f->data = data;
  f->lfs = lfs;
  f->etag = lfs ? g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, data) : git_blob_sha1 (data);
  g_ptr_array_add (hub.files, f);
}

/* The real tinystories-656k when ../shared has it, else the committed llama-f32 fixture (a
 * fresh clone in CI has no ../shared): the same code paths, smaller files. */
char *
model_dir (void)
{
  const char *shared = g_getenv ("LATHE_SHARED_DIR");
  char *dir = shared ? g_build_filename (shared, "models", "tinystories-656k", NULL) : NULL;

  if (dir != NULL && g_file_test (dir, G_FILE_TEST_IS_DIR))
    return dir;
  g_free (dir);
  return g_build_filename (g_getenv ("LATHE_TEST_DATA"), "models", "llama-f32", NULL);
}

/* Bytes of the fixture's model.safetensors. */
guint64
model_size (void)
{
  g_autofree char *dir = model_dir ();
  g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
  GStatBuf st;

  g_assert_cmpint (g_stat (p, &st), ==, 0);
  return (guint64) st.st_size;
}

static void
load_fixture (void)
{
  static const char *small[] = { "config.json", "generation_config.json",
                                 "special_tokens_map.json", "tokenizer.json",
                                 "tokenizer_config.json", NULL };
  g_autofree char *dir = model_dir ();
  const char *readme = "# tinystories-656k\nA nested file: its link is one folder deeper.\n";

  hub.files = g_ptr_array_new_with_free_func ((GDestroyNotify) fixture_file_free);
  for (int i = 0; small[i] != NULL; i++)
    {
      g_autofree char *p = g_build_filename (dir, small[i], NULL);
      char *text;
      gsize len;
      if (!g_file_test (p, G_FILE_TEST_EXISTS))
        {
          /* llama-f32 has no special_tokens_map.json: the same file set either way */
          text = g_strdup ("{}\n");
          len = 3;
        }
      else
        g_assert_true (g_file_get_contents (p, &text, &len, NULL));
      add_file (small[i], g_bytes_new_take (text, len), FALSE);
    }
  add_file ("docs/README.md", g_bytes_new_static (readme, strlen (readme)), FALSE);
  {
    g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
    char *data;
    gsize len;
    g_assert_true (g_file_get_contents (p, &data, &len, NULL));
    add_file ("model.safetensors", g_bytes_new_take (data, len), TRUE);
  }
}

FixtureFile *
find_file (const char *path, gboolean by_etag)
{
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      if (strcmp (by_etag ? f->etag : f->path, path) == 0)
        return f;
    }
  return NULL;
}

/* ---- the server ------------------------------------------------------------------------ */

static void
send_json (SoupServerMessage *msg, guint status, const char *error_code, const char *json)
{
  soup_server_message_set_status (msg, status, NULL);
  if (error_code != NULL)
    soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                  "X-Error-Code", error_code);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, json,
                                    strlen (json));
}

static void
listing (SoupServerMessage *msg, const char *repo)
{
  g_autoptr (GString) json = g_string_new (NULL);

  g_string_append_printf (json, "{\"id\": \"%s\", \"sha\": \"%s\", \"siblings\": [", repo,
                          COMMIT);
  for (guint i = 0; i < hub.files->len; i++)
    {
      FixtureFile *f = g_ptr_array_index (hub.files, i);
      g_string_append_printf (json, "%s{\"rfilename\": \"%s\"}", i ? ", " : "", f->path);
    }
  if (strcmp (repo, GHOST) == 0)
    g_string_append (json, ", {\"rfilename\": \"ghost.bin\"}");
  g_string_append (json, "]}");
  send_json (msg, 200, NULL, json->str);
}

/* A 200 response with Content-Length @total that sends @n bytes and closes the connection. */
static void
hang_up_after (SoupServerMessage *msg, GBytes *data, gsize n)
{
  g_autoptr (GIOStream) io = soup_server_message_steal_connection (msg);
  GOutputStream *out = g_io_stream_get_output_stream (io);
  g_autofree char *head = g_strdup_printf ("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                           "Connection: close\r\n\r\n", g_bytes_get_size (data));

  g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL);
  g_output_stream_write_all (out, g_bytes_get_data (data, NULL), n, NULL, NULL, NULL);
  g_io_stream_close (io, NULL, NULL);
}

/* The throttled answer: bytes @start..@end (inclusive) of @data, as a 200 (@partial FALSE) or a
 * 206, written on the stolen connection in chunks of hub.throttle_chunk bytes, each followed by
 * hub.throttle_us of sleep (this server thread serves one client at a time). A client that
 * goes away ends the writing. */
static void
send_throttled (SoupServerMessage *msg, GBytes *data, gsize start, gsize end, gboolean partial,
                gsize chunk, guint pause_us)
{
  g_autoptr (GIOStream) io = soup_server_message_steal_connection (msg);
  GOutputStream *out = g_io_stream_get_output_stream (io);
  const guint8 *bytes = g_bytes_get_data (data, NULL);
  gsize total = g_bytes_get_size (data);
  g_autofree char *head = NULL;

  if (partial)
    head = g_strdup_printf ("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %zu-%zu/%zu\r\n"
                            "Content-Length: %zu\r\nAccept-Ranges: bytes\r\n"
                            "Connection: close\r\n\r\n", start, end, total, end - start + 1);
  else
    head = g_strdup_printf ("HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nAccept-Ranges: bytes\r\n"
                            "Connection: close\r\n\r\n", total);
  if (g_output_stream_write_all (out, head, strlen (head), NULL, NULL, NULL))
    for (gsize at = start; at <= end && total > 0;)
      {
        gsize n = MIN (chunk, end + 1 - at);
        if (!g_output_stream_write_all (out, bytes + at, n, NULL, NULL, NULL)
            || !g_output_stream_flush (out, NULL, NULL))
          break;
        at += n;
        g_usleep (pause_us);
      }
  g_io_stream_close (io, NULL, NULL);
}

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer user_data)
{
  const char *method = soup_server_message_get_method (msg);
  SoupMessageHeaders *req = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *resp = soup_server_message_get_response_headers (msg);
  const char *auth = soup_message_headers_get_one (req, "Authorization");
  gboolean bearer = g_strcmp0 (auth, "Bearer " TOKEN) == 0;
  g_auto (GStrv) parts = g_strsplit (path + 1, "/", 6);
  guint n = g_strv_length (parts);
  g_autofree char *repo = n >= 2 ? g_strdup_printf ("%s/%s", parts[0], parts[1]) : NULL;

  g_mutex_lock (&hub.lock);
  hub.n_bearer += bearer;
  g_mutex_unlock (&hub.lock);

  /* /api/models/ORG/NAME/revision/REV */
  if (n >= 6 && strcmp (parts[0], "api") == 0 && strcmp (parts[1], "models") == 0
      && strcmp (parts[4], "revision") == 0)
    {
      g_autofree char *r = g_strdup_printf ("%s/%s", parts[2], parts[3]);
      g_mutex_lock (&hub.lock);
      hub.n_api++;
      g_mutex_unlock (&hub.lock);
      if (strcmp (r, GATED) == 0 && !bearer)
        send_json (msg, 401, "GatedRepo", "{\"error\": \"Access to model is restricted\"}");
      else if (strcmp (r, REPO) != 0 && strcmp (r, GATED) != 0 && strcmp (r, GHOST) != 0)
        send_json (msg, 404, "RepoNotFound", "{\"error\": \"Repository not found\"}");
      else if (strcmp (parts[5], "main") != 0 && strcmp (parts[5], COMMIT) != 0)
        send_json (msg, 404, "RevisionNotFound", "{\"error\": \"Invalid rev id\"}");
      else
        listing (msg, r);
      return;
    }

  /* /ORG/NAME/resolve/REV/PATH */
  if (n >= 5 && strcmp (parts[2], "resolve") == 0)
    {
      g_auto (GStrv) rp = g_strsplit (path + 1, "/", 5); /* rp[4]: the path, with its folders */
      FixtureFile *f = find_file (rp[4], FALSE);
      g_mutex_lock (&hub.lock);
      if (strcmp (method, "HEAD") == 0)
        hub.n_head++;
      else
        hub.n_resolve_get++;
      g_mutex_unlock (&hub.lock);
      soup_message_headers_replace (resp, "X-Repo-Commit", COMMIT);
      if (strcmp (repo, GATED) == 0 && !bearer)
        send_json (msg, 401, "GatedRepo", "{\"error\": \"Access to model is restricted\"}");
      else if (f == NULL || strcmp (parts[3], COMMIT) != 0)
        send_json (msg, 404, "EntryNotFound", "{\"error\": \"Entry not found\"}");
      else if (f->lfs)
        {
          g_autofree char *loc = g_strdup_printf ("%s/cdn/%s", hub.base, f->etag);
          g_autofree char *etag = g_strdup_printf ("\"%s\"", f->etag);
          g_autofree char *size = g_strdup_printf ("%zu", g_bytes_get_size (f->data));
          soup_server_message_set_redirect (msg, 302, loc);
          soup_message_headers_replace (resp, "X-Linked-Etag", etag);
          soup_message_headers_replace (resp, "X-Linked-Size", size);
          soup_message_headers_replace (resp, "ETag", "\"some-git-oid-of-the-pointer\"");
        }
      else if (hub.throttle_chunk > 0 && strcmp (method, "GET") == 0)
        send_throttled (msg, f->data, 0, g_bytes_get_size (f->data) - 1, FALSE,
                        hub.throttle_chunk, hub.throttle_us);
      else
        {
          g_autofree char *etag = g_strdup_printf ("\"%s\"", f->etag);
          soup_server_message_set_status (msg, 200, NULL);
          soup_message_headers_replace (resp, "ETag", etag);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            g_bytes_get_data (f->data, NULL),
                                            g_bytes_get_size (f->data));
        }
      return;
    }

  /* /cdn/SHA256, with Range */
  if (n == 2 && strcmp (parts[0], "cdn") == 0)
    {
      FixtureFile *f = find_file (parts[1], TRUE);
      g_autoptr (GBytes) data = NULL;
      SoupRange *ranges = NULL;
      int n_ranges = 0;
      gint64 drop;
      gsize size;

      if (f == NULL)
        {
          soup_server_message_set_status (msg, 404, NULL);
          return;
        }
      data = g_bytes_ref (f->data);
      size = g_bytes_get_size (data);
      g_mutex_lock (&hub.lock);
      if (strcmp (method, "GET") == 0)
        hub.n_cdn_get++;
      drop = hub.drop_after;
      hub.drop_after = 0;
      if (hub.corrupt)
        {
          guint8 *copy = g_memdup2 (g_bytes_get_data (data, NULL), size);
          copy[size / 2] ^= 0x5a;
          g_bytes_unref (data);
          data = g_bytes_new_take (copy, size);
        }
      hub.last_range = -1;
      if (soup_message_headers_get_ranges (req, size, &ranges, &n_ranges))
        hub.last_range = ranges[0].start;
      g_mutex_unlock (&hub.lock);
      soup_message_headers_replace (resp, "Accept-Ranges", "bytes");
      if (drop > 0 && n_ranges == 0)
        hang_up_after (msg, data, (gsize) drop);
      else if (hub.throttle_chunk > 0 && strcmp (method, "GET") == 0 && n_ranges <= 1)
        send_throttled (msg, data, n_ranges ? (gsize) ranges[0].start : 0,
                        n_ranges ? (gsize) ranges[0].end : size - 1, n_ranges == 1,
                        hub.throttle_chunk, hub.throttle_us);
      else if (n_ranges == 1)
        {
          goffset start = ranges[0].start, end = ranges[0].end;
          soup_server_message_set_status (msg, 206, NULL);
          soup_message_headers_set_content_range (resp, start, end, size);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            (const char *) g_bytes_get_data (data, NULL) + start,
                                            end - start + 1);
        }
      else
        {
          soup_server_message_set_status (msg, 200, NULL);
          soup_server_message_set_response (msg, "application/octet-stream", SOUP_MEMORY_COPY,
                                            g_bytes_get_data (data, NULL), size);
        }
      if (ranges != NULL)
        soup_message_headers_free_ranges (req, ranges);
      return;
    }
  soup_server_message_set_status (msg, 404, NULL);
}

static gpointer
server_thread (gpointer data)
{
  g_autoptr (GError) error = NULL;
  GSList *uris;

  g_main_context_push_thread_default (hub.ctx);
  hub.server = soup_server_new ("server-header", "lathe-test-hub", NULL);
  soup_server_add_handler (hub.server, NULL, handler, NULL, NULL);
  g_assert_true (soup_server_listen_local (hub.server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error));
  g_assert_no_error (error);
  uris = soup_server_get_uris (hub.server);
  g_mutex_lock (&hub.lock);
  hub.base = g_strdup_printf ("http://127.0.0.1:%d", g_uri_get_port (uris->data));
  hub.ready = TRUE;
  g_cond_signal (&hub.cond);
  g_mutex_unlock (&hub.lock);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  g_main_loop_run (hub.loop);
  soup_server_disconnect (hub.server);
  g_clear_object (&hub.server);
  while (g_main_context_iteration (hub.ctx, FALSE)) /* the connections' last callbacks */
    ;
  g_main_context_pop_thread_default (hub.ctx);
  return NULL;
}

void
server_start (void)
{
  g_mutex_init (&hub.lock);
  g_cond_init (&hub.cond);
  hub.ctx = g_main_context_new ();
  hub.loop = g_main_loop_new (hub.ctx, FALSE);
  load_fixture ();
  hub.thread = g_thread_new ("test-hub-server", server_thread, NULL);
  g_mutex_lock (&hub.lock);
  while (!hub.ready)
    g_cond_wait (&hub.cond, &hub.lock);
  g_mutex_unlock (&hub.lock);
}

static gboolean
quit_idle (gpointer data)
{
  g_main_loop_quit (hub.loop);
  return G_SOURCE_REMOVE;
}

void
server_stop (void)
{
  GSource *s = g_idle_source_new ();

  g_source_set_callback (s, quit_idle, NULL, NULL);
  g_source_attach (s, hub.ctx);
  g_source_unref (s);
  g_thread_join (hub.thread);
  g_main_loop_unref (hub.loop);
  g_main_context_unref (hub.ctx);
  g_ptr_array_unref (hub.files);
  g_free (hub.base);
}

void
reset_counts (void)
{
  g_mutex_lock (&hub.lock);
  hub.n_api = hub.n_head = hub.n_resolve_get = hub.n_cdn_get = hub.n_bearer = 0;
  hub.last_range = -1;
  hub.drop_after = 0;
  hub.corrupt = FALSE;
  hub.throttle_chunk = 0;
  hub.throttle_us = 0;
  g_mutex_unlock (&hub.lock);
}

