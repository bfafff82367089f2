/* SPDX-License-Identifier: GPL-3.0-or-later */
/* A Hub served on 127.0.0.1 (a SoupServer on its own thread) in the Hub's URL layout, for
 * test-hub and test-hub-crash: the API listing, resolve (small files directly with a git-blob
 * ETag; the LFS file through a 302 to /cdn/SHA256 with X-Linked-Etag and X-Linked-Size), Range
 * on the CDN path. The fixture model is the real tinystories-656k when ../shared has it, else
 * tests/data/models/llama-f32. Faults: a hang-up, a corrupt byte, and a throttle that sends
 * the files' bytes in slow chunks (so that a client can be killed mid-transfer). */
#pragma once

#include <glib.h>
#include <libsoup/soup.h>

G_BEGIN_DECLS

#define REPO "lathe-test/tinystories-656k"
#define GATED "lathe-test/gated"
#define GHOST "lathe-test/ghost-file"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"
#define TOKEN "hf_secret_test_token"

typedef struct
{
  char *path;   /* repository path */
  GBytes *data;
  char *etag;   /* git blob sha1, or sha256 for LFS */
  gboolean lfs;
} FixtureFile;

typedef struct
{
  GMainContext *ctx;
  GMainLoop *loop;
  GThread *thread;
  SoupServer *server;
  GMutex lock;
  GCond cond;
  gboolean ready;
  char *base;           /* http://127.0.0.1:PORT */
  GPtrArray *files;     /* FixtureFile */
  /* what the client asked, read after each run */
  int n_api, n_head, n_resolve_get, n_cdn_get;
  gint64 last_range;    /* the start of the last Range on /cdn, -1: none */
  int n_bearer;         /* requests that carried "Bearer TOKEN" */
  /* faults */
  gint64 drop_after;    /* > 0: the next /cdn GET sends this many bytes and hangs up */
  gboolean corrupt;     /* /cdn sends the LFS file with one byte changed */
  gsize throttle_chunk; /* > 0: file bytes (resolve GET, /cdn) go out in chunks of this size, */
  guint throttle_us;    /* each followed by a pause of this many microseconds */
} Hub;

extern Hub hub;

/* The fixture model's folder. */
char *model_dir (void);
/* Bytes of the fixture's model.safetensors. */
guint64 model_size (void);
/* A fixture file by repository path or by ETag. */
FixtureFile *find_file (const char *path, gboolean by_etag);
/* Loads the fixture and starts the server (hub.base is its URL). */
void server_start (void);
void server_stop (void);
/* Clears the counters and the faults. */
void reset_counts (void);

G_END_DECLS
