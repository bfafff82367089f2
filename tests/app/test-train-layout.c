/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The Train tab as it is laid out on screen: the realized page in a 1100×800 window, walked for
 * each trainer × train type. Each row sits in its group, is mapped (or hidden on purpose), is
 * wide enough to read and does not overlap its neighbours; the form keeps a readable width
 * while a run goes, and the mouse wheel scrolls the page instead of changing values. */
#include "config.h"

#include <adwaita.h>
#include <glib/gstdio.h>
#include <string.h>

#include "lathe-train-page.h"

#define WIDTH 1100
#define HEIGHT 800
#define MIN_ROW_WIDTH 250
#define MIN_FORM_WIDTH 360

typedef struct
{
  const char *title;
  const char *group;
} RowPlace;

static const RowPlace places[] = {
  { "Model folder", "Model and Data" },
  { "Dataset", "Model and Data" },
  { "Run folder", "Model and Data" },
  { "Trainer", "Fine-Tune" },
  { "Preference strength", "Fine-Tune" },
  { "DPO loss", "Fine-Tune" },
  { "Train type", "Fine-Tune" },
  { "Quantization", "Fine-Tune" },
  { "LoRA rank", "Fine-Tune" },
  { "LoRA scale", "Fine-Tune" },
  { "LoRA dropout", "Fine-Tune" },
  { "Target modules", "Fine-Tune" },
  { "Adapt all layers", "Fine-Tune" },
  { "Last layers", "Fine-Tune" },
  { "Learning rate", "Schedule" },
  { "Schedule", "Schedule" },
  { "Warm-up steps", "Schedule" },
  { "Train for", "Schedule" },
  { "Iterations", "Schedule" },
  { "Epochs", "Schedule" },
  { "Batch size", "Schedule" },
  { "Gradient accumulation", "Schedule" },
  { "Pack short examples", "Schedule" },
  { "Enable QAT", "Quantization-Aware Training" },
  { "Grid", "Quantization-Aware Training" },
  { "Bits", "Quantization-Aware Training" },
  { "Group size", "Quantization-Aware Training" },
  { "Start step", "Quantization-Aware Training" },
  { "Interval", "Quantization-Aware Training" },
  { "Maximum sequence length", "Advanced" },
  { "Mask prompt", "Advanced" },
  { "Gradient checkpointing", "Advanced" },
  { "Precision", "Advanced" },
  { "Seed", "Advanced" },
  { "Optimizer", "Advanced" },
  { "Report every", "Advanced" },
  { "Evaluate every", "Advanced" },
  { "Save every", "Advanced" },
};

/* The groups are siblings: children of one box, in this order. */
static const char *group_order[] = {
  "Model and Data", "Fine-Tune", "Schedule", "Quantization-Aware Training", "Advanced",
};

typedef struct
{
  GtkWidget *window;
  LatheTrainPage *page;
  LatheRunSettings *settings;
} Fixture;

static void
settle (void)
{
  /* A few frames: the settings notify, the rows change visibility, the window lays out. */
  for (int i = 0; i < 6; i++)
    {
      gint64 end = g_get_monotonic_time () + 20 * 1000;
      while (g_get_monotonic_time () < end)
        g_main_context_iteration (NULL, FALSE);
    }
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  int width = GPOINTER_TO_INT (data);

  f->window = gtk_window_new ();
  gtk_window_set_default_size (GTK_WINDOW (f->window), width > 0 ? width : WIDTH, HEIGHT);
  f->page = LATHE_TRAIN_PAGE (lathe_train_page_new ());
  f->settings = lathe_train_page_get_settings (f->page);
  gtk_window_set_child (GTK_WINDOW (f->window), GTK_WIDGET (f->page));
  gtk_window_present (GTK_WINDOW (f->window));
  while (gtk_widget_get_width (GTK_WIDGET (f->page)) == 0 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  settle ();
  g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (f->page)), >, 0);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  gtk_window_destroy (GTK_WINDOW (f->window));
  settle ();
}

static const char *
row_title (GtkWidget *widget)
{
  return adw_preferences_row_get_title (ADW_PREFERENCES_ROW (widget));
}

/* The row titled @title under @root (the first one in tree order). */
static GtkWidget *
find_row (GtkWidget  *root,
          const char *title)
{
  if (ADW_IS_PREFERENCES_ROW (root) && g_strcmp0 (row_title (root), title) == 0)
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_row (child, title);
      if (found != NULL)
        return found;
    }
  return NULL;
}

static GtkWidget *
find_group (GtkWidget  *root,
            const char *title)
{
  if (ADW_IS_PREFERENCES_GROUP (root)
      && g_strcmp0 (adw_preferences_group_get_title (ADW_PREFERENCES_GROUP (root)), title) == 0)
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_group (child, title);
      if (found != NULL)
        return found;
    }
  return NULL;
}

/* Whether the row is hidden on purpose for this trainer and length unit. */
static gboolean
expect_visible (const char  *title,
                LtTrainMode  mode)
{
  if (g_str_equal (title, "Preference strength"))
    return mode != LT_TRAIN_MODE_SFT;
  if (g_str_equal (title, "DPO loss"))
    return mode == LT_TRAIN_MODE_DPO;
  if (g_str_equal (title, "Epochs"))
    return FALSE; /* the length unit is iterations */
  return TRUE;
}

/* No mapped label under @w is cut to an ellipsis (a dropdown's value squeezed by a long
 * subtitle reads "Autom…"). */
static void
check_no_ellipsis (GtkWidget  *w,
                   const char *row,
                   const char *context)
{
  for (GtkWidget *c = gtk_widget_get_first_child (w); c != NULL; c = gtk_widget_get_next_sibling (c))
    {
      if (GTK_IS_LABEL (c) && gtk_widget_get_mapped (c)
          && pango_layout_is_ellipsized (gtk_label_get_layout (GTK_LABEL (c))))
        {
          int nat = 0;
          gtk_widget_measure (c, GTK_ORIENTATION_HORIZONTAL, -1, NULL, &nat, NULL, NULL);
          g_error ("%s: row “%s”: the label “%s” is cut to an ellipsis (%d px of %d)", context,
                   row, gtk_label_get_text (GTK_LABEL (c)), gtk_widget_get_width (c), nat);
        }
      check_no_ellipsis (c, row, context);
    }
}

static void
check_layout (Fixture     *f,
              LtTrainMode  mode,
              const char  *context)
{
  GtkWidget *page = GTK_WIDGET (f->page);
  GtkWidget *groups[G_N_ELEMENTS (group_order)];
  GtkWidget *box = NULL;
  guint n_checked = 0;

  /* The groups: all present and children of one box, not nested in one another. */
  for (guint g = 0; g < G_N_ELEMENTS (group_order); g++)
    {
      groups[g] = find_group (page, group_order[g]);
      if (groups[g] == NULL)
        g_error ("%s: no group “%s”", context, group_order[g]);
      if (box == NULL)
        box = gtk_widget_get_parent (groups[g]);
      if (gtk_widget_get_parent (groups[g]) != box)
        g_error ("%s: group “%s” is not a sibling of “%s” (its parent is a %s)", context,
                 group_order[g], group_order[0],
                 G_OBJECT_TYPE_NAME (gtk_widget_get_parent (groups[g])));
    }

  for (guint i = 0; i < G_N_ELEMENTS (places); i++)
    {
      GtkWidget *row = find_row (page, places[i].title);
      GtkWidget *group;
      graphene_rect_t bounds;

      if (row == NULL)
        g_error ("%s: no row “%s”", context, places[i].title);
      group = gtk_widget_get_ancestor (row, ADW_TYPE_PREFERENCES_GROUP);
      if (group == NULL
          || g_strcmp0 (adw_preferences_group_get_title (ADW_PREFERENCES_GROUP (group)),
                        places[i].group) != 0)
        g_error ("%s: row “%s” is in group “%s”, expected “%s”", context, places[i].title,
                 group != NULL ? adw_preferences_group_get_title (ADW_PREFERENCES_GROUP (group))
                               : "(none)",
                 places[i].group);
      /* A row directly in its group's list, not inside another row. */
      if (gtk_widget_get_ancestor (gtk_widget_get_parent (row), ADW_TYPE_PREFERENCES_ROW) != NULL)
        g_error ("%s: row “%s” is nested inside row “%s”", context, places[i].title,
                 row_title (gtk_widget_get_ancestor (gtk_widget_get_parent (row),
                                                     ADW_TYPE_PREFERENCES_ROW)));

      if (!expect_visible (places[i].title, mode))
        {
          if (gtk_widget_get_mapped (row))
            g_error ("%s: row “%s” should be hidden", context, places[i].title);
          continue;
        }
      if (!gtk_widget_get_mapped (row))
        g_error ("%s: row “%s” is not mapped", context, places[i].title);
      if (!gtk_widget_compute_bounds (row, page, &bounds))
        g_error ("%s: row “%s” has no bounds", context, places[i].title);
      if (bounds.size.width < MIN_ROW_WIDTH)
        g_error ("%s: row “%s” is %.0f px wide (< %d)", context, places[i].title,
                 bounds.size.width, MIN_ROW_WIDTH);
      check_no_ellipsis (row, places[i].title, context);
      n_checked++;

      /* No overlap with any other mapped row. */
      for (guint j = 0; j < i; j++)
        {
          GtkWidget *other = find_row (page, places[j].title);
          graphene_rect_t other_bounds, overlap;

          if (!gtk_widget_get_mapped (other)
              || !gtk_widget_compute_bounds (other, page, &other_bounds))
            continue;
          if (graphene_rect_intersection (&bounds, &other_bounds, &overlap)
              && overlap.size.width > 0.5 && overlap.size.height > 0.5)
            g_error ("%s: row “%s” (y %.0f, h %.0f) overlaps “%s” (y %.0f, h %.0f)", context,
                     places[i].title, bounds.origin.y, bounds.size.height, places[j].title,
                     other_bounds.origin.y, other_bounds.size.height);
        }
    }
  g_assert_cmpuint (n_checked, >=, G_N_ELEMENTS (places) - 3);
}

/* Each trainer × train type at 1100×800. */
static void
test_rows (Fixture       *f,
           gconstpointer  data)
{
  static const char *modes[] = { "SFT", "DPO", "ORPO" };
  static const char *types[] = { "LoRA", "DoRA", "Full" };

  for (guint m = 0; m < G_N_ELEMENTS (modes); m++)
    for (guint t = 0; t < G_N_ELEMENTS (types); t++)
      {
        g_autofree char *context = g_strdup_printf ("%s × %s", modes[m], types[t]);

        g_object_set (f->settings, "train-mode", m, "train-type", t, NULL);
        settle ();
        check_layout (f, (LtTrainMode) m, context);
      }
}

/* The QAT grid row (issue 13 item 7): a dropdown of the four grids in lt-run's order, bound to
 * qat-mode both ways, sensitive only with QAT on (like the other QAT rows), reachable from the
 * keyboard (it takes the focus when sensitive), laid out below "Enable QAT" and above "Bits". */
static void
test_qat_grid (Fixture       *f,
               gconstpointer  data)
{
  GtkWidget *page = GTK_WIDGET (f->page);
  GtkWidget *row = find_row (page, "Grid");
  GtkWidget *enable = find_row (page, "Enable QAT");
  GtkWidget *bits = find_row (page, "Bits");
  static const char *const names[] = { "Symmetric", "Affine (MLX)", "MXFP4", "NF4" };
  graphene_rect_t b_row, b_enable, b_bits;
  guint mode = 99;

  g_assert_nonnull (row);
  g_assert_true (ADW_IS_COMBO_ROW (row));
  GListModel *model = adw_combo_row_get_model (ADW_COMBO_ROW (row));
  g_assert_cmpuint (g_list_model_get_n_items (model), ==, G_N_ELEMENTS (names));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_cmpstr (gtk_string_list_get_string (GTK_STRING_LIST (model), i), ==, names[i]);

  /* QAT off (the default): insensitive, so it takes no focus */
  g_object_set (f->settings, "qat-enable", FALSE, NULL);
  settle ();
  g_assert_false (gtk_widget_get_sensitive (row));
  g_assert_false (gtk_widget_grab_focus (row));
  /* QAT on: sensitive, focusable, activatable from the keyboard */
  g_object_set (f->settings, "qat-enable", TRUE, NULL);
  settle ();
  g_assert_true (gtk_widget_get_sensitive (row));
  g_assert_true (gtk_widget_get_focusable (row));
  g_assert_true (gtk_widget_grab_focus (row));
  g_assert_true (gtk_widget_has_focus (row));
  g_assert_true (gtk_widget_get_sensitive (find_row (page, "Group size")));

  /* both ways */
  adw_combo_row_set_selected (ADW_COMBO_ROW (row), 2);
  g_object_get (f->settings, "qat-mode", &mode, NULL);
  g_assert_cmpuint (mode, ==, 2);
  g_object_set (f->settings, "qat-mode", 3, NULL);
  g_assert_cmpuint (adw_combo_row_get_selected (ADW_COMBO_ROW (row)), ==, 3);
  {
    g_autoptr (LtRunConfig) cfg = lathe_run_settings_dup_config (f->settings);
    g_assert_cmpint (cfg->qat_mode, ==, 3);
  }

  /* mapped, wide, between Enable QAT and Bits */
  settle ();
  g_assert_true (gtk_widget_get_mapped (row));
  g_assert_true (gtk_widget_compute_bounds (row, page, &b_row));
  g_assert_true (gtk_widget_compute_bounds (enable, page, &b_enable));
  g_assert_true (gtk_widget_compute_bounds (bits, page, &b_bits));
  g_assert_cmpfloat (b_row.size.width, >=, MIN_ROW_WIDTH);
  g_assert_cmpfloat (b_row.origin.y, >=, b_enable.origin.y + b_enable.size.height - 0.5);
  g_assert_cmpfloat (b_row.origin.y + b_row.size.height, <=, b_bits.origin.y + 0.5);
  check_layout (f, LT_TRAIN_MODE_SFT, "QAT on");
}

/* The scrolled form (the ancestor scrolled window of the Trainer row). */
static GtkWidget *
form_of (Fixture *f)
{
  GtkWidget *row = find_row (GTK_WIDGET (f->page), "Trainer");

  g_assert_nonnull (row);
  return gtk_widget_get_ancestor (row, GTK_TYPE_SCROLLED_WINDOW);
}

static gboolean
is_locked (Fixture *f)
{
  return !gtk_widget_is_sensitive (find_row (GTK_WIDGET (f->page), "Trainer"));
}

static void
count_report_cb (guint                 *n,
                 const LtTrainProgress *p)
{
  if (p->event == LT_TRAIN_EVENT_REPORT)
    (*n)++;
}

/* A real run of the test model: the form keeps its width, is locked with a line saying why, and
 * the monitor is shown; once stopped the form unlocks. */
static void
test_running (Fixture       *f,
              gconstpointer  data)
{
  const char *test_data = g_getenv ("LATHE_TEST_DATA");
  g_autofree char *model = g_build_filename (test_data, "models", "llama-f32", NULL);
  g_autofree char *train = g_build_filename (test_data, "train", NULL);
  g_autofree char *dir = g_dir_make_tmp ("lathe-layout-XXXXXX", NULL);
  g_autofree char *out = g_build_filename (dir, "run", NULL);
  GtkWidget *monitor = GTK_WIDGET (lathe_train_page_get_monitor (f->page));
  GtkWidget *lock_label;
  guint n_reports = 0;
  gint64 end;

  g_assert_cmpint (gtk_widget_get_width (form_of (f)), >=, MIN_FORM_WIDTH);
  g_assert_false (is_locked (f));
  lock_label = lathe_train_page_get_lock_label (f->page);
  g_assert_false (gtk_widget_get_mapped (lock_label));

  g_object_set (f->settings, "model", model, "data", train, "adapter-path", out,
                "iters", 100000, "steps-per-eval", 0, "save-every", 0,
                "steps-per-report", 1, NULL);
  g_assert_true (lathe_train_page_start (f->page));
  /* Until the monitor shows real numbers (its widest state). */
  g_signal_connect_swapped (lathe_train_page_get_job (f->page), "progress",
                            G_CALLBACK (count_report_cb), &n_reports);
  end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (n_reports < 5 && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (n_reports, >=, 5);
  settle ();
  g_assert_true (lathe_train_page_is_running (f->page));
  g_assert_true (gtk_widget_get_mapped (form_of (f))); /* beside the monitor, not folded away */
  g_assert_cmpint (gtk_widget_get_width (form_of (f)), >=, MIN_FORM_WIDTH);
  g_assert_true (is_locked (f));
  /* the read-outs' names and values are whole beside the form; the device is named */
  check_no_ellipsis (monitor, "monitor", "running");
  g_assert_cmpstr (lathe_monitor_get_stat (LATHE_MONITOR (monitor), LATHE_MONITOR_STAT_DEVICE),
                   ==, "CPU");
  g_assert_true (gtk_widget_get_mapped (lock_label));
  g_assert_cmpstr (gtk_label_get_text (GTK_LABEL (lock_label)), !=, "");
  g_assert_true (gtk_widget_get_mapped (monitor));
  g_assert_cmpint (gtk_widget_get_width (monitor), >=, 300);
  check_layout (f, LT_TRAIN_MODE_SFT, "SFT × LoRA, running");

  lathe_train_page_stop (f->page);
  end = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (lathe_train_page_is_running (f->page) && g_get_monotonic_time () < end)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (lathe_train_page_is_running (f->page));
  settle ();
  g_assert_false (is_locked (f));
  g_assert_false (gtk_widget_get_mapped (lock_label));
  g_assert_cmpint (gtk_widget_get_width (form_of (f)), >=, MIN_FORM_WIDTH);

  {
    g_autoptr(GFile) root = g_file_new_for_path (dir);
    g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", dir);
    g_assert_true (g_spawn_command_line_sync (cmd, NULL, NULL, NULL, NULL));
  }
}

/* A narrow window (700 px): the form is not squashed; the form and the monitor take turns. */
static void
test_narrow (Fixture       *f,
             gconstpointer  data)
{
  GtkWidget *form = form_of (f);
  GtkWidget *monitor = GTK_WIDGET (lathe_train_page_get_monitor (f->page));

  g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (f->page)), <=, 700);
  g_assert_true (gtk_widget_get_mapped (form));
  g_assert_cmpint (gtk_widget_get_width (form), >=, MIN_FORM_WIDTH);
  check_layout (f, LT_TRAIN_MODE_SFT, "SFT × LoRA at 700 px");

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->page), "train.show-monitor", NULL));
  settle ();
  settle ();
  g_assert_true (gtk_widget_get_mapped (monitor) || gtk_widget_get_child_visible (monitor));
  g_assert_cmpint (gtk_widget_get_width (monitor), >=, MIN_FORM_WIDTH);
}

/* Delivers a wheel step to @target the way GTK propagates an event: the scroll controllers of
 * the ancestors in the capture phase (root first), the target's, then the ancestors' in the
 * bubble phase, stopping at the first that handles it. Delivery stops before the scrolled
 * window that holds @target: returns TRUE when it got that far (the page would scroll). */
static gboolean
deliver_scroll (GtkWidget *target,
                double     dy)
{
  g_autoptr(GPtrArray) chain = g_ptr_array_new ();
  GtkWidget *scrolled = gtk_widget_get_ancestor (target, GTK_TYPE_SCROLLED_WINDOW);

  g_assert_nonnull (scrolled);
  for (GtkWidget *w = target; w != scrolled; w = gtk_widget_get_parent (w))
    g_ptr_array_insert (chain, 0, w);

  for (int pass = 0; pass < 3; pass++)
    for (guint k = 0; k < chain->len; k++)
      {
        GtkWidget *w = g_ptr_array_index (chain, pass == 2 ? chain->len - 1 - k : k);
        GtkPropagationPhase phase = pass == 0 ? GTK_PHASE_CAPTURE
                                    : pass == 1 ? GTK_PHASE_TARGET : GTK_PHASE_BUBBLE;
        GListModel *controllers;

        if (pass == 1 && w != target)
          continue;
        controllers = gtk_widget_observe_controllers (w);
        for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
          {
            g_autoptr(GtkEventController) c = g_list_model_get_item (controllers, i);
            gboolean handled = FALSE;

            if (!GTK_IS_EVENT_CONTROLLER_SCROLL (c)
                || gtk_event_controller_get_propagation_phase (c) != phase)
              continue;
            g_signal_emit_by_name (c, "scroll", 0.0, dy, &handled);
            if (handled)
              {
                g_object_unref (controllers);
                return FALSE;
              }
          }
        g_object_unref (controllers);
      }
  return TRUE;
}

static GtkWidget *
find_type (GtkWidget *root,
           GType      type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (root, type))
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_type (child, type);
      if (found != NULL)
        return found;
    }
  return NULL;
}

/* The page scrolls under the wheel; a spin button or a combo row under the pointer keeps its
 * value. */
static void
test_wheel (Fixture       *f,
            gconstpointer  data)
{
  GtkWidget *spin = find_type (find_row (GTK_WIDGET (f->page), "Save every"),
                               GTK_TYPE_SPIN_BUTTON);
  GtkWidget *text = find_type (spin, GTK_TYPE_TEXT);
  GtkWidget *combo = find_row (GTK_WIDGET (f->page), "Optimizer");
  int value;
  guint optimizer;

  g_assert_nonnull (spin);
  g_assert_nonnull (text);
  g_object_set (f->settings, "save-every", 100, "optimizer", 0, NULL);
  settle ();

  g_assert_true (deliver_scroll (spin, 3.0));
  g_assert_true (deliver_scroll (text, -5.0));
  settle ();
  g_object_get (f->settings, "save-every", &value, NULL);
  g_assert_cmpint (value, ==, 100);
  g_assert_cmpfloat (gtk_spin_button_get_value (GTK_SPIN_BUTTON (spin)), ==, 100.0);

  g_assert_true (deliver_scroll (combo, 3.0));
  settle ();
  g_object_get (f->settings, "optimizer", &optimizer, NULL);
  g_assert_cmpuint (optimizer, ==, 0);
}

int
main (int   argc,
      char *argv[])
{
  gtk_test_init (&argc, &argv, NULL);
  adw_init ();

  g_test_add ("/train-layout/rows", Fixture, NULL, fixture_setup, test_rows, fixture_teardown);
  g_test_add ("/train-layout/qat-grid", Fixture, NULL, fixture_setup, test_qat_grid,
              fixture_teardown);
  g_test_add ("/train-layout/running", Fixture, NULL, fixture_setup, test_running,
              fixture_teardown);
  g_test_add ("/train-layout/narrow", Fixture, GINT_TO_POINTER (700), fixture_setup,
              test_narrow, fixture_teardown);
  g_test_add ("/train-layout/wheel", Fixture, NULL, fixture_setup, test_wheel,
              fixture_teardown);

  return g_test_run ();
}
