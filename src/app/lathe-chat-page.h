/* SPDX-License-Identifier: GPL-3.0-or-later */
/* LatheChatPage: try a model where you train it. Choose a model folder, an optional adapter
 * (a run folder, an mlx-lm or PEFT adapter, applied unfused) and the quantization to load
 * with; then talk with it through its chat template (lt-chat), or give it plain prompts when
 * it has none. Loading and every reply run in a GTask worker; replies stream to the page
 * through one throttled timeout source; Stop cancels. Compare answers each message with the
 * base model and with the adapter, side by side. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define LATHE_TYPE_CHAT_PAGE (lathe_chat_page_get_type ())

G_DECLARE_FINAL_TYPE (LatheChatPage, lathe_chat_page, LATHE, CHAT_PAGE, GtkWidget)

GtkWidget *lathe_chat_page_new (void);

/* Sets the model and adapter fields (NULL leaves one as it is) and loads in the background;
 * `loaded` is emitted on the main thread when loading ends (check get_error). */
void lathe_chat_page_load (LatheChatPage *self, const char *model_dir, const char *adapter);
/* Sends @text as the user's message (as the Send button does); FALSE when busy or not
 * loaded. `reply-finished` is emitted when the reply (both, in Compare) is complete. */
gboolean lathe_chat_page_send (LatheChatPage *self, const char *text);
/* Stops the reply being generated. */
void lathe_chat_page_stop (LatheChatPage *self);
/* Answers the last message again. */
gboolean lathe_chat_page_regenerate (LatheChatPage *self);
void lathe_chat_page_clear (LatheChatPage *self);
void lathe_chat_page_set_compare (LatheChatPage *self, gboolean compare);
void lathe_chat_page_set_sampling (LatheChatPage *self, double temperature, double top_p,
                                   int max_tokens);

gboolean lathe_chat_page_is_busy (LatheChatPage *self);
gboolean lathe_chat_page_is_loaded (LatheChatPage *self);
/* The last load's or reply's error message, or NULL. */
const char *lathe_chat_page_get_error (LatheChatPage *self);
/* The text of reply @column (0, or 0 = base and 1 = with the adapter in Compare) of turn
 * @turn (0-based), as shown; NULL when there is none. */
const char *lathe_chat_page_get_reply (LatheChatPage *self, guint turn, guint column);
guint lathe_chat_page_get_n_turns (LatheChatPage *self);
/* How many times streamed text was written into the page (for tests of the throttling). */
guint lathe_chat_page_get_n_updates (LatheChatPage *self);

/* The model menu (the clock button beside the model folder) lists the recent model folders
 * (GSettings "recent-models"; a model loaded here joins them) and the finished runs of the runs
 * folders (lathe_model_choices_folders), read again each time the page is shown; each item
 * activates "chat.use-choice" (model, adapter), which fills the two fields. `choices-changed` is
 * emitted when the menu was refilled. @folder (NULL: from the settings) replaces the runs
 * folders and rescans. */
void lathe_chat_page_set_runs_folder (LatheChatPage *self, const char *folder);
void lathe_chat_page_refresh_choices (LatheChatPage *self);
/* The model and adapter fields as typed (borrowed). */
const char *lathe_chat_page_get_model_dir (LatheChatPage *self);
const char *lathe_chat_page_get_adapter (LatheChatPage *self);

G_END_DECLS
