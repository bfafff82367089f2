/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define LATHE_TYPE_APPLICATION (lathe_application_get_type ())

G_DECLARE_FINAL_TYPE (LatheApplication, lathe_application, LATHE, APPLICATION, AdwApplication)

LatheApplication *lathe_application_new (void);
/* Whether the app's compiled GSettings schema can be found (GSETTINGS_SCHEMA_DIR or the
 * installed schemas): without it g_settings_new () aborts. */
gboolean lathe_application_has_schema (void);

G_END_DECLS
