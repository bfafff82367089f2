/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Helpers shared by the app tests. */
#pragma once

#include <glib.h>

/* A finished 3-step LoRA run of @model on @data into @out (batch 2, reports every step, no
 * evaluation or checkpoint) through the app's own objects (LatheRunSettings →
 * LatheTrainJob), the main loop iterated until the job finishes; asserts it finished. */
void test_app_finished_run (const char *model, const char *data, const char *out,
                            int max_seq_length, double learning_rate);
