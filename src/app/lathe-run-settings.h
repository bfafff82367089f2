/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheRunSettings: the Train form as a GObject, one property per form field.
 *
 * Widgets bind to the properties in ui/lathe-train-page.ui, GSettings binds to them
 * (lathe_run_settings_bind_gsettings()), and the object converts to and from the core run
 * configuration (LtRunConfig, src/core/lt-run.h). JSON, validation and the command line all go
 * through lt-run; this object only holds values. Nothing is clamped: property ranges are wide
 * so that invalid values can be entered and reported by lt_run_config_check(). */
#pragma once

#include <gio/gio.h>

#include "src/core/lt-run.h"

G_BEGIN_DECLS

/* How the length of a run is given (the "length-unit" property). Stable: saved in GSettings. */
typedef enum
{
  LATHE_LENGTH_UNIT_ITERATIONS,
  LATHE_LENGTH_UNIT_EPOCHS,
} LatheLengthUnit;

#define LATHE_TYPE_RUN_SETTINGS (lathe_run_settings_get_type ())

G_DECLARE_FINAL_TYPE (LatheRunSettings, lathe_run_settings, LATHE, RUN_SETTINGS, GObject)

LatheRunSettings *lathe_run_settings_new (void);

LtRunConfig *lathe_run_settings_dup_config (LatheRunSettings *self);
void lathe_run_settings_set_config (LatheRunSettings *self, const LtRunConfig *cfg);

/* Recipes: the run configuration JSON, read and written by lt-run. On error nothing changes. */
gboolean lathe_run_settings_load_file (LatheRunSettings *self, const char *path, GError **error);
gboolean lathe_run_settings_save_file (LatheRunSettings *self, const char *path, GError **error);

/* lt_run_config_check() on the current values: a GPtrArray of LtRunIssue. */
GPtrArray *lathe_run_settings_check (LatheRunSettings *self, gboolean for_start);
/* lt_run_config_to_argv(), and the same as one shell-quoted line. */
GStrv lathe_run_settings_dup_argv (LatheRunSettings *self);
char *lathe_run_settings_dup_command_line (LatheRunSettings *self);

/* Binds every property to the key of the same name in @settings (io.github.lathe.Lathe). */
void lathe_run_settings_bind_gsettings (LatheRunSettings *self, GSettings *settings);

const char *lathe_run_settings_get_model (LatheRunSettings *self);
void lathe_run_settings_set_model (LatheRunSettings *self, const char *model);
const char *lathe_run_settings_get_data (LatheRunSettings *self);
void lathe_run_settings_set_data (LatheRunSettings *self, const char *data);
const char *lathe_run_settings_get_adapter_path (LatheRunSettings *self);
void lathe_run_settings_set_adapter_path (LatheRunSettings *self, const char *adapter_path);
LtTrainMode lathe_run_settings_get_train_mode (LatheRunSettings *self);
LtTrainType lathe_run_settings_get_train_type (LatheRunSettings *self);
void lathe_run_settings_set_train_type (LatheRunSettings *self, LtTrainType train_type);
LtQuantization lathe_run_settings_get_quantization (LatheRunSettings *self);
void lathe_run_settings_set_quantization (LatheRunSettings *self, LtQuantization quantization);
gboolean lathe_run_settings_get_qat_enable (LatheRunSettings *self);
void lathe_run_settings_set_qat_enable (LatheRunSettings *self, gboolean qat_enable);

/* Joins an argv into one line, quoting only the arguments that need it. */
char *lathe_argv_to_command_line (const char * const *argv);

G_END_DECLS
