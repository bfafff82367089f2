/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the app tests. */
#pragma once

#include <gtk/gtk.h>

/* A finished 3-step LoRA run of @model on @data into @out (batch 2, reports every step, no
 * evaluation or checkpoint) through the app's own objects (LatheRunSettings →
 * LatheTrainJob), the main loop iterated until the job finishes; asserts it finished. */
void test_app_finished_run (const char *model, const char *data, const char *out,
                            int max_seq_length, double learning_rate);

/* Iterates the main loop until @widget has been laid out (a height above 0), at most 5 s: a
 * widget just shown gets its size at the next frame, which a loaded machine delays. */
void test_app_wait_laid_out (GtkWidget *widget);
