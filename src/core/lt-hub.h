/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-hub: models from the Hugging Face Hub, in the cache layout the HF tools share.
 *
 * The cache (huggingface_hub's file_download.py layout, so that transformers, MLX LM and
 * huggingface-cli find Lathe's downloads and Lathe finds theirs):
 *
 *   $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 *   ~/.cache/huggingface/hub (inside a Flatpak the home's, not the sandbox's XDG_CACHE_HOME)
 *     models--ORG--NAME/
 *       blobs/ETAG                    one file's bytes, named by the Hub's ETag: the sha256 of
 *                                     an LFS file (X-Linked-Etag), the git blob id of others
 *       blobs/ETAG.incomplete         a transfer in progress; resumed with Range
 *       refs/REV                      the commit sha that revision REV ("main") pointed to
 *       snapshots/COMMIT/PATH         relative symlinks to ../../blobs/ETAG (one more ../ per
 *                                     folder in PATH)
 *
 * The protocol: the file list from GET {endpoint}/api/models/{repo}/revision/{rev} ("sha",
 * "siblings"[].rfilename); each file's metadata from HEAD {endpoint}/{repo}/resolve/{commit}/
 * {path} (relative redirects followed; X-Linked-Etag / ETag, X-Linked-Size / Content-Length;
 * an absolute redirect is where the bytes are); the bytes from a GET that follows redirects.
 * The token (Bearer) only goes to the endpoint's host. Environment: HF_ENDPOINT (mirrors),
 * HF_TOKEN, else the token file ($HF_TOKEN_PATH, else $HF_HOME/token), HF_HUB_OFFLINE=1 (the
 * cache only). HTTP through libsoup 3: HTTP/2, proxies through GProxyResolver.
 *
 * A blob appears only complete and checked (an LFS file's sha256 against its ETag; every
 * file's size): bytes go to blobs/ETAG.incomplete, which is renamed once complete. A failed or
 * cancelled transfer leaves only the .incomplete file, which the next run resumes. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  const char *endpoint;       /* NULL: $HF_ENDPOINT, else https://huggingface.co */
  const char *cache_dir;      /* NULL: lt_hub_default_cache_dir () */
  const char *token;          /* NULL: $HF_TOKEN, else the token file; "" sends none */
  const char *revision;       /* NULL: "main" (a branch, a tag or a commit sha) */
  const char *const *include; /* NULL: every file; else glob patterns ("*.json") of the files */
  gboolean offline;           /* the cache only (also when $HF_HUB_OFFLINE is 1/true/yes/on) */
} LtHubOptions;

typedef struct
{
  const char *file;   /* the repository path being fetched */
  guint file_index;   /* 0-based among the files to transfer */
  guint n_files;      /* files to transfer (those not in the cache) */
  guint64 file_done;  /* bytes of this file on disk (a resumed file starts above 0) */
  guint64 file_total; /* its size (0: unknown) */
  guint64 done;       /* bytes received in this run, all files */
  guint64 total;      /* bytes this run has to receive, all files (0: unknown) */
  double bytes_per_s; /* smoothed transfer rate */
  double eta_s;       /* seconds left at that rate; < 0: unknown */
} LtHubProgress;

/* Called on the downloading thread, at most ~10 times a second and at the end of each file.
 * Returns FALSE to cancel (the download fails with LT_ERROR_CANCELLED and can be resumed). */
typedef gboolean (*LtHubProgressFunc) (const LtHubProgress *progress, gpointer user_data);

typedef struct
{
  char *commit;            /* the snapshot's commit sha */
  guint n_files;           /* files in the snapshot that the include patterns chose */
  guint n_cached;          /* of which were in the cache already (no request for their bytes) */
  guint n_resumed;         /* transfers that resumed a .incomplete file */
  guint64 bytes_received;  /* bytes transferred in this run */
  gboolean from_cache_only;/* offline, or the network failed and the snapshot was cached */
  char *network_error;     /* with from_cache_only when the network failed: why */
} LtHubResult;

void lt_hub_result_clear (LtHubResult *result);

/* The hub cache folder the HF tools use (see above). */
char *lt_hub_default_cache_dir (void);
/* TRUE when @text has the form ORG/NAME (letters, digits, '-', '_', '.'; no "..", no leading
 * '.' or '-'). */
gboolean lt_hub_is_repo_id (const char *text);
/* @cache_dir/models--ORG--NAME (@cache_dir NULL: the default). */
char *lt_hub_repo_dir (const char *cache_dir, const char *repo_id);

/* The cached snapshot folder of @repo_id at @revision (NULL: "main"): refs/REV's commit, or
 * REV itself when it names a snapshot. No network. NULL with an error that names the cache
 * folder and the command to download it when it is not there. */
char *lt_hub_find_cached (const char *repo_id, const char *revision, const char *cache_dir,
                          GError **error);

/* Downloads @repo_id's files (those @opts->include chooses) into the cache, unless they are
 * there, and returns the snapshot folder (snapshots/COMMIT). @opts may be NULL; @result may be
 * NULL (else filled; clear it with lt_hub_result_clear). Errors name the cause: no such
 * repository, revision or file (404), a gated or private repository that needs a token
 * (401/403), no network or DNS, a checksum mismatch; LT_ERROR_CANCELLED when @progress or
 * @cancellable stopped it. */
char *lt_hub_download (const char *repo_id, const LtHubOptions *opts, LtHubProgressFunc progress,
                       gpointer user_data, LtHubResult *result, GCancellable *cancellable,
                       GError **error);

/* The Hub API's answer to GET /api/models/{repo}/revision/{rev} (@data, @size bytes, not
 * necessarily NUL-terminated): its commit "sha" (a name usable as a folder) into @out_commit and
 * its "siblings"[].rfilename (relative paths that stay inside the snapshot) appended to
 * @out_paths (char*, owned by the array). FALSE with an LT_ERROR_FORMAT naming @label (nothing
 * appended) otherwise. The parser lt_hub_download uses; public for the fuzz harness. */
gboolean lt_hub_parse_listing (const char *data, gsize size, const char *label,
                               char **out_commit, GPtrArray *out_paths, GError **error);

G_END_DECLS
