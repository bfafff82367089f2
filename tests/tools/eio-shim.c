/* SPDX-License-Identifier: GPL-3.0-or-later */
/* An LD_PRELOAD shim for tests: a disk that fails with EIO. Writes to files whose path holds
 * $LATHE_EIO_MATCH fail with EIO once $LATHE_EIO_AFTER bytes have gone to such files (the
 * write that crosses the limit is cut short first, as a real device error leaves it); with
 * $LATHE_EIO_FSYNC set instead, every write succeeds and fsync/fdatasync of such a file fails
 * with EIO (a write-back error). Every other file is untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static long long budget = -1;
static int fsync_mode;
static const char *match;
static int ready;

static void
setup (void)
{
  const char *after;

  if (ready)
    return;
  ready = 1;
  match = getenv ("LATHE_EIO_MATCH");
  after = getenv ("LATHE_EIO_AFTER");
  budget = after ? atoll (after) : -1;
  fsync_mode = getenv ("LATHE_EIO_FSYNC") != NULL;
}

static int
fd_matches (int fd)
{
  char link[64], path[4096];
  ssize_t n;

  if (match == NULL || fd <= 2)
    return 0;
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, path, sizeof path - 1);
  if (n < 0)
    return 0;
  path[n] = '\0';
  return strstr (path, match) != NULL;
}

ssize_t
write (int fd, const void *buf, size_t count)
{
  static ssize_t (*real) (int, const void *, size_t);

  if (real == NULL)
    real = (ssize_t (*) (int, const void *, size_t)) dlsym (RTLD_NEXT, "write");
  setup ();
  if (!fsync_mode && budget >= 0 && fd_matches (fd))
    {
      if (budget == 0)
        {
          errno = EIO;
          return -1;
        }
      if ((long long) count > budget)
        count = (size_t) budget;
      budget -= (long long) count;
    }
  return real (fd, buf, count);
}

static int
sync_common (int fd, const char *name)
{
  int (*real) (int) = (int (*) (int)) dlsym (RTLD_NEXT, name);

  setup ();
  if (fsync_mode && fd_matches (fd))
    {
      errno = EIO;
      return -1;
    }
  return real (fd);
}

int
fsync (int fd)
{
  return sync_common (fd, "fsync");
}

int
fdatasync (int fd)
{
  return sync_common (fd, "fdatasync");
}
