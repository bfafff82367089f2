/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Spin buttons in %g form (lathe-spin-format.h), moved out of lathe-train-page.c. */
#include "config.h"

#include "lathe-spin-format.h"

gboolean
lathe_spin_format_g_output (GtkSpinButton *spin)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  double value = gtk_adjustment_get_value (gtk_spin_button_get_adjustment (spin));

  g_ascii_formatd (buf, sizeof buf, "%g", value);
  if (g_strcmp0 (gtk_editable_get_text (GTK_EDITABLE (spin)), buf) != 0)
    gtk_editable_set_text (GTK_EDITABLE (spin), buf);
  return TRUE;
}

int
lathe_spin_format_g_input (GtkSpinButton *spin,
                           double        *new_value)
{
  const char *text = gtk_editable_get_text (GTK_EDITABLE (spin));
  char *end = NULL;
  double value;

  value = g_ascii_strtod (text, &end);
  if (end == text)
    return GTK_INPUT_ERROR;
  while (g_ascii_isspace (*end))
    end++;
  if (*end != '\0')
    return GTK_INPUT_ERROR;

  *new_value = value;
  return TRUE;
}
