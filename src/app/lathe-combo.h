/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Combo rows whose current value is never cut to an ellipsis. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

/* Every AdwComboRow under @root whose model holds GtkStringObjects (and that has no
 * expression of its own) gets a factory whose label
 * does not ellipsize: a long subtitle wraps instead of squeezing the value to "S…"
 * (libadwaita's default factory ellipsizes it). The popover lists the same labels. */
void lathe_combo_rows_keep_values (GtkWidget *root);

G_END_DECLS
