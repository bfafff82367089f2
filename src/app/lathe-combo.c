/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "lathe-combo.h"

static void
setup_cb (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer user_data)
{
  GtkWidget *label = gtk_label_new (NULL);

  gtk_label_set_xalign (GTK_LABEL (label), 0.0f);
  gtk_list_item_set_child (item, label);
}

static void
bind_cb (GtkSignalListItemFactory *factory, GtkListItem *item, gpointer user_data)
{
  GObject *obj = gtk_list_item_get_item (item);

  gtk_label_set_text (GTK_LABEL (gtk_list_item_get_child (item)),
                      GTK_IS_STRING_OBJECT (obj)
                        ? gtk_string_object_get_string (GTK_STRING_OBJECT (obj)) : "");
}

static void
keep_value (AdwComboRow *row)
{
  GListModel *model = adw_combo_row_get_model (row);
  g_autoptr (GObject) first = NULL;
  GtkListItemFactory *factory;

  if (model == NULL || adw_combo_row_get_expression (row) != NULL)
    return; /* a row that shows its items through an expression keeps its own factory */
  if (!GTK_IS_STRING_LIST (model))
    {
      if (g_list_model_get_n_items (model) == 0)
        return;
      first = g_list_model_get_item (model, 0);
      if (!GTK_IS_STRING_OBJECT (first))
        return;
    }
  factory = gtk_signal_list_item_factory_new ();
  g_signal_connect (factory, "setup", G_CALLBACK (setup_cb), NULL);
  g_signal_connect (factory, "bind", G_CALLBACK (bind_cb), NULL);
  adw_combo_row_set_factory (row, factory);
  g_object_unref (factory);
}

void
lathe_combo_rows_keep_values (GtkWidget *root)
{
  g_return_if_fail (GTK_IS_WIDGET (root));

  if (ADW_IS_COMBO_ROW (root))
    keep_value (ADW_COMBO_ROW (root));
  for (GtkWidget *c = gtk_widget_get_first_child (root); c != NULL;
       c = gtk_widget_get_next_sibling (c))
    lathe_combo_rows_keep_values (c);
}
