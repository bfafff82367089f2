/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-hub-dialog"

#include "config.h"

#include <glib/gi18n.h>

#include "lathe-hub-dialog.h"
#include "src/core/lt-error.h"
#include "src/core/lt-hub.h"

struct _LatheHubDialog
{
  AdwWindow parent_instance;

  GtkButton *cancel_button;
  GtkButton *download_button;
  AdwPreferencesGroup *group;
  GtkEntry *repo_entry;
  GtkEntry *revision_entry;
  GtkProgressBar *progress_bar;
  GtkLabel *file_label;
  GtkLabel *status_label;

  char *endpoint;
  char *cache_dir;
  GCancellable *cancellable; /* non-NULL while a download runs */
  gboolean disposed;
};

G_DEFINE_FINAL_TYPE (LatheHubDialog, lathe_hub_dialog, ADW_TYPE_WINDOW)

enum
{
  SIGNAL_DOWNLOADED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* The worker's view: inputs copied in, the latest progress under a mutex, posted to the main
 * loop through one low-priority idle at a time that holds only a weak reference. */
typedef struct
{
  GWeakRef self;
  char *repo;
  char *revision;
  char *endpoint;
  char *cache_dir;
  GCancellable *cancellable;
  GMutex lock;
  LtHubProgress progress;
  char *file;
  gboolean idle_pending;
} HubJob;

static void
hub_job_clear (HubJob *job)
{
  g_weak_ref_clear (&job->self);
  g_free (job->repo);
  g_free (job->revision);
  g_free (job->endpoint);
  g_free (job->cache_dir);
  g_clear_object (&job->cancellable);
  g_mutex_clear (&job->lock);
  g_free (job->file);
}

static void
hub_job_unref (HubJob *job)
{
  g_atomic_rc_box_release_full (job, (GDestroyNotify) hub_job_clear);
}

static char *
format_duration (double s)
{
  int t = (int) (s + 0.5);

  if (t >= 3600)
    return g_strdup_printf ("%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  return g_strdup_printf ("%d:%02d", t / 60, t % 60);
}

static void
set_status (LatheHubDialog *self, const char *text, gboolean error)
{
  gtk_label_set_text (self->status_label, text);
  if (error)
    gtk_widget_add_css_class (GTK_WIDGET (self->status_label), "error");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (self->status_label), "error");
}

static void
show_progress (LatheHubDialog *self, const LtHubProgress *p, const char *file)
{
  g_autofree char *done = g_format_size (p->done);
  g_autofree char *total = g_format_size (p->total);
  g_autofree char *speed = g_format_size ((guint64) p->bytes_per_s);
  g_autofree char *eta = p->eta_s >= 0 ? format_duration (p->eta_s) : g_strdup ("–");
  g_autofree char *file_line = NULL;
  g_autofree char *status = NULL;

  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  gtk_widget_set_visible (GTK_WIDGET (self->file_label), TRUE);
  gtk_progress_bar_set_fraction (self->progress_bar,
                                 p->total > 0 ? MIN (1.0, (double) p->done / p->total) : 0.0);
  /* TRANSLATORS: file 2 of 7: model.safetensors */
  file_line = g_strdup_printf (_("File %u of %u: %s"), MIN (p->file_index + 1, p->n_files),
                               p->n_files, file ? file : "");
  gtk_label_set_text (self->file_label, file_line);
  /* TRANSLATORS: 1.2 GB of 2.5 GB · 35.1 MB/s · 0:37 left */
  status = g_strdup_printf (_("%s of %s · %s/s · %s left"), done, total, speed, eta);
  set_status (self, status, FALSE);
}

static gboolean
apply_progress (gpointer data)
{
  HubJob *job = data;
  g_autoptr (LatheHubDialog) self = g_weak_ref_get (&job->self);
  LtHubProgress p;
  g_autofree char *file = NULL;

  g_mutex_lock (&job->lock);
  p = job->progress;
  file = g_strdup (job->file);
  job->idle_pending = FALSE;
  g_mutex_unlock (&job->lock);
  if (self != NULL && self->cancellable == job->cancellable
      && !g_cancellable_is_cancelled (job->cancellable))
    show_progress (self, &p, file);
  return G_SOURCE_REMOVE;
}

static gboolean
on_progress (const LtHubProgress *p, gpointer data)
{
  HubJob *job = data;

  g_mutex_lock (&job->lock);
  job->progress = *p;
  if (g_strcmp0 (job->file, p->file) != 0)
    {
      g_free (job->file);
      job->file = g_strdup (p->file);
    }
  job->progress.file = NULL;
  if (!job->idle_pending)
    {
      job->idle_pending = TRUE;
      g_idle_add_full (G_PRIORITY_LOW, apply_progress, g_atomic_rc_box_acquire (job),
                       (GDestroyNotify) hub_job_unref);
    }
  g_mutex_unlock (&job->lock);
  return !g_cancellable_is_cancelled (job->cancellable);
}

static void
download_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  HubJob *job = data;
  LtHubOptions opts = { 0 };
  GError *error = NULL;
  char *snapshot;

  opts.revision = job->revision;
  opts.endpoint = job->endpoint;
  opts.cache_dir = job->cache_dir;
  snapshot = lt_hub_download (job->repo, &opts, on_progress, job, NULL, cancellable, &error);
  if (snapshot == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, snapshot, g_free);
}

static void
update_sensitivity (LatheHubDialog *self)
{
  g_autofree char *repo = g_strstrip (g_strdup (gtk_editable_get_text (
    GTK_EDITABLE (self->repo_entry))));
  gboolean busy = self->cancellable != NULL;

  gtk_widget_set_sensitive (GTK_WIDGET (self->download_button),
                            !busy && lt_hub_is_repo_id (repo));
  gtk_widget_set_sensitive (GTK_WIDGET (self->repo_entry), !busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->revision_entry), !busy);
}

static void
download_done (GObject *source, GAsyncResult *result, gpointer data)
{
  LatheHubDialog *self = LATHE_HUB_DIALOG (source);
  g_autoptr (GError) error = NULL;
  g_autofree char *snapshot = g_task_propagate_pointer (G_TASK (result), &error);

  if (self->disposed) /* closed while it ran: nothing left to show */
    return;
  g_clear_object (&self->cancellable);
  update_sensitivity (self);
  if (snapshot != NULL)
    {
      g_autofree char *text = g_strdup_printf (_("Ready: %s"), snapshot);
      gtk_progress_bar_set_fraction (self->progress_bar, 1.0);
      set_status (self, text, FALSE);
      g_signal_emit (self, signals[SIGNAL_DOWNLOADED], 0, snapshot);
      gtk_window_close (GTK_WINDOW (self));
      return;
    }
  gtk_widget_set_visible (GTK_WIDGET (self->file_label), FALSE);
  if (g_error_matches (error, LT_ERROR, LT_ERROR_CANCELLED))
    set_status (self, _("Cancelled. Downloading again resumes where it stopped."), FALSE);
  else
    set_status (self, error->message, TRUE);
}

void
lathe_hub_dialog_start (LatheHubDialog *self)
{
  g_autoptr (GTask) task = NULL;
  g_autofree char *repo = NULL;
  g_autofree char *revision = NULL;
  HubJob *job;

  g_return_if_fail (LATHE_IS_HUB_DIALOG (self));
  if (self->cancellable != NULL)
    return;
  repo = g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->repo_entry))));
  revision = g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->revision_entry))));
  if (!lt_hub_is_repo_id (repo))
    {
      set_status (self, _("Give the repository as ORG/NAME, as on the model's Hub page."), TRUE);
      return;
    }

  job = g_atomic_rc_box_new0 (HubJob);
  g_weak_ref_init (&job->self, self);
  g_mutex_init (&job->lock);
  job->repo = g_steal_pointer (&repo);
  job->revision = *revision != '\0' ? g_steal_pointer (&revision) : NULL;
  job->endpoint = g_strdup (self->endpoint);
  job->cache_dir = g_strdup (self->cache_dir);
  self->cancellable = g_cancellable_new ();
  job->cancellable = g_object_ref (self->cancellable);

  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  gtk_progress_bar_set_fraction (self->progress_bar, 0.0);
  set_status (self, _("Asking the Hub for the file list…"), FALSE);
  update_sensitivity (self);

  task = g_task_new (self, self->cancellable, download_done, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) hub_job_unref);
  g_task_run_in_thread (task, download_thread);
}

static void
on_download_clicked (LatheHubDialog *self)
{
  if (gtk_widget_get_sensitive (GTK_WIDGET (self->download_button)))
    lathe_hub_dialog_start (self);
}

static void
on_cancel_clicked (LatheHubDialog *self)
{
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  else
    gtk_window_close (GTK_WINDOW (self));
}

static void
on_repo_changed (LatheHubDialog *self)
{
  update_sensitivity (self);
}

static gboolean
lathe_hub_dialog_close_request (GtkWindow *window)
{
  LatheHubDialog *self = LATHE_HUB_DIALOG (window);

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable); /* the partial file stays for the next time */
  return GTK_WINDOW_CLASS (lathe_hub_dialog_parent_class)->close_request (window);
}

static void
lathe_hub_dialog_dispose (GObject *object)
{
  LatheHubDialog *self = LATHE_HUB_DIALOG (object);

  self->disposed = TRUE;
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_HUB_DIALOG);
  G_OBJECT_CLASS (lathe_hub_dialog_parent_class)->dispose (object);
}

static void
lathe_hub_dialog_finalize (GObject *object)
{
  LatheHubDialog *self = LATHE_HUB_DIALOG (object);

  g_free (self->endpoint);
  g_free (self->cache_dir);
  G_OBJECT_CLASS (lathe_hub_dialog_parent_class)->finalize (object);
}

static void
lathe_hub_dialog_class_init (LatheHubDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);

  object_class->dispose = lathe_hub_dialog_dispose;
  object_class->finalize = lathe_hub_dialog_finalize;
  window_class->close_request = lathe_hub_dialog_close_request;

  /**
   * LatheHubDialog::downloaded:
   * @snapshot: the snapshot folder in the Hugging Face cache
   *
   * The model is in the cache (downloaded now, or found there).
   */
  signals[SIGNAL_DOWNLOADED] = g_signal_new ("downloaded", G_TYPE_FROM_CLASS (klass),
                                             G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                             G_TYPE_NONE, 1, G_TYPE_STRING);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/lathe/Lathe/lathe-hub-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, cancel_button);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, download_button);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, group);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, repo_entry);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, revision_entry);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, file_label);
  gtk_widget_class_bind_template_child (widget_class, LatheHubDialog, status_label);
  gtk_widget_class_bind_template_callback (widget_class, on_download_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_cancel_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_repo_changed);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
lathe_hub_dialog_init (LatheHubDialog *self)
{
  g_autofree char *cache = lt_hub_default_cache_dir ();
  g_autofree char *description = NULL;

  gtk_widget_init_template (GTK_WIDGET (self));
  /* TRANSLATORS: %s is a folder such as ~/.cache/huggingface/hub */
  description = g_strdup_printf (_("Models go to the Hugging Face cache (%s), which "
                                   "transformers, MLX LM and huggingface-cli share: a model "
                                   "already there is not downloaded again. Gated models need "
                                   "HF_TOKEN or a huggingface-cli login."), cache);
  adw_preferences_group_set_description (self->group, description);
  update_sensitivity (self);
}

GtkWidget *
lathe_hub_dialog_new (GtkWindow *parent, const char *repo_id)
{
  LatheHubDialog *self = g_object_new (LATHE_TYPE_HUB_DIALOG, "transient-for", parent, NULL);

  if (repo_id != NULL)
    gtk_editable_set_text (GTK_EDITABLE (self->repo_entry), repo_id);
  return GTK_WIDGET (self);
}

gboolean
lathe_hub_dialog_get_busy (LatheHubDialog *self)
{
  g_return_val_if_fail (LATHE_IS_HUB_DIALOG (self), FALSE);
  return self->cancellable != NULL;
}

void
lathe_hub_dialog_set_endpoint (LatheHubDialog *self, const char *endpoint)
{
  g_return_if_fail (LATHE_IS_HUB_DIALOG (self));
  g_free (self->endpoint);
  self->endpoint = g_strdup (endpoint);
}

void
lathe_hub_dialog_set_cache_dir (LatheHubDialog *self, const char *cache_dir)
{
  g_return_if_fail (LATHE_IS_HUB_DIALOG (self));
  g_free (self->cache_dir);
  self->cache_dir = g_strdup (cache_dir);
}

void
lathe_hub_dialog_show_progress (LatheHubDialog *self, const LtHubProgress *progress)
{
  g_return_if_fail (LATHE_IS_HUB_DIALOG (self));
  show_progress (self, progress, progress->file);
}

const char *
lathe_hub_dialog_get_status (LatheHubDialog *self)
{
  g_return_val_if_fail (LATHE_IS_HUB_DIALOG (self), NULL);
  return gtk_label_get_text (self->status_label);
}

/* ---- a model entry's icon ----------------------------------------------------------------- */

static void
on_entry_downloaded (GtkEntry *entry, const char *snapshot)
{
  gtk_editable_set_text (GTK_EDITABLE (entry), snapshot);
}

static void
on_icon_release (GtkEntry *entry, GtkEntryIconPosition pos)
{
  g_autofree char *text = NULL;
  GtkRoot *root;
  GtkWidget *dialog;

  if (pos != GTK_ENTRY_ICON_SECONDARY)
    return;
  text = g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (entry))));
  root = gtk_widget_get_root (GTK_WIDGET (entry));
  dialog = lathe_hub_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                 lt_hub_is_repo_id (text) ? text : NULL);
  g_signal_connect_object (dialog, "downloaded", G_CALLBACK (on_entry_downloaded), entry,
                           G_CONNECT_SWAPPED);
  gtk_window_present (GTK_WINDOW (dialog));
}

static GtkEntry *
find_entry (GtkWidget *widget)
{
  if (GTK_IS_ENTRY (widget))
    return GTK_ENTRY (widget);
  for (GtkWidget *c = gtk_widget_get_first_child (widget); c != NULL;
       c = gtk_widget_get_next_sibling (c))
    {
      GtkEntry *e = find_entry (c);
      if (e != NULL)
        return e;
    }
  return NULL;
}

void
lathe_hub_dialog_attach (GtkWidget *widget)
{
  GtkEntry *entry;

  g_return_if_fail (GTK_IS_WIDGET (widget));
  entry = find_entry (widget);
  g_return_if_fail (entry != NULL);
  gtk_entry_set_icon_from_icon_name (entry, GTK_ENTRY_ICON_SECONDARY, "folder-download-symbolic");
  gtk_entry_set_icon_tooltip_text (entry, GTK_ENTRY_ICON_SECONDARY,
                                   _("Download from Hugging Face…"));
  g_signal_connect (entry, "icon-release", G_CALLBACK (on_icon_release), NULL);
}
