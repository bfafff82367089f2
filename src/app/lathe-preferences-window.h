/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define LATHE_TYPE_PREFERENCES_WINDOW (lathe_preferences_window_get_type ())

G_DECLARE_FINAL_TYPE (LathePreferencesWindow, lathe_preferences_window, LATHE,
                      PREFERENCES_WINDOW, AdwPreferencesWindow)

GtkWidget *lathe_preferences_window_new (void);

G_END_DECLS
