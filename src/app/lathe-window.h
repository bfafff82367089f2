/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "lathe-chat-page.h"
#include "lathe-runs-page.h"
#include "lathe-train-page.h"

G_BEGIN_DECLS

#define LATHE_TYPE_WINDOW (lathe_window_get_type ())

G_DECLARE_FINAL_TYPE (LatheWindow, lathe_window, LATHE, WINDOW, AdwApplicationWindow)

LatheWindow *lathe_window_new (GtkApplication *application);
LatheTrainPage *lathe_window_get_train_page (LatheWindow *self);
LatheRunsPage *lathe_window_get_runs_page (LatheWindow *self);
LatheChatPage *lathe_window_get_chat_page (LatheWindow *self);

G_END_DECLS
