/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Spin buttons whose value reads in %g form (a learning rate shows as 1e-05 rather than
 * 0.00001000): the "output" and "input" signal handlers, for templates. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

/* "output": writes the value with %g (C locale). */
gboolean lathe_spin_format_g_output (GtkSpinButton *spin);
/* "input": reads a number in any C-locale form; GTK_INPUT_ERROR for anything else. */
int lathe_spin_format_g_input (GtkSpinButton *spin,
                               double        *new_value);

G_END_DECLS
