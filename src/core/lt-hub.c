/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-hub: Hugging Face Hub downloads into the shared HF cache layout. See lt-hub.h. */
#include "config.h"

#include "lt-hub.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "lt-error.h"
#include "lt-json.h"

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_REDIRECTS 10
#define CHUNK (256 * 1024)
#define MAX_LISTING (64 * 1024 * 1024)

typedef struct
{
  char *path;     /* the repository path (siblings[].rfilename) */
  char *url;      /* where its bytes are (after the resolve redirect) */
  char *etag;     /* blobs/ETAG */
  guint64 size;   /* 0: unknown */
  gboolean cached;
} HubFile;

typedef struct
{
  SoupSession *session;
  char *endpoint;      /* without a trailing '/' */
  char *endpoint_host;
  char *token;         /* NULL: none */
  const char *repo;
  char *repo_dir;
  GCancellable *cancellable;
  LtHubProgressFunc progress;
  gpointer user_data;
  LtHubProgress p;
  gint64 t_report;     /* µs, last progress call */
  gint64 t_rate;       /* µs, last rate update */
  guint64 rate_done;   /* p.done at t_rate */
  gboolean network_failed;
  gboolean sent_token;
} Hub;

static void
hub_file_free (HubFile *f)
{
  g_free (f->path);
  g_free (f->url);
  g_free (f->etag);
  g_free (f);
}

void
lt_hub_result_clear (LtHubResult *result)
{
  if (result == NULL)
    return;
  g_clear_pointer (&result->commit, g_free);
  g_clear_pointer (&result->network_error, g_free);
  memset (result, 0, sizeof *result);
}

/* ---- environment ---------------------------------------------------------------------- */

static char *
env_nonempty (const char *name)
{
  const char *v = g_getenv (name);

  if (v == NULL || *v == '\0')
    return NULL;
  return g_strdup (v);
}

static char *
hf_home (void)
{
  char *home = env_nonempty ("HF_HOME");

  if (home != NULL)
    return home;
  /* Inside a Flatpak XDG_CACHE_HOME is the sandbox's own (~/.var/app/ID/cache): the cache the
   * host's HF tools share is the home's, which the manifest's --filesystem=home reaches. */
  if (g_getenv ("XDG_CACHE_HOME") != NULL && *g_getenv ("XDG_CACHE_HOME") != '\0'
      && !g_file_test ("/.flatpak-info", G_FILE_TEST_EXISTS))
    return g_build_filename (g_getenv ("XDG_CACHE_HOME"), "huggingface", NULL);
  return g_build_filename (g_get_home_dir (), ".cache", "huggingface", NULL);
}

char *
lt_hub_default_cache_dir (void)
{
  g_autofree char *home = NULL;
  char *dir = env_nonempty ("HF_HUB_CACHE");

  if (dir == NULL)
    dir = env_nonempty ("HUGGINGFACE_HUB_CACHE"); /* the older name, still honoured */
  if (dir != NULL)
    return dir;
  home = hf_home ();
  return g_build_filename (home, "hub", NULL);
}

static gboolean
env_true (const char *name)
{
  const char *v = g_getenv (name);

  return v != NULL && (g_ascii_strcasecmp (v, "1") == 0 || g_ascii_strcasecmp (v, "true") == 0
                       || g_ascii_strcasecmp (v, "yes") == 0 || g_ascii_strcasecmp (v, "on") == 0);
}

static char *
default_token (void)
{
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  char *token = env_nonempty ("HF_TOKEN");

  if (token != NULL)
    return g_strstrip (token);
  path = env_nonempty ("HF_TOKEN_PATH");
  if (path == NULL)
    {
      g_autofree char *home = hf_home ();
      path = g_build_filename (home, "token", NULL);
    }
  if (!g_file_get_contents (path, &text, NULL, NULL))
    return NULL;
  g_strstrip (text);
  return *text != '\0' ? g_steal_pointer (&text) : NULL;
}

/* ---- names ---------------------------------------------------------------------------- */

static gboolean
name_part_ok (const char *s, gsize len)
{
  if (len == 0 || len > 96 || s[0] == '.' || s[0] == '-')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      char c = s[i];
      if (!g_ascii_isalnum (c) && c != '-' && c != '_' && c != '.')
        return FALSE;
      if (c == '.' && i + 1 < len && s[i + 1] == '.')
        return FALSE;
    }
  return TRUE;
}

gboolean
lt_hub_is_repo_id (const char *text)
{
  const char *slash;

  if (text == NULL)
    return FALSE;
  slash = strchr (text, '/');
  if (slash == NULL || strchr (slash + 1, '/') != NULL)
    return FALSE;
  return name_part_ok (text, slash - text) && name_part_ok (slash + 1, strlen (slash + 1));
}

char *
lt_hub_repo_dir (const char *cache_dir, const char *repo_id)
{
  g_autofree char *def = cache_dir == NULL ? lt_hub_default_cache_dir () : NULL;
  g_auto (GStrv) parts = g_strsplit (repo_id, "/", -1);
  g_autofree char *joined = g_strjoinv ("--", parts);
  g_autofree char *folder = g_strconcat ("models--", joined, NULL);

  return g_build_filename (cache_dir != NULL ? cache_dir : def, folder, NULL);
}

/* A repository path from the listing: relative, no "..", no empty or hidden-dot components
 * that could leave the snapshot folder. */
static gboolean
repo_path_ok (const char *path)
{
  g_auto (GStrv) parts = NULL;

  if (path == NULL || *path == '\0' || path[0] == '/' || strchr (path, '\\') != NULL)
    return FALSE;
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    if (*parts[i] == '\0' || strcmp (parts[i], ".") == 0 || strcmp (parts[i], "..") == 0)
      return FALSE;
  return TRUE;
}

/* An ETag becomes a file name: letters, digits, '-', '_', '.' only. */
static gboolean
etag_ok (const char *etag)
{
  gsize len = strlen (etag);

  if (len == 0 || len > 200 || etag[0] == '.')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (etag[i]) && etag[i] != '-' && etag[i] != '_' && etag[i] != '.')
      return FALSE;
  return TRUE;
}

static gboolean
is_hex (const char *s, gsize len)
{
  if (strlen (s) != len)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isxdigit (s[i]))
      return FALSE;
  return TRUE;
}

/* ETag: "abc" or W/"abc" → abc (huggingface_hub's _normalize_etag). */
static char *
normalize_etag (const char *etag)
{
  if (etag == NULL)
    return NULL;
  if (g_str_has_prefix (etag, "W/"))
    etag += 2;
  while (*etag == '"')
    etag++;
  {
    char *out = g_strdup (etag);
    gsize n = strlen (out);
    while (n > 0 && out[n - 1] == '"')
      out[--n] = '\0';
    return out;
  }
}

/* ---- the cache, without network ------------------------------------------------------- */

char *
lt_hub_find_cached (const char *repo_id, const char *revision, const char *cache_dir,
                    GError **error)
{
  g_autofree char *repo_dir = NULL;
  g_autofree char *ref = NULL;
  g_autofree char *commit = NULL;
  g_autofree char *snapshot = NULL;
  const char *rev = revision != NULL ? revision : "main";

  g_return_val_if_fail (repo_id != NULL, NULL);
  if (!lt_hub_is_repo_id (repo_id))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a Hugging Face repository id (ORG/NAME)", repo_id);
      return NULL;
    }
  repo_dir = lt_hub_repo_dir (cache_dir, repo_id);
  ref = g_build_filename (repo_dir, "refs", rev, NULL);
  if (g_file_get_contents (ref, &commit, NULL, NULL))
    g_strstrip (commit);
  else
    commit = g_strdup (rev); /* a commit sha names its snapshot directly */
  snapshot = g_build_filename (repo_dir, "snapshots", commit, NULL);
  if (*commit != '\0' && strchr (commit, '/') == NULL
      && g_file_test (snapshot, G_FILE_TEST_IS_DIR))
    return g_steal_pointer (&snapshot);

  g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
               "%s (revision %s) is not in the Hugging Face cache %s; download it with "
               "“lathe download %s%s%s”", repo_id, rev, repo_dir, repo_id,
               revision != NULL ? " --revision " : "", revision != NULL ? revision : "");
  return NULL;
}

/* ---- HTTP ----------------------------------------------------------------------------- */

static char *
url_host (const char *url)
{
  g_autoptr (GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);

  return uri != NULL && g_uri_get_host (uri) != NULL ? g_strdup (g_uri_get_host (uri)) : NULL;
}

static void
set_network_error (Hub *h, const char *url, const GError *local, GError **error)
{
  g_autofree char *host = url_host (url);

  if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED,
                   "download cancelled (run again to resume)");
      return;
    }
  h->network_failed = TRUE;
  if (local->domain == G_RESOLVER_ERROR)
    g_set_error (error, LT_ERROR, LT_ERROR_IO, "cannot resolve %s (no network, or DNS "
                 "failed): %s", host, local->message);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
    g_set_error (error, LT_ERROR, LT_ERROR_IO, "cannot connect to %s (connection refused; "
                 "is HF_ENDPOINT right?): %s", host, local->message);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_NETWORK_UNREACHABLE)
           || g_error_matches (local, G_IO_ERROR, G_IO_ERROR_HOST_UNREACHABLE))
    g_set_error (error, LT_ERROR, LT_ERROR_IO, "no network: cannot reach %s: %s", host,
                 local->message);
  else if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
    g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s did not answer in time: %s", host,
                 local->message);
  else
    g_set_error (error, LT_ERROR, LT_ERROR_IO, "network error talking to %s: %s", host,
                 local->message);
}

/* An HTTP error status as a sentence naming the cause. @file NULL: the repository listing. */
static void
set_status_error (Hub *h, SoupMessage *msg, const char *rev, const char *file, GError **error)
{
  guint status = soup_message_get_status (msg);
  const char *code = soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                   "X-Error-Code");
  g_autofree char *url = g_uri_to_string (soup_message_get_uri (msg));

  /* The Hub answers 401 with X-Error-Code RepoNotFound for a repository that does not exist
   * (or that this caller may not see), GatedRepo for a gated one; 403 is a refused access. */
  if (g_strcmp0 (code, "GatedRepo") == 0 || status == 403
      || (status == 401 && g_strcmp0 (code, "RepoNotFound") != 0))
    {
      if (h->sent_token)
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "%s is gated or private and the token was refused (HTTP %u): accept the "
                     "model's terms on %s/%s with the account of that token", h->repo, status,
                     h->endpoint, h->repo);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "%s is gated or private (HTTP %u): accept its terms on %s/%s, then set "
                     "HF_TOKEN (or log in with “huggingface-cli login”)", h->repo, status,
                     h->endpoint, h->repo);
      return;
    }
  if (status == 401 || g_strcmp0 (code, "RepoNotFound") == 0)
    {
      if (h->sent_token)
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "no repository %s on %s, or the token has no access to it (HTTP %u)",
                     h->repo, h->endpoint, status);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "no repository %s on %s (HTTP %u); if it is private or gated, set "
                     "HF_TOKEN", h->repo, h->endpoint, status);
      return;
    }
  if (status == 404 && (g_strcmp0 (code, "RevisionNotFound") == 0 || file == NULL))
    {
      if (g_strcmp0 (code, "RevisionNotFound") == 0)
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "%s has no revision “%s” (HTTP 404)", h->repo, rev);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "no repository %s (revision %s) on %s (HTTP 404)", h->repo, rev,
                     h->endpoint);
      return;
    }
  if (status == 404)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s has no file “%s” at %s (HTTP 404 from %s)", h->repo, file, rev, url);
      return;
    }
  g_set_error (error, LT_ERROR, LT_ERROR_IO, "HTTP %u %s from %s", status,
               soup_message_get_reason_phrase (msg) ? soup_message_get_reason_phrase (msg) : "",
               url);
}

static gboolean
is_redirect (guint status)
{
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Sends one request; follows redirects itself (all of them, or only those to a path on the
 * same host when @relative_only), so that the token goes only to the endpoint's host. Returns
 * the body stream and the last message in @out_msg (a redirect when @relative_only stopped at
 * an absolute one). */
static GInputStream *
hub_send (Hub *h, const char *method, const char *url, guint64 range_from, gboolean relative_only,
          SoupMessage **out_msg, GError **error)
{
  g_autofree char *current = g_strdup (url);

  for (int hop = 0; hop <= MAX_REDIRECTS; hop++)
    {
      g_autoptr (SoupMessage) msg = soup_message_new (method, current);
      g_autoptr (GInputStream) stream = NULL;
      g_autoptr (GError) local = NULL;
      g_autofree char *host = NULL;
      SoupMessageHeaders *req;
      const char *location;
      guint status;

      if (msg == NULL)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "not a valid URL: %s",
                       current);
          return NULL;
        }
      soup_message_set_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
      req = soup_message_get_request_headers (msg);
      soup_message_headers_replace (req, "Accept-Encoding", "identity");
      host = url_host (current);
      if (h->token != NULL && g_strcmp0 (host, h->endpoint_host) == 0)
        {
          g_autofree char *bearer = g_strconcat ("Bearer ", h->token, NULL);
          soup_message_headers_replace (req, "Authorization", bearer);
          h->sent_token = TRUE;
        }
      if (range_from > 0)
        soup_message_headers_set_range (req, (goffset) range_from, -1);

      stream = soup_session_send (h->session, msg, h->cancellable, &local);
      if (stream == NULL)
        {
          set_network_error (h, current, local, error);
          return NULL;
        }
      status = soup_message_get_status (msg);
      location = soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                               "Location");
      if (is_redirect (status) && location != NULL)
        {
          g_autofree char *next = g_uri_resolve_relative (current, location, G_URI_FLAGS_NONE,
                                                          NULL);
          if (next == NULL)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_IO, "bad redirect from %s to “%s”",
                           current, location);
              return NULL;
            }
          if (!relative_only || location[0] == '/')
            {
              g_input_stream_close (stream, NULL, NULL);
              g_free (current);
              current = g_steal_pointer (&next);
              continue;
            }
        }
      *out_msg = g_steal_pointer (&msg);
      return g_steal_pointer (&stream);
    }
  g_set_error (error, LT_ERROR, LT_ERROR_IO, "too many redirects from %s", url);
  return NULL;
}

static GBytes *
read_all (Hub *h, GInputStream *stream, const char *url, GError **error)
{
  g_autoptr (GByteArray) buf = g_byte_array_new ();
  guint8 chunk[16384];

  for (;;)
    {
      g_autoptr (GError) local = NULL;
      gssize n = g_input_stream_read (stream, chunk, sizeof chunk, h->cancellable, &local);

      if (n < 0)
        {
          set_network_error (h, url, local, error);
          return NULL;
        }
      if (n == 0)
        break;
      if (buf->len + n > MAX_LISTING)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: answer larger than %d MiB", url,
                       MAX_LISTING >> 20);
          return NULL;
        }
      g_byte_array_append (buf, chunk, n);
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

/* ---- the listing ---------------------------------------------------------------------- */

/* @name's string, NULL when absent or not a string (json-glib's _with_default getters fail a
 * g_return_if_fail on an object or array there). */
static const char *
member_string (JsonObject *obj, const char *name)
{
  JsonNode *n = json_object_get_member (obj, name);

  return n != NULL && lt_json_holds (n, G_TYPE_STRING) ? json_node_get_string (n) : NULL;
}

gboolean
lt_hub_parse_listing (const char *data, gsize size, const char *label, char **out_commit,
                      GPtrArray *out_paths, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  JsonNode *root;
  JsonObject *obj;
  JsonArray *siblings;
  const char *sha;

  if (!json_parser_load_from_data (parser, data, size, &local))
    {
      /* json-glib quotes the offending bytes, which need not be UTF-8 */
      g_autofree char *msg = g_utf8_make_valid (local->message, -1);
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: not JSON: %s", label, msg);
      return FALSE;
    }
  root = json_parser_get_root (parser);
  obj = root != NULL && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  sha = obj != NULL ? member_string (obj, "sha") : NULL;
  siblings = obj != NULL && json_object_has_member (obj, "siblings")
             && JSON_NODE_HOLDS_ARRAY (json_object_get_member (obj, "siblings"))
               ? json_object_get_array_member (obj, "siblings") : NULL;
  if (sha == NULL || siblings == NULL || !etag_ok (sha))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                   "%s: the answer has no commit “sha” or no “siblings” list", label);
      return FALSE;
    }
  for (guint i = 0; i < json_array_get_length (siblings); i++)
    {
      JsonNode *n = json_array_get_element (siblings, i);
      const char *path = JSON_NODE_HOLDS_OBJECT (n)
                           ? member_string (json_node_get_object (n), "rfilename") : NULL;
      if (!repo_path_ok (path) || !g_utf8_validate (path, -1, NULL))
        {
          g_autofree char *shown = path ? g_utf8_make_valid (path, -1) : g_strdup ("missing");
          g_set_error (error, LT_ERROR, LT_ERROR_FORMAT,
                       "%s: siblings[%u] has no usable “rfilename” (%s)", label, i, shown);
          return FALSE;
        }
      g_ptr_array_add (paths, g_strdup (path));
    }
  for (guint i = 0; i < paths->len; i++)
    g_ptr_array_add (out_paths, g_steal_pointer (&paths->pdata[i]));
  *out_commit = g_strdup (sha);
  return TRUE;
}

static gboolean
list_files (Hub *h, const char *rev, char **out_commit, GPtrArray *out_paths, GError **error)
{
  g_autofree char *rev_esc = g_uri_escape_string (rev, NULL, FALSE);
  g_autofree char *url = g_strdup_printf ("%s/api/models/%s/revision/%s", h->endpoint, h->repo,
                                          rev_esc);
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GInputStream) stream = NULL;
  g_autoptr (GBytes) body = NULL;

  stream = hub_send (h, "GET", url, 0, FALSE, &msg, error);
  if (stream == NULL)
    return FALSE;
  if (soup_message_get_status (msg) != SOUP_STATUS_OK)
    {
      set_status_error (h, msg, rev, NULL, error);
      return FALSE;
    }
  body = read_all (h, stream, url, error);
  if (body == NULL)
    return FALSE;
  return lt_hub_parse_listing (g_bytes_get_data (body, NULL), g_bytes_get_size (body), url,
                               out_commit, out_paths, error);
}

/* HEAD on resolve/COMMIT/PATH: where the bytes are, the ETag and the size. */
static gboolean
file_metadata (Hub *h, const char *commit, HubFile *f, GError **error)
{
  g_autofree char *path_esc = g_uri_escape_string (f->path, "/", FALSE);
  g_autofree char *url = g_strdup_printf ("%s/%s/resolve/%s/%s", h->endpoint, h->repo, commit,
                                          path_esc);
  g_autoptr (SoupMessage) msg = NULL;
  g_autoptr (GInputStream) stream = NULL;
  SoupMessageHeaders *hdrs;
  const char *etag, *size, *location;
  guint status;

  stream = hub_send (h, "HEAD", url, 0, TRUE, &msg, error);
  if (stream == NULL)
    return FALSE;
  g_input_stream_close (stream, NULL, NULL);
  status = soup_message_get_status (msg);
  hdrs = soup_message_get_response_headers (msg);
  location = soup_message_headers_get_one (hdrs, "Location");
  if (is_redirect (status) && location != NULL)
    f->url = g_uri_resolve_relative (url, location, G_URI_FLAGS_NONE, NULL);
  else if (status == SOUP_STATUS_OK)
    f->url = g_uri_to_string (soup_message_get_uri (msg));
  else
    {
      set_status_error (h, msg, commit, f->path, error);
      return FALSE;
    }
  etag = soup_message_headers_get_one (hdrs, "X-Linked-Etag");
  if (etag == NULL)
    etag = soup_message_headers_get_one (hdrs, "ETag");
  f->etag = normalize_etag (etag);
  if (f->etag == NULL || !etag_ok (f->etag) || f->url == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_FORMAT, "%s: %s (the server sent no usable ETag)",
                   url, f->etag == NULL ? "no ETag" : f->etag);
      return FALSE;
    }
  size = soup_message_headers_get_one (hdrs, "X-Linked-Size");
  if (size != NULL)
    f->size = g_ascii_strtoull (size, NULL, 10);
  else if (status == SOUP_STATUS_OK)
    f->size = (guint64) MAX (soup_message_headers_get_content_length (hdrs), 0);
  return TRUE;
}

/* ---- progress ------------------------------------------------------------------------- */

static gboolean
report (Hub *h, gboolean force, GError **error)
{
  gint64 now = g_get_monotonic_time ();

  if (now - h->t_rate >= G_USEC_PER_SEC / 2)
    {
      double inst = (double) (h->p.done - h->rate_done) * G_USEC_PER_SEC / (now - h->t_rate);
      h->p.bytes_per_s = h->p.bytes_per_s <= 0 ? inst : 0.6 * h->p.bytes_per_s + 0.4 * inst;
      h->t_rate = now;
      h->rate_done = h->p.done;
    }
  else if (h->p.bytes_per_s <= 0 && now > h->t_rate + 50000)
    h->p.bytes_per_s = (double) (h->p.done - h->rate_done) * G_USEC_PER_SEC / (now - h->t_rate);
  h->p.eta_s = h->p.total > 0 && h->p.bytes_per_s > 0
    ? (double) (h->p.total > h->p.done ? h->p.total - h->p.done : 0) / h->p.bytes_per_s : -1;

  if (h->progress == NULL || (!force && now - h->t_report < G_USEC_PER_SEC / 10))
    return TRUE;
  h->t_report = now;
  if (!h->progress (&h->p, h->user_data))
    {
      g_cancellable_cancel (h->cancellable);
      g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "download cancelled (run again to "
                   "resume)");
      return FALSE;
    }
  return TRUE;
}

/* ---- one file ------------------------------------------------------------------------- */

static gboolean
write_all (int fd, const guint8 *buf, gsize n)
{
  while (n > 0)
    {
      ssize_t w = write (fd, buf, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return FALSE;
      buf += w;
      n -= w;
    }
  return TRUE;
}

static char *
file_sha256 (Hub *h, const char *path, GError **error)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guint8 *buf = g_malloc (CHUNK);
  int fd = g_open (path, O_RDONLY, 0);

  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, g_strerror (e));
      return NULL;
    }
  for (;;)
    {
      ssize_t n = read (fd, buf, CHUNK);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int e = errno;
          close (fd);
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", path, g_strerror (e));
          return NULL;
        }
      if (n == 0)
        break;
      g_checksum_update (sum, buf, n);
      if (g_cancellable_is_cancelled (h->cancellable))
        {
          close (fd);
          g_set_error (error, LT_ERROR, LT_ERROR_CANCELLED, "download cancelled");
          return NULL;
        }
    }
  close (fd);
  return g_strdup (g_checksum_get_string (sum));
}

static guint64
file_size (const char *path)
{
  GStatBuf st;

  return g_stat (path, &st) == 0 ? (guint64) st.st_size : 0;
}

/* Transfers @f into blobs/ETAG.incomplete (@fd, locked; resuming what is there), checks it,
 * renames it to blobs/ETAG. */
static gboolean
transfer_locked (Hub *h, HubFile *f, int fd, const char *blob, const char *inc,
                 gboolean *out_resumed, GError **error)
{
  g_autofree guint8 *buf = NULL;
  gboolean lfs = is_hex (f->etag, 64);
  GStatBuf st;
  guint64 have;

  *out_resumed = FALSE;
  if (fstat (fd, &st) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
      return FALSE;
    }
  have = (guint64) st.st_size;
  if (f->size > 0 && have > f->size)
    have = 0;
  h->p.file = f->path;
  h->p.file_done = have;
  h->p.file_total = f->size;
  if (!report (h, TRUE, error))
    return FALSE;

  if (f->size == 0 || have < f->size)
    {
      g_autoptr (SoupMessage) msg = NULL;
      g_autoptr (GInputStream) stream = NULL;
      guint status;

      stream = hub_send (h, "GET", f->url, have, FALSE, &msg, error);
      if (stream == NULL)
        return FALSE;
      status = soup_message_get_status (msg);
      if (status == SOUP_STATUS_PARTIAL_CONTENT && have > 0)
        {
          goffset start = -1, end = -1, total = -1;
          if (!soup_message_headers_get_content_range (soup_message_get_response_headers (msg),
                                                       &start, &end, &total)
              || start != (goffset) have)
            {
              g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: the server resumed at byte %"
                           G_GINT64_FORMAT " instead of %" G_GUINT64_FORMAT, f->path,
                           (gint64) start, have);
              return FALSE;
            }
          *out_resumed = TRUE;
        }
      else if (status == SOUP_STATUS_OK)
        have = 0; /* the whole file again (the server ignored Range, or there was none) */
      else if (status == SOUP_STATUS_REQUESTED_RANGE_NOT_SATISFIABLE && have > 0)
        {
          g_unlink (inc); /* a stale partial file: start over next time */
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: the server refused to resume (HTTP "
                       "416); the partial file was removed, run again", f->path);
          return FALSE;
        }
      else
        {
          set_status_error (h, msg, "the resolved revision", f->path, error);
          return FALSE;
        }

      if ((have == 0 && ftruncate (fd, 0) != 0) || lseek (fd, (off_t) have, SEEK_SET) < 0)
        {
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
          return FALSE;
        }
      h->p.file_done = have;
      buf = g_malloc (CHUNK);
      for (gboolean first = TRUE;; first = FALSE)
        {
          g_autoptr (GError) local = NULL;
          gssize n = g_input_stream_read (stream, buf, CHUNK, h->cancellable, &local);

          if (n < 0)
            {
              fsync (fd);
              if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                set_network_error (h, f->url, local, error);
              else
                g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: the transfer broke off after %"
                             G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes (%s); run again "
                             "to resume", f->path, have, f->size, local->message);
              return FALSE;
            }
          if (n == 0)
            break;
          if (!write_all (fd, buf, n))
            {
              int e = errno;
              g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
              return FALSE;
            }
          have += n;
          h->p.file_done = have;
          h->p.done += n;
          if (!report (h, first, error)) /* the first bytes of each file are always shown */
            {
              fsync (fd);
              return FALSE;
            }
        }
      if (fsync (fd) != 0)
        {
          int e = errno;
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
          return FALSE;
        }
      if (f->size > 0 && have < f->size)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: the transfer broke off after %"
                       G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes; run again to resume",
                       f->path, have, f->size);
          return FALSE;
        }
    }

  if (f->size > 0 && have != f->size)
    {
      g_unlink (inc);
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %" G_GUINT64_FORMAT " bytes received, "
                   "the Hub announced %" G_GUINT64_FORMAT "; the file was removed", f->path,
                   have, f->size);
      return FALSE;
    }
  if (lfs)
    {
      g_autofree char *sha = file_sha256 (h, inc, error);
      if (sha == NULL)
        return FALSE;
      if (g_ascii_strcasecmp (sha, f->etag) != 0)
        {
          g_unlink (inc);
          g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: sha256 mismatch: the Hub reports %s, "
                       "the download has %s; the corrupt file was removed", f->path, f->etag,
                       sha);
          return FALSE;
        }
    }
  if (g_rename (inc, blob) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", blob, g_strerror (e));
      return FALSE;
    }
  return report (h, TRUE, error);
}

/* One writer per partial file: an exclusive lock on blobs/ETAG.incomplete (another Lathe, or the
 * app and the CLI at once, would interleave their bytes). */
static gboolean
transfer (Hub *h, HubFile *f, gboolean *out_resumed, GError **error)
{
  g_autofree char *blob = g_build_filename (h->repo_dir, "blobs", f->etag, NULL);
  g_autofree char *inc = g_strconcat (blob, ".incomplete", NULL);
  gboolean ok;
  int fd = g_open (inc, O_WRONLY | O_CREAT, 0644);

  if (fd < 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
      return FALSE;
    }
  if (flock (fd, LOCK_EX | LOCK_NB) != 0)
    {
      int e = errno;
      close (fd);
      if (e == EWOULDBLOCK)
        g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: another download of this file is "
                     "running (%s is locked); let it finish or stop it", f->path, inc);
      else
        g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", inc, g_strerror (e));
      return FALSE;
    }
  ok = transfer_locked (h, f, fd, blob, inc, out_resumed, error);
  close (fd);
  return ok;
}

/* snapshots/COMMIT/PATH → ../../blobs/ETAG (one more ../ per folder in PATH), replaced
 * atomically (a temporary link renamed over it). */
static gboolean
link_snapshot (Hub *h, const char *commit, const HubFile *f, GError **error)
{
  g_autofree char *pointer = g_build_filename (h->repo_dir, "snapshots", commit, f->path, NULL);
  g_autofree char *dir = g_path_get_dirname (pointer);
  g_autofree char *tmp = g_strconcat (pointer, ".lathe-link", NULL);
  g_autoptr (GString) target = g_string_new ("../../");

  for (const char *c = f->path; *c != '\0'; c++)
    if (*c == '/')
      g_string_append (target, "../");
  g_string_append_printf (target, "blobs/%s", f->etag);

  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", dir, g_strerror (e));
      return FALSE;
    }
  g_unlink (tmp);
  if (symlink (target->str, tmp) != 0 || g_rename (tmp, pointer) != 0)
    {
      int e = errno;
      g_unlink (tmp);
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", pointer, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

#define REF_TMP_PREFIX ".lathe-ref-"

/* refs/REV ← @commit through a temporary file beside refs/, not in it (REPO/.lathe-ref-XXXXXX,
 * locked while it exists), renamed into place: refs/ only ever holds whole commit hashes (the
 * HF tools read every file there as a ref, and a killed writer's temporary would be one). */
static gboolean
write_ref (Hub *h, const char *rev, const char *commit, GError **error)
{
  g_autofree char *ref = g_build_filename (h->repo_dir, "refs", rev, NULL);
  g_autofree char *dir = g_path_get_dirname (ref);
  g_autofree char *tmp = g_build_filename (h->repo_dir, REF_TMP_PREFIX "XXXXXX", NULL);
  g_autofree char *old = NULL;
  int fd, e = 0;

  if (strcmp (rev, commit) == 0)
    return TRUE; /* a commit needs no ref (huggingface_hub does the same) */
  if (g_file_get_contents (ref, &old, NULL, NULL) && strcmp (old, commit) == 0)
    return TRUE;
  if (g_mkdir_with_parents (dir, 0755) != 0)
    {
      e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", dir, g_strerror (e));
      return FALSE;
    }
  fd = g_mkstemp_full (tmp, O_WRONLY, 0644);
  if (fd < 0)
    {
      e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", ref, g_strerror (e));
      return FALSE;
    }
  if (flock (fd, LOCK_EX) != 0 || !write_all (fd, (const guint8 *) commit, strlen (commit))
      || fsync (fd) != 0 || g_rename (tmp, ref) != 0)
    e = errno;
  if (e != 0)
    g_unlink (tmp);
  close (fd);
  if (e != 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", ref, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

/* Removes the ref temporaries (REF_TMP_PREFIX) that a killed writer left: those nobody holds
 * locked. */
static void
clean_ref_temps (const char *repo_dir)
{
  g_autoptr (GDir) d = g_dir_open (repo_dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = NULL;
      int fd;

      if (!g_str_has_prefix (name, REF_TMP_PREFIX))
        continue;
      p = g_build_filename (repo_dir, name, NULL);
      fd = g_open (p, O_RDONLY | O_NOFOLLOW, 0);
      if (fd < 0)
        continue;
      if (flock (fd, LOCK_EX | LOCK_NB) == 0)
        g_unlink (p);
      close (fd);
    }
}

/* ---- the download --------------------------------------------------------------------- */

static gboolean
included (const char *path, GPtrArray *specs)
{
  if (specs == NULL)
    return TRUE;
  for (guint i = 0; i < specs->len; i++)
    if (g_pattern_spec_match_string (g_ptr_array_index (specs, i), path))
      return TRUE;
  return FALSE;
}

static void
hub_clear (Hub *h)
{
  g_clear_object (&h->session);
  g_clear_pointer (&h->endpoint, g_free);
  g_clear_pointer (&h->endpoint_host, g_free);
  g_clear_pointer (&h->token, g_free);
  g_clear_pointer (&h->repo_dir, g_free);
  g_clear_object (&h->cancellable);
}

char *
lt_hub_download (const char *repo_id, const LtHubOptions *opts, LtHubProgressFunc progress,
                 gpointer user_data, LtHubResult *result, GCancellable *cancellable,
                 GError **error)
{
  static const LtHubOptions none = { 0 };
  Hub h = { 0 };
  LtHubResult res = { 0 };
  g_autoptr (GPtrArray) specs = NULL;
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func ((GDestroyNotify) hub_file_free);
  g_autofree char *commit = NULL;
  g_autofree char *blobs = NULL;
  g_autofree char *snapshot = NULL;
  g_autoptr (GError) local = NULL;
  const char *rev;
  char *out = NULL;

  g_return_val_if_fail (repo_id != NULL, NULL);
  if (opts == NULL)
    opts = &none;
  rev = opts->revision != NULL && *opts->revision != '\0' ? opts->revision : "main";
  if (result != NULL)
    memset (result, 0, sizeof *result);
  if (!lt_hub_is_repo_id (repo_id))
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a Hugging Face repository id (ORG/NAME)", repo_id);
      return NULL;
    }
  if (strstr (rev, "..") != NULL || rev[0] == '/' || rev[0] == '.')
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "bad revision “%s”", rev);
      return NULL;
    }

  h.repo = repo_id;
  h.repo_dir = lt_hub_repo_dir (opts->cache_dir, repo_id);
  if (opts->offline || env_true ("HF_HUB_OFFLINE"))
    {
      out = lt_hub_find_cached (repo_id, opts->revision, opts->cache_dir, &local);
      if (out == NULL)
        g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                     "offline (HF_HUB_OFFLINE): %s", local->message);
      else if (result != NULL)
        {
          res.from_cache_only = TRUE;
          *result = res;
        }
      hub_clear (&h);
      return out;
    }

  if (opts->include != NULL && opts->include[0] != NULL)
    {
      specs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_pattern_spec_free);
      for (guint i = 0; opts->include[i] != NULL; i++)
        g_ptr_array_add (specs, g_pattern_spec_new (opts->include[i]));
    }
  h.endpoint = g_strdup (opts->endpoint != NULL ? opts->endpoint
                         : g_getenv ("HF_ENDPOINT") != NULL && *g_getenv ("HF_ENDPOINT") != '\0'
                           ? g_getenv ("HF_ENDPOINT") : DEFAULT_ENDPOINT);
  while (g_str_has_suffix (h.endpoint, "/"))
    h.endpoint[strlen (h.endpoint) - 1] = '\0';
  h.endpoint_host = url_host (h.endpoint);
  if (h.endpoint_host == NULL)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT, "not a valid endpoint URL: %s",
                   h.endpoint);
      hub_clear (&h);
      return NULL;
    }
  h.token = opts->token != NULL ? (*opts->token ? g_strdup (opts->token) : NULL)
                                : default_token ();
  h.cancellable = cancellable != NULL ? g_object_ref (cancellable) : g_cancellable_new ();
  h.progress = progress;
  h.user_data = user_data;
  /* created here, on the calling thread, and used only from it */
  h.session = soup_session_new_with_options ("user-agent", "lathe/" PACKAGE_VERSION,
                                             "timeout", 60, NULL);

  if (!list_files (&h, rev, &commit, paths, &local))
    {
      /* no network: a cached snapshot of that revision serves, as in huggingface_hub */
      if (h.network_failed)
        out = lt_hub_find_cached (repo_id, opts->revision, opts->cache_dir, NULL);
      if (out != NULL && result != NULL)
        {
          res.from_cache_only = TRUE;
          res.network_error = g_strdup (local->message);
          *result = res;
        }
      if (out == NULL)
        g_propagate_error (error, g_steal_pointer (&local));
      hub_clear (&h);
      return out;
    }

  snapshot = g_build_filename (h.repo_dir, "snapshots", commit, NULL);
  blobs = g_build_filename (h.repo_dir, "blobs", NULL);
  if (g_mkdir_with_parents (blobs, 0755) != 0 || g_mkdir_with_parents (snapshot, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, LT_ERROR, LT_ERROR_IO, "%s: %s", h.repo_dir, g_strerror (e));
      hub_clear (&h);
      return NULL;
    }

  clean_ref_temps (h.repo_dir);

  /* which files: those in the snapshot already need no request at all */
  for (guint i = 0; i < paths->len; i++)
    {
      const char *path = g_ptr_array_index (paths, i);
      g_autofree char *pointer = NULL;
      HubFile *f;

      if (!included (path, specs))
        continue;
      f = g_new0 (HubFile, 1);
      f->path = g_strdup (path);
      pointer = g_build_filename (snapshot, path, NULL);
      f->cached = g_file_test (pointer, G_FILE_TEST_EXISTS);
      g_ptr_array_add (files, f);
      res.n_files++;
      res.n_cached += f->cached;
    }
  if (res.n_files == 0)
    {
      g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                   "%s at %s has no file that --include chooses (%u files in all)", repo_id,
                   rev, paths->len);
      hub_clear (&h);
      return NULL;
    }

  /* metadata first, so that the progress knows the total */
  h.p.n_files = res.n_files - res.n_cached;
  for (guint i = 0; i < files->len; i++)
    {
      HubFile *f = g_ptr_array_index (files, i);
      g_autofree char *blob = NULL;
      g_autofree char *inc = NULL;

      if (f->cached)
        continue;
      if (!file_metadata (&h, commit, f, error))
        {
          hub_clear (&h);
          return NULL;
        }
      blob = g_build_filename (blobs, f->etag, NULL);
      inc = g_strconcat (blob, ".incomplete", NULL);
      if (g_file_test (blob, G_FILE_TEST_EXISTS) && (f->size == 0 || file_size (blob) == f->size))
        continue; /* the blob is there (another revision has it): only the link is missing */
      h.p.total += f->size > file_size (inc) ? f->size - file_size (inc) : f->size;
    }

  h.t_rate = h.t_report = g_get_monotonic_time ();
  for (guint i = 0; i < files->len; i++)
    {
      HubFile *f = g_ptr_array_index (files, i);
      g_autofree char *blob = NULL;
      gboolean resumed = FALSE;

      if (f->cached)
        continue;
      blob = g_build_filename (blobs, f->etag, NULL);
      if (!(g_file_test (blob, G_FILE_TEST_EXISTS)
            && (f->size == 0 || file_size (blob) == f->size)))
        {
          if (!transfer (&h, f, &resumed, error))
            {
              hub_clear (&h);
              return NULL;
            }
          res.n_resumed += resumed;
        }
      h.p.file_index++;
      if (!link_snapshot (&h, commit, f, error))
        {
          hub_clear (&h);
          return NULL;
        }
    }
  if (!write_ref (&h, rev, commit, error))
    {
      hub_clear (&h);
      return NULL;
    }

  res.commit = g_steal_pointer (&commit);
  res.bytes_received = h.p.done;
  if (result != NULL)
    *result = res;
  else
    lt_hub_result_clear (&res);
  hub_clear (&h);
  return g_steal_pointer (&snapshot);
}
