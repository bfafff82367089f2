/* SPDX-License-Identifier: GPL-3.0-or-later */
#define G_LOG_DOMAIN "lathe-dataset-preview"
#include "config.h"

#include "lathe-dataset-preview.h"

#include <glib/gi18n.h>

#include "src/core/lt-dataset-preview.h"

#define N_SHOWN 20
#define N_BINS 24

struct _LatheDatasetPreview
{
  AdwWindow parent_instance;

  GtkStack *stack;
  AdwStatusPage *error_page;
  GtkLabel *summary;
  GtkDrawingArea *histogram;
  GtkBox *examples;

  GCancellable *cancellable;
  LtDatasetPreview *preview;
  gboolean mask_prompt;
  int max_seq_length;
  char *error;
  GPtrArray *markup;         /* char*: example i's label markup */
};

G_DEFINE_FINAL_TYPE (LatheDatasetPreview, lathe_dataset_preview, ADW_TYPE_WINDOW)

enum { SIGNAL_READY, N_SIGNALS };
static guint signals[N_SIGNALS];

typedef struct
{
  char *data;
  char *model_dir;
  int max_seq_length;
} Job;

static void
job_free (Job *job)
{
  g_free (job->data);
  g_free (job->model_dir);
  g_free (job);
}

static void
preview_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Job *job = task_data;
  GError *error = NULL;
  LtDatasetPreview *p = lt_dataset_preview (job->data, job->model_dir, job->max_seq_length,
                                            N_SHOWN, cancellable, &error);

  (void) source;
  if (p == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, p, (GDestroyNotify) lt_dataset_preview_free);
}

static const char *
format_name (LtDataFormat format)
{
  switch (format)
    {
    case LT_DATA_FORMAT_TEXT:
      return _("Text");
    case LT_DATA_FORMAT_COMPLETIONS:
      return _("Prompt and completion");
    case LT_DATA_FORMAT_CHAT:
      return _("Chat messages");
    case LT_DATA_FORMAT_PREFERENCE:
    default:
      return _("Preference pairs");
    }
}

/* The histogram: bars of example counts per length bin, the maximum sequence length as a
 * line, axis labels. Colours from the widget's style. */
static void
draw_histogram (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer user_data)
{
  LatheDatasetPreview *self = user_data;
  guint counts[N_BINS], top = 1;
  int bin_width;
  GdkRGBA fg, accent = { 0.21, 0.52, 0.89, 1.0 }, warn = { 0.90, 0.38, 0.0, 1.0 };
  const double left = 48, bottom = 36, right = 12, upper = 24;
  double pw = width - left - right, ph = height - bottom - upper;
  PangoLayout *layout;
  g_autofree char *text = NULL;
  int tw, th;

  (void) area;
  if (self->preview == NULL || self->preview->n_examples == 0 || pw <= 0 || ph <= 0)
    return;
  {
    GtkStyleContext *ctx = gtk_widget_get_style_context (GTK_WIDGET (area));
    /* the style's colours (libadwaita's named colours), the defaults only as a fallback */
    gtk_style_context_get_color (ctx, &fg);
    gtk_style_context_lookup_color (ctx, "accent_color", &accent);
    gtk_style_context_lookup_color (ctx, "warning_color", &warn);
  }
  lt_dataset_preview_histogram (self->preview, N_BINS, counts, &bin_width);
  for (int b = 0; b < N_BINS; b++)
    top = MAX (top, counts[b]);

  /* bars: over the maximum sequence length in the warning colour */
  for (int b = 0; b < N_BINS; b++)
    {
      double x = left + pw * b / N_BINS, w = pw / N_BINS - 1;
      double h = ph * counts[b] / top;
      gboolean cut = self->max_seq_length > 0 && (b + 1) * bin_width > self->max_seq_length;
      gdk_cairo_set_source_rgba (cr, cut ? &warn : &accent);
      cairo_rectangle (cr, x, upper + ph - h, w, h);
      cairo_fill (cr);
    }

  /* axes */
  cairo_set_source_rgba (cr, fg.red, fg.green, fg.blue, 0.5);
  cairo_set_line_width (cr, 1);
  cairo_move_to (cr, left, upper);
  cairo_line_to (cr, left, upper + ph + 0.5);
  cairo_line_to (cr, left + pw, upper + ph + 0.5);
  cairo_stroke (cr);

  layout = gtk_widget_create_pango_layout (GTK_WIDGET (area), NULL);
  gdk_cairo_set_source_rgba (cr, &fg);
  text = g_strdup_printf ("%u", top);
  pango_layout_set_text (layout, text, -1);
  pango_layout_get_pixel_size (layout, &tw, &th);
  cairo_move_to (cr, left - 6 - tw, upper);
  pango_cairo_show_layout (cr, layout);
  pango_layout_set_text (layout, "0", -1);
  pango_layout_get_pixel_size (layout, &tw, &th);
  cairo_move_to (cr, left - 6 - tw, upper + ph - th);
  pango_cairo_show_layout (cr, layout);
  cairo_move_to (cr, left, upper + ph + 2);
  pango_cairo_show_layout (cr, layout);
  g_free (text);
  text = g_strdup_printf ("%d", bin_width * N_BINS);
  pango_layout_set_text (layout, text, -1);
  pango_layout_get_pixel_size (layout, &tw, &th);
  cairo_move_to (cr, left + pw - tw, upper + ph + 2);
  pango_cairo_show_layout (cr, layout);
  pango_layout_set_text (layout, _("tokens per example"), -1);
  pango_layout_get_pixel_size (layout, &tw, &th);
  cairo_move_to (cr, left + (pw - tw) / 2, upper + ph + 2);
  pango_cairo_show_layout (cr, layout);

  /* the maximum sequence length */
  if (self->max_seq_length > 0 && self->max_seq_length < bin_width * N_BINS)
    {
      double x = left + pw * self->max_seq_length / (double) (bin_width * N_BINS);
      g_free (text);
      text = g_strdup_printf (_("max %d"), self->max_seq_length);
      gdk_cairo_set_source_rgba (cr, &warn);
      cairo_set_dash (cr, (const double[]) { 4, 3 }, 2, 0);
      cairo_move_to (cr, x + 0.5, upper - 4);
      cairo_line_to (cr, x + 0.5, upper + ph);
      cairo_stroke (cr);
      cairo_set_dash (cr, NULL, 0, 0);
      pango_layout_set_text (layout, text, -1);
      pango_layout_get_pixel_size (layout, &tw, &th);
      /* above the bars, so no bar hides it */
      cairo_move_to (cr, MIN (x + 4, left + pw - tw), upper - th - 2);
      pango_cairo_show_layout (cr, layout);
    }
  g_object_unref (layout);
}

/* One example: the prompt part dimmed and struck through when it is masked, the trained part
 * as is; for pairs the chosen and the rejected answers. */
static char *
example_markup (LatheDatasetPreview *self, const LtPreviewExample *e)
{
  GString *m = g_string_new (NULL);
  g_autofree char *prompt = g_markup_escape_text (e->prompt, -1);
  g_autofree char *trained = g_markup_escape_text (e->trained, -1);

  if (e->prompt[0] != '\0')
    g_string_append_printf (m, self->mask_prompt
                                 ? "<span alpha=\"55%%\" style=\"italic\">%s</span>"
                                 : "<span style=\"italic\">%s</span>", prompt);
  if (e->rejected != NULL)
    {
      g_autofree char *rejected = g_markup_escape_text (e->rejected, -1);
      g_string_append_printf (m, "\n<b>%s</b> %s\n<b>%s</b> %s", _("Chosen:"), trained,
                              _("Rejected:"), rejected);
    }
  else
    g_string_append (m, trained);
  return g_string_free (m, FALSE);
}

static void
show_preview (LatheDatasetPreview *self)
{
  LtDatasetPreview *p = self->preview;
  g_autofree char *summary = NULL;
  g_autofree char *cut = NULL;

  if (self->max_seq_length > 0)
    cut = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
                                        "%zu example is longer than %d tokens and will be cut",
                                        "%zu examples are longer than %d tokens and will be cut",
                                        p->n_truncated),
                           p->n_truncated, self->max_seq_length);
  summary = g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%s · %zu example · %s",
                                          "%s · %zu examples · %s", p->n_examples),
                             format_name (p->format), p->n_examples,
                             cut ? cut : _("no length limit"));
  gtk_label_set_text (self->summary, summary);
  if (p->n_truncated > 0)
    gtk_widget_add_css_class (GTK_WIDGET (self->summary), "warning");

  for (guint i = 0; i < p->examples->len; i++)
    {
      const LtPreviewExample *e = g_ptr_array_index (p->examples, i);
      GtkWidget *card = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
      GtkWidget *head = gtk_label_new (NULL);
      GtkWidget *body = gtk_label_new (NULL);
      g_autofree char *head_text = NULL;
      char *markup = example_markup (self, e);

      head_text = e->n_prompt > 0
                    ? g_strdup_printf (_("Example %u · %d tokens, %d of them prompt"), i + 1,
                                       e->n_tokens, e->n_prompt)
                    : g_strdup_printf (_("Example %u · %d tokens"), i + 1, e->n_tokens);
      gtk_label_set_text (GTK_LABEL (head), head_text);
      gtk_label_set_xalign (GTK_LABEL (head), 0);
      gtk_widget_add_css_class (head, "caption-heading");
      if (self->max_seq_length > 0 && e->n_tokens > self->max_seq_length)
        gtk_widget_add_css_class (head, "warning");
      gtk_label_set_markup (GTK_LABEL (body), markup);
      gtk_label_set_wrap (GTK_LABEL (body), TRUE);
      gtk_label_set_wrap_mode (GTK_LABEL (body), PANGO_WRAP_WORD_CHAR);
      gtk_label_set_selectable (GTK_LABEL (body), TRUE);
      gtk_label_set_xalign (GTK_LABEL (body), 0);
      gtk_widget_add_css_class (card, "card");
      for (GtkWidget *w = head; w != NULL; w = w == head ? body : NULL)
        {
          gtk_widget_set_margin_start (w, 12);
          gtk_widget_set_margin_end (w, 12);
        }
      gtk_widget_set_margin_top (head, 8);
      gtk_widget_set_margin_bottom (body, 10);
      gtk_box_append (GTK_BOX (card), head);
      gtk_box_append (GTK_BOX (card), body);
      gtk_box_append (self->examples, card);
      g_ptr_array_add (self->markup, markup);
    }
  gtk_widget_queue_draw (GTK_WIDGET (self->histogram));
  gtk_stack_set_visible_child_name (self->stack, "preview");
}

static void
preview_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LatheDatasetPreview *self = LATHE_DATASET_PREVIEW (source);
  g_autoptr (GError) error = NULL;

  (void) user_data;
  self->preview = g_task_propagate_pointer (G_TASK (result), &error);
  /* the window was closed: its widgets are gone */
  if (g_cancellable_is_cancelled (self->cancellable))
    return;
  if (self->preview == NULL)
    {
      self->error = g_strdup (error->message);
      adw_status_page_set_description (self->error_page, error->message);
      gtk_stack_set_visible_child_name (self->stack, "error");
    }
  else
    show_preview (self);
  g_signal_emit (self, signals[SIGNAL_READY], 0);
}

static void
lathe_dataset_preview_dispose (GObject *object)
{
  LatheDatasetPreview *self = LATHE_DATASET_PREVIEW (object);

  g_cancellable_cancel (self->cancellable);
  G_OBJECT_CLASS (lathe_dataset_preview_parent_class)->dispose (object);
}

static void
lathe_dataset_preview_finalize (GObject *object)
{
  LatheDatasetPreview *self = LATHE_DATASET_PREVIEW (object);

  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->preview, lt_dataset_preview_free);
  g_ptr_array_unref (self->markup);
  g_free (self->error);
  G_OBJECT_CLASS (lathe_dataset_preview_parent_class)->finalize (object);
}

static void
lathe_dataset_preview_class_init (LatheDatasetPreviewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = lathe_dataset_preview_dispose;
  object_class->finalize = lathe_dataset_preview_finalize;
  signals[SIGNAL_READY] = g_signal_new ("ready", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                        NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
lathe_dataset_preview_init (LatheDatasetPreview *self)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  GtkWidget *header = adw_header_bar_new ();
  GtkWidget *spinner = gtk_spinner_new ();
  GtkWidget *scroll = gtk_scrolled_window_new ();
  GtkWidget *clamp = adw_clamp_new ();
  GtkWidget *content = gtk_box_new (GTK_ORIENTATION_VERTICAL, 12);
  GtkWidget *legend = gtk_label_new (NULL);

  self->markup = g_ptr_array_new_with_free_func (g_free);
  self->cancellable = g_cancellable_new ();
  gtk_window_set_title (GTK_WINDOW (self), _("Dataset Preview"));
  gtk_window_set_default_size (GTK_WINDOW (self), 760, 720);

  self->stack = GTK_STACK (gtk_stack_new ());
  gtk_widget_set_vexpand (GTK_WIDGET (self->stack), TRUE);
  gtk_spinner_start (GTK_SPINNER (spinner));
  gtk_widget_set_size_request (spinner, 32, 32);
  gtk_widget_set_halign (spinner, GTK_ALIGN_CENTER);
  gtk_widget_set_valign (spinner, GTK_ALIGN_CENTER);
  gtk_stack_add_named (self->stack, spinner, "loading");
  self->error_page = ADW_STATUS_PAGE (adw_status_page_new ());
  adw_status_page_set_icon_name (self->error_page, "dialog-error-symbolic");
  adw_status_page_set_title (self->error_page, _("The Dataset Cannot Be Read"));
  gtk_stack_add_named (self->stack, GTK_WIDGET (self->error_page), "error");

  self->summary = GTK_LABEL (gtk_label_new (NULL));
  gtk_label_set_xalign (self->summary, 0);
  gtk_label_set_wrap (self->summary, TRUE);
  gtk_widget_add_css_class (GTK_WIDGET (self->summary), "heading");
  self->histogram = GTK_DRAWING_AREA (gtk_drawing_area_new ());
  gtk_drawing_area_set_content_height (self->histogram, 170);
  gtk_drawing_area_set_draw_func (self->histogram, draw_histogram, self, NULL);
  gtk_label_set_markup (GTK_LABEL (legend),
                        _("<span alpha=\"55%\" style=\"italic\">Dimmed italics</span>: the "
                          "prompt, not trained on (Mask prompt). Special tokens of the chat "
                          "template are shown as they are."));
  gtk_label_set_xalign (GTK_LABEL (legend), 0);
  gtk_label_set_wrap (GTK_LABEL (legend), TRUE);
  gtk_widget_add_css_class (legend, "dim-label");
  self->examples = GTK_BOX (gtk_box_new (GTK_ORIENTATION_VERTICAL, 12));
  gtk_widget_set_margin_top (content, 12);
  gtk_widget_set_margin_bottom (content, 12);
  gtk_widget_set_margin_start (content, 12);
  gtk_widget_set_margin_end (content, 12);
  gtk_box_append (GTK_BOX (content), GTK_WIDGET (self->summary));
  gtk_box_append (GTK_BOX (content), GTK_WIDGET (self->histogram));
  gtk_box_append (GTK_BOX (content), legend);
  gtk_box_append (GTK_BOX (content), GTK_WIDGET (self->examples));
  adw_clamp_set_maximum_size (ADW_CLAMP (clamp), 900);
  adw_clamp_set_child (ADW_CLAMP (clamp), content);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroll), clamp);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroll), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  gtk_stack_add_named (self->stack, scroll, "preview");

  gtk_box_append (GTK_BOX (box), header);
  gtk_box_append (GTK_BOX (box), GTK_WIDGET (self->stack));
  adw_window_set_content (ADW_WINDOW (self), box);
  gtk_stack_set_visible_child_name (self->stack, "loading");
}

LatheDatasetPreview *
lathe_dataset_preview_new (GtkWindow *parent, const char *data, const char *model_dir,
                           int max_seq_length, gboolean mask_prompt)
{
  LatheDatasetPreview *self = g_object_new (LATHE_TYPE_DATASET_PREVIEW, NULL);
  g_autoptr (GTask) task = NULL;
  Job *job = g_new0 (Job, 1);

  if (parent != NULL)
    {
      gtk_window_set_transient_for (GTK_WINDOW (self), parent);
      gtk_window_set_modal (GTK_WINDOW (self), TRUE);
    }
  self->max_seq_length = max_seq_length;
  self->mask_prompt = mask_prompt;
  job->data = g_strdup (data);
  job->model_dir = g_strdup (model_dir);
  job->max_seq_length = max_seq_length;
  task = g_task_new (self, self->cancellable, preview_done_cb, NULL);
  g_task_set_task_data (task, job, (GDestroyNotify) job_free);
  g_task_run_in_thread (task, preview_thread);
  return self;
}

const char *
lathe_dataset_preview_get_error (LatheDatasetPreview *self)
{
  g_return_val_if_fail (LATHE_IS_DATASET_PREVIEW (self), NULL);
  return self->error;
}

const char *
lathe_dataset_preview_get_summary (LatheDatasetPreview *self)
{
  g_return_val_if_fail (LATHE_IS_DATASET_PREVIEW (self), NULL);
  return gtk_label_get_text (self->summary);
}

guint
lathe_dataset_preview_get_n_shown (LatheDatasetPreview *self)
{
  g_return_val_if_fail (LATHE_IS_DATASET_PREVIEW (self), 0);
  return self->markup->len;
}

const char *
lathe_dataset_preview_get_example_markup (LatheDatasetPreview *self, guint i)
{
  g_return_val_if_fail (LATHE_IS_DATASET_PREVIEW (self), NULL);
  return i < self->markup->len ? g_ptr_array_index (self->markup, i) : NULL;
}
