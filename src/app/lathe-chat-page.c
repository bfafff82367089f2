/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-chat-page"
#include "config.h"

#include "lathe-chat-page.h"
#include "lathe-chooser.h"
#include "lathe-combo.h"
#include "lathe-hub-dialog.h"

#include <glib/gi18n.h>

#include "src/core/lt-chat.h"
#include "src/core/lt-error.h"
#include "src/core/lt-model-open.h"
#include "src/core/lt-model-train.h"
#include "src/core/lt-run.h"

/* Streamed text reaches the page at most this often (milliseconds). */
#define FLUSH_INTERVAL_MS 100

enum { COL_MAIN, COL_BASE, N_COLS }; /* COL_MAIN: the model as loaded (with the adapter) */

/* The loaded model; owned by the page, used by one worker at a time. */
typedef struct
{
  LtModel *model;
  LtTokenizer *tok;
  LtChat *chat[N_COLS];  /* NULL in completion mode (no chat template); [COL_BASE] only with
                            an adapter */
  gboolean has_adapter;
  char *title;
  char *subtitle;
} Loaded;

static void
loaded_free (Loaded *l)
{
  if (l == NULL)
    return;
  for (int i = 0; i < N_COLS; i++)
    lt_chat_free (l->chat[i]);
  lt_tokenizer_free (l->tok);
  lt_model_free (l->model);
  g_free (l->title);
  g_free (l->subtitle);
  g_free (l);
}

/* One turn on the page: the user's message and one or two replies. */
typedef struct
{
  char *user;
  GtkWidget *box;
  GtkWidget *answers;        /* homogeneous GtkBox of columns */
  GtkLabel *reply[N_COLS];   /* NULL for a column not shown */
  GString *text[N_COLS];
} Turn;

static void
turn_free (Turn *t)
{
  g_free (t->user);
  for (int i = 0; i < N_COLS; i++)
    if (t->text[i] != NULL)
      g_string_free (t->text[i], TRUE);
  g_free (t);
}

struct _LatheChatPage
{
  GtkWidget parent_instance;

  GtkWidget *content;
  AdwActionRow *model_row;
  GtkEntry *model_entry;
  GtkButton *model_button;
  GtkMenuButton *choices_button;
  GtkEntry *adapter_entry;
  GtkButton *adapter_button;
  AdwComboRow *quantization_row;
  AdwActionRow *load_row;
  GtkSpinner *load_spinner;
  GtkButton *load_button;
  GtkEntry *system_entry;
  GtkSpinButton *temperature_spin;
  GtkSpinButton *top_p_spin;
  GtkSpinButton *max_tokens_spin;
  AdwActionRow *compare_row;
  GtkSwitch *compare_switch;
  GtkStack *conversation_stack;
  GtkScrolledWindow *conversation_scroll;
  GtkBox *messages_box;
  GtkButton *clear_button;
  GtkButton *regenerate_button;
  GtkEntry *prompt_entry;
  GtkButton *stop_button;
  GtkButton *send_button;

  Loaded *loaded;
  GPtrArray *turns;          /* Turn* */
  GCancellable *cancellable; /* of the job running, or NULL */
  gboolean busy;
  gboolean disposed;         /* the template is gone: finished jobs only clean up */
  char *error;
  guint64 seed;
  guint n_updates;
  GtkFileChooserNative *chooser;

  /* the model menu: recent folders and finished runs */
  GSettings *settings;       /* NULL without the schema (the model menu then lists runs only) */
  GMenu *choices_menu;
  GPtrArray *run_choices;    /* LatheModelChoice of the last scan */
  GCancellable *scan_cancellable;
  char *runs_folder;         /* set by lathe_chat_page_set_runs_folder, else NULL */

  /* filled by the worker, taken by the main thread under @lock */
  GMutex lock;
  GString *pending[N_COLS];
  int load_done, load_total;
  gboolean flush_queued;
};

G_DEFINE_FINAL_TYPE (LatheChatPage, lathe_chat_page, GTK_TYPE_WIDGET)

enum { SIGNAL_LOADED, SIGNAL_REPLY_FINISHED, SIGNAL_CHOICES_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void update_sensitivity (LatheChatPage *self);

static void
set_error (LatheChatPage *self, const char *message)
{
  g_free (self->error);
  self->error = g_strdup (message);
}

/* ---- streaming: worker → one throttled timeout → labels ---- */

static gboolean
flush_cb (gpointer user_data)
{
  LatheChatPage *self = user_data;
  char *pieces[N_COLS] = { NULL };
  int done, total;
  Turn *turn;

  g_mutex_lock (&self->lock);
  for (int i = 0; i < N_COLS; i++)
    if (self->pending[i]->len > 0)
      {
        pieces[i] = g_strdup (self->pending[i]->str);
        g_string_truncate (self->pending[i], 0);
      }
  done = self->load_done;
  total = self->load_total;
  self->flush_queued = FALSE;
  g_mutex_unlock (&self->lock);

  if (self->disposed)
    {
      for (int i = 0; i < N_COLS; i++)
        g_free (pieces[i]);
      return G_SOURCE_REMOVE;
    }
  if (self->loaded == NULL && total > 0)
    {
      g_autofree char *text = g_strdup_printf (_("Loading… %d of %d layers"), done, total);
      adw_action_row_set_subtitle (self->load_row, text);
    }
  turn = self->turns->len > 0 ? g_ptr_array_index (self->turns, self->turns->len - 1) : NULL;
  for (int i = 0; turn != NULL && i < N_COLS; i++)
    if (pieces[i] != NULL && turn->reply[i] != NULL)
      {
        g_string_append (turn->text[i], pieces[i]);
        gtk_label_set_text (turn->reply[i], turn->text[i]->str);
        self->n_updates++;
      }
  for (int i = 0; i < N_COLS; i++)
    g_free (pieces[i]);
  return G_SOURCE_REMOVE;
}

/* Worker side: wakes the main thread at most every FLUSH_INTERVAL_MS. */
static void
queue_flush_locked (LatheChatPage *self)
{
  if (self->flush_queued)
    return;
  self->flush_queued = TRUE;
  g_timeout_add_full (G_PRIORITY_DEFAULT_IDLE, FLUSH_INTERVAL_MS, flush_cb,
                      g_object_ref (self), g_object_unref);
}

typedef struct
{
  LatheChatPage *self;
  int column;
} PieceTarget;

static gboolean
piece_cb (const char *text, gpointer user_data)
{
  PieceTarget *t = user_data;

  g_mutex_lock (&t->self->lock);
  g_string_append (t->self->pending[t->column], text);
  queue_flush_locked (t->self);
  g_mutex_unlock (&t->self->lock);
  return TRUE;
}

static void
load_progress_cb (int done, int total, gpointer user_data)
{
  LatheChatPage *self = user_data;

  g_mutex_lock (&self->lock);
  self->load_done = done;
  self->load_total = total;
  queue_flush_locked (self);
  g_mutex_unlock (&self->lock);
}

/* ---- loading ---- */

typedef struct
{
  char *model_dir;
  char *adapter;
  LtQuantization quantization;
  LatheChatPage *self;       /* for progress; the task holds a reference */
} LoadJob;

static void
load_job_free (LoadJob *job)
{
  g_free (job->model_dir);
  g_free (job->adapter);
  g_free (job);
}

static void
load_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  LoadJob *job = task_data;
  LtLoadOptions opts = { .quantization = job->quantization, .group_fallback = TRUE,
                         .progress = load_progress_cb, .progress_data = job->self };
  Loaded *l = g_new0 (Loaded, 1);
  GError *error = NULL;
  g_autofree char *name = g_path_get_basename (job->model_dir);

  (void) source;
  (void) cancellable;
  if ((l->model = lt_model_open (job->model_dir, &opts, &error)) == NULL
      || (l->tok = lt_model_open_tokenizer (job->model_dir, &error)) == NULL)
    goto fail;
  l->model->decode_act8 = TRUE; /* replies as `lathe chat` gives them (its default) */
  if (job->adapter != NULL)
    {
      if (!lt_model_load_adapters (l->model, job->adapter, &error))
        goto fail;
      l->has_adapter = TRUE;
    }
  l->chat[COL_MAIN] = lt_chat_new (l->model, l->tok, 0, &error);
  if (l->chat[COL_MAIN] == NULL)
    {
      if (!g_error_matches (error, LT_ERROR, LT_ERROR_UNSUPPORTED))
        goto fail;
      g_clear_error (&error);  /* no chat template: plain completion */
    }
  else if (l->has_adapter)
    l->chat[COL_BASE] = lt_chat_new (l->model, l->tok, 0, &error);

  l->title = job->adapter != NULL
               ? g_strdup_printf (_("%s with an adapter"), name)
               : g_strdup (name);
  l->subtitle = g_strdup_printf ("%s · %s",
                                 l->chat[COL_MAIN] != NULL
                                   ? _("Chat through the model's template")
                                   : _("No chat template: each message is a prompt to continue"),
                                 job->quantization == LT_QUANTIZATION_NONE
                                   ? _("stored precision")
                                   : lt_quantization_to_string (job->quantization));
  g_task_return_pointer (task, l, (GDestroyNotify) loaded_free);
  return;

fail:
  loaded_free (l);
  g_task_return_error (task, error);
}

static void
load_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (source);
  g_autoptr (GError) error = NULL;
  Loaded *l = g_task_propagate_pointer (G_TASK (result), &error);

  (void) user_data;
  self->busy = FALSE;
  g_clear_object (&self->cancellable);
  if (self->disposed)
    {
      loaded_free (l);
      return;
    }
  gtk_spinner_stop (self->load_spinner);
  gtk_widget_set_visible (GTK_WIDGET (self->load_spinner), FALSE);
  if (l == NULL)
    {
      set_error (self, error->message);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->load_row), _("Not loaded"));
      adw_action_row_set_subtitle (self->load_row, error->message);
      gtk_widget_add_css_class (GTK_WIDGET (self->load_row), "error");
    }
  else
    {
      LoadJob *job = g_task_get_task_data (G_TASK (result));

      set_error (self, NULL);
      self->loaded = l;
      /* a folder (not a repository id resolved in the HF cache) joins the recent models */
      if (self->settings != NULL && g_file_test (job->model_dir, G_FILE_TEST_IS_DIR))
        lathe_recent_models_add (self->settings, job->model_dir);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->load_row), l->title);
      adw_action_row_set_subtitle (self->load_row, l->subtitle);
      gtk_widget_remove_css_class (GTK_WIDGET (self->load_row), "error");
      gtk_widget_grab_focus (GTK_WIDGET (self->prompt_entry));
    }
  update_sensitivity (self);
  g_signal_emit (self, signals[SIGNAL_LOADED], 0);
}

static char *
entry_path (GtkEntry *entry)
{
  g_autofree char *text = g_strstrip (g_strdup (gtk_editable_get_text (GTK_EDITABLE (entry))));
  return text[0] != '\0' ? g_steal_pointer (&text) : NULL;
}

static void
start_load (LatheChatPage *self)
{
  g_autoptr (GTask) task = NULL;
  LoadJob *job;
  g_autofree char *model_dir = entry_path (self->model_entry);

  if (self->busy)
    return;
  if (model_dir == NULL)
    {
      set_error (self, _("Choose a model folder first"));
      adw_action_row_set_subtitle (self->load_row, self->error);
      gtk_widget_add_css_class (GTK_WIDGET (self->load_row), "error");
      g_signal_emit (self, signals[SIGNAL_LOADED], 0);
      return;
    }
  lathe_chat_page_clear (self);
  g_clear_pointer (&self->loaded, loaded_free);
  job = g_new0 (LoadJob, 1);
  job->model_dir = g_steal_pointer (&model_dir);
  job->adapter = entry_path (self->adapter_entry);
  job->quantization = (LtQuantization) adw_combo_row_get_selected (self->quantization_row);
  job->self = self;

  self->busy = TRUE;
  self->load_done = self->load_total = 0;
  self->cancellable = g_cancellable_new ();
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->load_row), _("Loading…"));
  adw_action_row_set_subtitle (self->load_row, job->model_dir);
  gtk_widget_remove_css_class (GTK_WIDGET (self->load_row), "error");
  gtk_spinner_start (self->load_spinner);
  gtk_widget_set_visible (GTK_WIDGET (self->load_spinner), TRUE);
  update_sensitivity (self);

  task = g_task_new (self, self->cancellable, load_done_cb, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) load_job_free);
  g_task_run_in_thread (task, load_thread);
}

/* ---- replies ---- */

typedef struct
{
  Loaded *loaded;            /* borrowed: the page keeps it while busy */
  LatheChatPage *self;
  char *user;
  LtSampling sampling;
  gboolean compare;
  gboolean regenerate;
} ReplyJob;

static void
reply_job_free (ReplyJob *job)
{
  g_free (job->user);
  g_free (job);
}

/* Plain completion for a model without a chat template: the message is the prompt. */
static gboolean
complete (Loaded *l, const char *prompt, const LtSampling *s, PieceTarget *target,
          GCancellable *cancellable, GError **error)
{
  g_autoptr (GArray) ids = lt_tokenizer_encode (l->tok, prompt, -1, TRUE, error);
  int V = l->model->config->vocab_size;
  g_autofree float *logits = NULL;
  g_autoptr (LtKVCache) cache = NULL;
  g_autoptr (LtTextStream) stream = NULL;
  guint64 rng = s->seed;

  if (ids == NULL)
    return FALSE;
  if (ids->len == 0)
    {
      int32_t bos = lt_tokenizer_get_bos_id (l->tok);
      if (bos < 0)
        {
          g_set_error (error, LT_ERROR, LT_ERROR_INVALID_ARGUMENT,
                       _("The message is empty and the model has no BOS token to start from"));
          return FALSE;
        }
      g_array_append_val (ids, bos);
    }
  logits = g_new (float, V);
  cache = lt_kv_cache_new (l->model, (int) ids->len + s->max_tokens);
  stream = lt_text_stream_new (l->tok);
  if (!lt_model_decode (l->model, cache, (const int32_t *) ids->data, (int) ids->len, logits,
                        FALSE, error))
    return FALSE;
  for (int step = 0; step < s->max_tokens && !g_cancellable_is_cancelled (cancellable); step++)
    {
      int32_t next = lt_sample_logits (logits, V, s->temperature, s->top_p, &rng);
      g_autofree char *piece = NULL;

      if (lt_model_is_eos (l->model, l->tok, next))
        break;
      piece = lt_text_stream_push (stream, next);
      if (piece[0] != '\0')
        piece_cb (piece, target);
      if (step + 1 < s->max_tokens
          && !lt_model_decode (l->model, cache, &next, 1, logits, FALSE, error))
        return FALSE;
    }
  g_autofree char *rest = lt_text_stream_flush (stream);
  if (rest[0] != '\0')
    piece_cb (rest, target);
  return TRUE;
}

static void
reply_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  ReplyJob *job = task_data;
  Loaded *l = job->loaded;
  GError *error = NULL;
  int cols[N_COLS], n = 0;

  (void) source;
  /* in Compare the base answers first, then the model with its adapter */
  if (job->compare)
    cols[n++] = COL_BASE;
  cols[n++] = COL_MAIN;
  for (int i = 0; i < n; i++)
    {
      int col = cols[i];
      PieceTarget target = { job->self, col };
      LtChat *chat = l->chat[col];

      if (l->has_adapter)
        lt_model_set_adapters_enabled (l->model, col == COL_MAIN);
      if (l->chat[COL_MAIN] == NULL)
        {
          if (!complete (l, job->user, &job->sampling, &target, cancellable, &error))
            break;
          continue;
        }
      if (job->regenerate)
        g_free (lt_chat_take_last_turn (chat));
      g_autofree char *reply = lt_chat_reply (chat, job->user, &job->sampling, piece_cb,
                                              &target, cancellable, &error);
      if (reply == NULL)
        break;
    }
  if (l->has_adapter)
    lt_model_set_adapters_enabled (l->model, TRUE);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
reply_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (source);
  g_autoptr (GError) error = NULL;

  (void) user_data;
  self->busy = FALSE;
  g_clear_object (&self->cancellable);
  if (self->disposed)
    return;
  flush_cb (self);  /* the text still pending */
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      Turn *turn = g_ptr_array_index (self->turns, self->turns->len - 1);
      set_error (self, error->message);
      for (int i = 0; i < N_COLS; i++)
        if (turn->reply[i] != NULL && turn->text[i]->len == 0)
          {
            gtk_label_set_text (turn->reply[i], error->message);
            gtk_widget_add_css_class (GTK_WIDGET (turn->reply[i]), "error");
          }
    }
  else
    set_error (self, NULL);
  update_sensitivity (self);
  gtk_widget_grab_focus (GTK_WIDGET (self->prompt_entry));
  g_signal_emit (self, signals[SIGNAL_REPLY_FINISHED], 0);
}

static void
copy_clicked_cb (GtkButton *button, GtkLabel *label)
{
  gdk_clipboard_set_text (gtk_widget_get_clipboard (GTK_WIDGET (button)),
                          gtk_label_get_text (label));
}

static GtkWidget *
reply_column (Turn *turn, int col, const char *heading)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  GtkWidget *top = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  GtkWidget *title = gtk_label_new (heading);
  GtkWidget *label = gtk_label_new ("");
  GtkWidget *copy = gtk_button_new_from_icon_name ("edit-copy-symbolic");

  gtk_widget_add_css_class (box, "card");
  gtk_widget_add_css_class (box, "lathe-reply");
  gtk_label_set_xalign (GTK_LABEL (title), 0);
  gtk_widget_set_hexpand (title, TRUE);
  gtk_widget_add_css_class (title, "caption-heading");
  gtk_widget_add_css_class (title, "dim-label");
  gtk_widget_add_css_class (copy, "flat");
  gtk_widget_set_tooltip_text (copy, _("Copy the reply"));
  gtk_box_append (GTK_BOX (top), title);
  gtk_box_append (GTK_BOX (top), copy);
  gtk_label_set_wrap (GTK_LABEL (label), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (label), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_widget_set_margin_start (top, 12);
  gtk_widget_set_margin_end (top, 6);
  gtk_widget_set_margin_top (top, 6);
  gtk_widget_set_margin_start (label, 12);
  gtk_widget_set_margin_end (label, 12);
  gtk_widget_set_margin_bottom (label, 12);
  gtk_box_append (GTK_BOX (box), top);
  gtk_box_append (GTK_BOX (box), label);
  g_signal_connect (copy, "clicked", G_CALLBACK (copy_clicked_cb), label);
  turn->reply[col] = GTK_LABEL (label);
  turn->text[col] = g_string_new (NULL);
  return box;
}

/* Adds (or, for @turn, empties) the reply columns of a turn. */
static void
fill_answers (LatheChatPage *self, Turn *turn, gboolean compare)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (turn->answers)) != NULL)
    gtk_box_remove (GTK_BOX (turn->answers), child);
  for (int i = 0; i < N_COLS; i++)
    {
      turn->reply[i] = NULL;
      if (turn->text[i] != NULL)
        g_string_free (turn->text[i], TRUE);
      turn->text[i] = NULL;
    }
  if (compare)
    gtk_box_append (GTK_BOX (turn->answers), reply_column (turn, COL_BASE, _("Base model")));
  gtk_box_append (GTK_BOX (turn->answers),
                  reply_column (turn, COL_MAIN,
                                compare ? _("With the adapter")
                                        : self->loaded->chat[COL_MAIN] != NULL ? _("Assistant")
                                                                               : _("Continuation")));
}

static Turn *
add_turn (LatheChatPage *self, const char *user, gboolean compare)
{
  Turn *turn = g_new0 (Turn, 1);
  GtkWidget *bubble = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *text = gtk_label_new (user);

  turn->user = g_strdup (user);
  turn->box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_label_set_wrap (GTK_LABEL (text), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (text), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_selectable (GTK_LABEL (text), TRUE);
  gtk_label_set_xalign (GTK_LABEL (text), 0);
  gtk_widget_set_margin_top (text, 8);
  gtk_widget_set_margin_bottom (text, 8);
  gtk_widget_set_margin_start (text, 12);
  gtk_widget_set_margin_end (text, 12);
  gtk_box_append (GTK_BOX (bubble), text);
  gtk_widget_set_halign (bubble, GTK_ALIGN_END);
  gtk_widget_set_margin_start (bubble, 48);
  gtk_widget_add_css_class (bubble, "card");
  gtk_widget_add_css_class (bubble, "lathe-user-message");
  turn->answers = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_box_set_homogeneous (GTK_BOX (turn->answers), TRUE);
  gtk_box_append (GTK_BOX (turn->box), bubble);
  gtk_box_append (GTK_BOX (turn->box), turn->answers);
  gtk_box_append (self->messages_box, turn->box);
  g_ptr_array_add (self->turns, turn);
  fill_answers (self, turn, compare);
  gtk_stack_set_visible_child_name (self->conversation_stack, "conversation");
  return turn;
}

static void
start_reply (LatheChatPage *self, const char *user, gboolean regenerate)
{
  g_autoptr (GTask) task = NULL;
  ReplyJob *job = g_new0 (ReplyJob, 1);
  gboolean compare = self->loaded->has_adapter && gtk_switch_get_active (self->compare_switch);
  Turn *turn;

  if (regenerate)
    {
      turn = g_ptr_array_index (self->turns, self->turns->len - 1);
      fill_answers (self, turn, compare);
    }
  else
    turn = add_turn (self, user, compare);

  job->loaded = self->loaded;
  job->self = self;
  job->user = g_strdup (user);
  job->compare = compare;
  job->regenerate = regenerate;
  job->sampling.max_tokens = gtk_spin_button_get_value_as_int (self->max_tokens_spin);
  job->sampling.temperature = (float) gtk_spin_button_get_value (self->temperature_spin);
  job->sampling.top_p = (float) gtk_spin_button_get_value (self->top_p_spin);
  job->sampling.seed = self->seed;

  g_mutex_lock (&self->lock);
  for (int i = 0; i < N_COLS; i++)
    g_string_truncate (self->pending[i], 0);
  g_mutex_unlock (&self->lock);
  self->busy = TRUE;
  self->cancellable = g_cancellable_new ();
  update_sensitivity (self);

  task = g_task_new (self, self->cancellable, reply_done_cb, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) reply_job_free);
  g_task_run_in_thread (task, reply_thread);
}

/* ---- the page ---- */

static void
update_sensitivity (LatheChatPage *self)
{
  gboolean ready = self->loaded != NULL && !self->busy;
  gboolean replying = self->loaded != NULL && self->busy;

  gtk_widget_set_sensitive (GTK_WIDGET (self->load_button), !self->busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->send_button), ready);
  gtk_widget_set_sensitive (GTK_WIDGET (self->prompt_entry), self->loaded != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->regenerate_button),
                            ready && self->turns->len > 0);
  gtk_widget_set_sensitive (GTK_WIDGET (self->clear_button), ready && self->turns->len > 0);
  gtk_widget_set_visible (GTK_WIDGET (self->stop_button), replying);
  gtk_widget_set_visible (GTK_WIDGET (self->send_button), !replying);
  gtk_widget_set_sensitive (GTK_WIDGET (self->compare_row),
                            self->loaded != NULL && self->loaded->has_adapter && !self->busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->system_entry), !self->busy);
}

static void
send_clicked_cb (LatheChatPage *self)
{
  g_autofree char *text = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->prompt_entry)));

  if (lathe_chat_page_send (self, text))
    gtk_editable_set_text (GTK_EDITABLE (self->prompt_entry), "");
}

static void
chooser_response_cb (LatheChatPage *self, int response, GtkFileChooserNative *chooser)
{
  GtkEntry *target = g_object_get_data (G_OBJECT (chooser), "target");

  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      g_autofree char *path = g_file_get_path (file);
      if (path != NULL)
        gtk_editable_set_text (GTK_EDITABLE (target), path);
    }
  g_clear_object (&self->chooser);
}

static void
choose_folder (LatheChatPage *self, GtkEntry *target, const char *title)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  g_clear_object (&self->chooser);
  self->chooser = gtk_file_chooser_native_new (title, GTK_IS_WINDOW (root) ? GTK_WINDOW (root)
                                                                           : NULL,
                                               GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                               _("_Select"), _("_Cancel"));
  g_object_set_data (G_OBJECT (self->chooser), "target", target);
  g_signal_connect_swapped (self->chooser, "response", G_CALLBACK (chooser_response_cb), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
model_button_clicked_cb (LatheChatPage *self)
{
  choose_folder (self, self->model_entry, _("Model Folder"));
}

static void
adapter_button_clicked_cb (LatheChatPage *self)
{
  choose_folder (self, self->adapter_entry, _("Adapter Folder"));
}

static void
system_changed_cb (LatheChatPage *self)
{
  g_autofree char *system = entry_path (self->system_entry);

  if (self->loaded == NULL)
    return;
  for (int i = 0; i < N_COLS; i++)
    if (self->loaded->chat[i] != NULL)
      lt_chat_set_system (self->loaded->chat[i], system);
}

static void
compare_changed_cb (LatheChatPage *self)
{
  /* each column keeps its own conversation: a change starts a new one */
  if (self->turns->len > 0 && !self->busy)
    lathe_chat_page_clear (self);
}

static gboolean
stop_shortcut_cb (GtkWidget *widget, GVariant *args, gpointer user_data)
{
  (void) args;
  (void) user_data;
  lathe_chat_page_stop (LATHE_CHAT_PAGE (widget));
  return TRUE;
}

/* ---- the model menu: recent model folders and finished runs ---- */

static void
show_load_error (LatheChatPage *self, const char *message)
{
  set_error (self, message);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->load_row), _("Not loaded"));
  adw_action_row_set_subtitle (self->load_row, message);
  gtk_widget_add_css_class (GTK_WIDGET (self->load_row), "error");
}

static void
refill_choices (LatheChatPage *self)
{
  guint n = lathe_model_choices_fill_menu (self->choices_menu, self->settings, self->run_choices,
                                           "chat.use-choice");

  gtk_widget_set_sensitive (GTK_WIDGET (self->choices_button), n > 0);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->choices_button),
                               n > 0 ? _("Recent models and finished runs")
                                     : _("No recent models or finished runs yet"));
  g_signal_emit (self, signals[SIGNAL_CHOICES_CHANGED], 0);
}

static void
scan_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  (void) source;
  g_task_return_pointer (task, lathe_model_choices_scan (task_data, cancellable),
                         (GDestroyNotify) g_ptr_array_unref);
}

static void
scan_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (source);
  GPtrArray *choices = g_task_propagate_pointer (G_TASK (result), NULL);

  (void) user_data;
  if (g_task_get_cancellable (G_TASK (result)) == self->scan_cancellable)
    g_clear_object (&self->scan_cancellable);
  if (self->disposed || choices == NULL
      || g_cancellable_is_cancelled (g_task_get_cancellable (G_TASK (result))))
    {
      g_clear_pointer (&choices, g_ptr_array_unref);
      return;
    }
  g_clear_pointer (&self->run_choices, g_ptr_array_unref);
  self->run_choices = choices;
  refill_choices (self);
}

/* Scans the runs folders for finished runs in a worker; the menu is refilled when it is done. */
static void
rescan_choices (LatheChatPage *self)
{
  g_autoptr (GTask) task = NULL;
  GStrv folders;

  if (self->disposed)
    return;
  if (self->scan_cancellable != NULL)
    g_cancellable_cancel (self->scan_cancellable);
  g_clear_object (&self->scan_cancellable);
  if (self->runs_folder != NULL)
    {
      folders = g_new0 (char *, 2);
      folders[0] = g_strdup (self->runs_folder);
    }
  else if (self->settings != NULL)
    folders = lathe_model_choices_folders (self->settings);
  else
    folders = g_new0 (char *, 1);
  self->scan_cancellable = g_cancellable_new ();
  task = g_task_new (self, self->scan_cancellable, scan_done_cb, NULL);
  g_task_set_task_data (task, folders, (GDestroyNotify) g_strfreev);
  g_task_run_in_thread (task, scan_thread);
}

/* "chat.use-choice" (model, adapter): fills the fields from a menu item; a folder that is gone
 * is said so on the Load row (and leaves the recent list) instead of being loaded. */
static void
use_choice_action (GtkWidget *widget, const char *action_name, GVariant *parameter)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (widget);
  const char *model, *adapter;
  g_autofree char *message = NULL;

  (void) action_name;
  g_variant_get (parameter, "(&s&s)", &model, &adapter);
  if (self->busy)
    return;
  if (!g_file_test (model, G_FILE_TEST_IS_DIR))
    {
      if (adapter[0] != '\0')
        /* Translators: %s is a model folder */
        message = g_strdup_printf (_("The model folder %s that this run was trained on no longer "
                                     "exists. Choose the model with the folder button."), model);
      else
        /* Translators: %s is a model folder */
        message = g_strdup_printf (_("The model folder %s no longer exists (moved or deleted); "
                                     "it is removed from the recent models."), model);
      if (self->settings != NULL && adapter[0] == '\0')
        lathe_recent_models_remove (self->settings, model);
    }
  else if (adapter[0] != '\0' && !g_file_test (adapter, G_FILE_TEST_IS_DIR))
    /* Translators: %s is a run folder */
    message = g_strdup_printf (_("The run folder %s no longer exists (moved or deleted)."),
                               adapter);
  if (message != NULL)
    {
      show_load_error (self, message);
      return;
    }
  gtk_editable_set_text (GTK_EDITABLE (self->model_entry), model);
  gtk_editable_set_text (GTK_EDITABLE (self->adapter_entry), adapter);
  set_error (self, NULL);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self->load_row), _("Not loaded"));
  adw_action_row_set_subtitle (self->load_row, adapter[0] != '\0'
                                                 ? _("The run's base model with its adapter")
                                                 : model);
  gtk_widget_remove_css_class (GTK_WIDGET (self->load_row), "error");
  gtk_widget_grab_focus (GTK_WIDGET (self->load_button));
}

/* The model and run folder the Train tab uses, as a starting point. */
static void
prefill_from_settings (LatheChatPage *self)
{
  GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
  g_autoptr (GSettingsSchema) schema = source ? g_settings_schema_source_lookup (
                                                  source, "io.github.lathe.Lathe", TRUE)
                                              : NULL;
  GSettings *settings;
  g_autofree char *model = NULL;
  g_autofree char *run = NULL;
  g_autofree char *adapter = NULL;

  if (schema == NULL || !g_settings_schema_has_key (schema, "model"))
    return;
  settings = self->settings = g_settings_new ("io.github.lathe.Lathe");
  g_signal_connect_object (settings, "changed::recent-models", G_CALLBACK (refill_choices), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (settings, "changed::adapter-path", G_CALLBACK (rescan_choices), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (settings, "changed::runs-folder", G_CALLBACK (rescan_choices), self,
                           G_CONNECT_SWAPPED);
  model = g_settings_get_string (settings, "model");
  run = g_settings_get_string (settings, "adapter-path");
  gtk_editable_set_text (GTK_EDITABLE (self->model_entry), model);
  adapter = g_build_filename (run, "adapters.safetensors", NULL);
  if (run[0] != '\0' && g_file_test (adapter, G_FILE_TEST_IS_REGULAR))
    gtk_editable_set_text (GTK_EDITABLE (self->adapter_entry), run);
}

static void
lathe_chat_page_dispose (GObject *object)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (object);

  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  self->disposed = TRUE;
  if (self->scan_cancellable != NULL)
    g_cancellable_cancel (self->scan_cancellable);
  g_clear_object (&self->scan_cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  if (self->turns != NULL)
    g_ptr_array_set_size (self->turns, 0);
  g_clear_object (&self->chooser);
  gtk_widget_dispose_template (GTK_WIDGET (self), LATHE_TYPE_CHAT_PAGE);
  G_OBJECT_CLASS (lathe_chat_page_parent_class)->dispose (object);
}

static void
lathe_chat_page_finalize (GObject *object)
{
  LatheChatPage *self = LATHE_CHAT_PAGE (object);

  /* a worker holds a reference to the page (its GTask), so none runs now */
  g_clear_pointer (&self->loaded, loaded_free);
  g_ptr_array_unref (self->turns);
  for (int i = 0; i < N_COLS; i++)
    g_string_free (self->pending[i], TRUE);
  g_mutex_clear (&self->lock);
  g_free (self->error);
  g_clear_pointer (&self->run_choices, g_ptr_array_unref);
  g_clear_object (&self->choices_menu);
  g_free (self->runs_folder);
  G_OBJECT_CLASS (lathe_chat_page_parent_class)->finalize (object);
}

static void
lathe_chat_page_class_init (LatheChatPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = lathe_chat_page_dispose;
  object_class->finalize = lathe_chat_page_finalize;

  signals[SIGNAL_LOADED] = g_signal_new ("loaded", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                         0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_REPLY_FINISHED] = g_signal_new ("reply-finished", G_TYPE_FROM_CLASS (klass),
                                                 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                 G_TYPE_NONE, 0);
  signals[SIGNAL_CHOICES_CHANGED] = g_signal_new ("choices-changed", G_TYPE_FROM_CLASS (klass),
                                                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                  G_TYPE_NONE, 0);
  gtk_widget_class_install_action (widget_class, "chat.use-choice", "(ss)", use_choice_action);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/lathe/Lathe/lathe-chat-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, LatheChatPage, name)
  BIND (content);
  BIND (model_row);
  BIND (model_entry);
  BIND (model_button);
  BIND (choices_button);
  BIND (adapter_entry);
  BIND (adapter_button);
  BIND (quantization_row);
  BIND (load_row);
  BIND (load_spinner);
  BIND (load_button);
  BIND (system_entry);
  BIND (temperature_spin);
  BIND (top_p_spin);
  BIND (max_tokens_spin);
  BIND (compare_row);
  BIND (compare_switch);
  BIND (conversation_stack);
  BIND (conversation_scroll);
  BIND (messages_box);
  BIND (clear_button);
  BIND (regenerate_button);
  BIND (prompt_entry);
  BIND (stop_button);
  BIND (send_button);
#undef BIND
  gtk_widget_class_add_binding (widget_class, GDK_KEY_Escape, 0, stop_shortcut_cb, NULL);
}

static void
lathe_chat_page_init (LatheChatPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  lathe_combo_rows_keep_values (GTK_WIDGET (self));
  lathe_hub_dialog_attach (GTK_WIDGET (self->model_entry)); /* a repo id → the HF cache */
  g_mutex_init (&self->lock);
  for (int i = 0; i < N_COLS; i++)
    self->pending[i] = g_string_new (NULL);
  self->turns = g_ptr_array_new_with_free_func ((GDestroyNotify) turn_free);
  self->seed = (guint64) g_get_real_time ();

  g_signal_connect_swapped (self->load_button, "clicked", G_CALLBACK (start_load), self);
  g_signal_connect_swapped (self->send_button, "clicked", G_CALLBACK (send_clicked_cb), self);
  g_signal_connect_swapped (self->prompt_entry, "activate", G_CALLBACK (send_clicked_cb), self);
  g_signal_connect_swapped (self->stop_button, "clicked", G_CALLBACK (lathe_chat_page_stop),
                            self);
  g_signal_connect_swapped (self->regenerate_button, "clicked",
                            G_CALLBACK (lathe_chat_page_regenerate), self);
  g_signal_connect_swapped (self->clear_button, "clicked", G_CALLBACK (lathe_chat_page_clear),
                            self);
  g_signal_connect_swapped (self->model_button, "clicked", G_CALLBACK (model_button_clicked_cb),
                            self);
  g_signal_connect_swapped (self->adapter_button, "clicked",
                            G_CALLBACK (adapter_button_clicked_cb), self);
  g_signal_connect_swapped (self->system_entry, "changed", G_CALLBACK (system_changed_cb), self);
  g_signal_connect_swapped (self->compare_switch, "notify::active",
                            G_CALLBACK (compare_changed_cb), self);
  self->choices_menu = g_menu_new ();
  gtk_menu_button_set_menu_model (self->choices_button, G_MENU_MODEL (self->choices_menu));
  prefill_from_settings (self);
  refill_choices (self);
  /* runs finish while the app is open: the list is read again each time the page is shown */
  g_signal_connect (self, "map", G_CALLBACK (rescan_choices), NULL);
  update_sensitivity (self);
}

GtkWidget *
lathe_chat_page_new (void)
{
  return g_object_new (LATHE_TYPE_CHAT_PAGE, NULL);
}

void
lathe_chat_page_load (LatheChatPage *self, const char *model_dir, const char *adapter)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));

  if (model_dir != NULL)
    gtk_editable_set_text (GTK_EDITABLE (self->model_entry), model_dir);
  if (adapter != NULL)
    gtk_editable_set_text (GTK_EDITABLE (self->adapter_entry), adapter);
  start_load (self);
}

gboolean
lathe_chat_page_send (LatheChatPage *self, const char *text)
{
  g_autofree char *message = NULL;

  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), FALSE);
  message = g_strstrip (g_strdup (text ? text : ""));
  if (self->busy || self->loaded == NULL || message[0] == '\0')
    return FALSE;
  system_changed_cb (self);
  start_reply (self, message, FALSE);
  return TRUE;
}

void
lathe_chat_page_stop (LatheChatPage *self)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  if (self->cancellable != NULL && self->loaded != NULL)
    g_cancellable_cancel (self->cancellable);
}

gboolean
lathe_chat_page_regenerate (LatheChatPage *self)
{
  Turn *turn;

  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), FALSE);
  if (self->busy || self->loaded == NULL || self->turns->len == 0)
    return FALSE;
  turn = g_ptr_array_index (self->turns, self->turns->len - 1);
  self->seed++;  /* a sampled reply comes out differently */
  start_reply (self, turn->user, TRUE);
  return TRUE;
}

void
lathe_chat_page_clear (LatheChatPage *self)
{
  GtkWidget *child;

  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  if (self->busy && self->loaded != NULL)
    return;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->messages_box))) != NULL)
    gtk_box_remove (self->messages_box, child);
  g_ptr_array_set_size (self->turns, 0);
  if (self->loaded != NULL)
    {
      system_changed_cb (self);
      for (int i = 0; i < N_COLS; i++)
        if (self->loaded->chat[i] != NULL)
          lt_chat_reset (self->loaded->chat[i]);
    }
  gtk_stack_set_visible_child_name (self->conversation_stack, "empty");
  update_sensitivity (self);
}

void
lathe_chat_page_set_compare (LatheChatPage *self, gboolean compare)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  gtk_switch_set_active (self->compare_switch, compare);
}

void
lathe_chat_page_set_sampling (LatheChatPage *self, double temperature, double top_p,
                              int max_tokens)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  gtk_spin_button_set_value (self->temperature_spin, temperature);
  gtk_spin_button_set_value (self->top_p_spin, top_p);
  gtk_spin_button_set_value (self->max_tokens_spin, max_tokens);
}

gboolean
lathe_chat_page_is_busy (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), FALSE);
  return self->busy;
}

gboolean
lathe_chat_page_is_loaded (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), FALSE);
  return self->loaded != NULL;
}

const char *
lathe_chat_page_get_error (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), NULL);
  return self->error;
}

const char *
lathe_chat_page_get_reply (LatheChatPage *self, guint turn, guint column)
{
  Turn *t;

  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), NULL);
  if (turn >= self->turns->len || column >= N_COLS)
    return NULL;
  t = g_ptr_array_index (self->turns, turn);
  /* columns as shown: in Compare 0 is the base, 1 the adapter */
  if (t->reply[COL_BASE] != NULL)
    column = column == 0 ? COL_BASE : COL_MAIN;
  else if (column != 0)
    return NULL;
  return t->reply[column] ? gtk_label_get_text (t->reply[column]) : NULL;
}

guint
lathe_chat_page_get_n_turns (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), 0);
  return self->turns->len;
}

guint
lathe_chat_page_get_n_updates (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), 0);
  return self->n_updates;
}

void
lathe_chat_page_set_runs_folder (LatheChatPage *self, const char *folder)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  g_free (self->runs_folder);
  self->runs_folder = g_strdup (folder);
  rescan_choices (self);
}

void
lathe_chat_page_refresh_choices (LatheChatPage *self)
{
  g_return_if_fail (LATHE_IS_CHAT_PAGE (self));
  rescan_choices (self);
}

const char *
lathe_chat_page_get_model_dir (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), NULL);
  return gtk_editable_get_text (GTK_EDITABLE (self->model_entry));
}

const char *
lathe_chat_page_get_adapter (LatheChatPage *self)
{
  g_return_val_if_fail (LATHE_IS_CHAT_PAGE (self), NULL);
  return gtk_editable_get_text (GTK_EDITABLE (self->adapter_entry));
}
