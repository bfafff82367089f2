/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-sampler: the sample prompts of a run (`sample_prompts`) and their greedy generations, as
 * the trainer writes them to samples.jsonl while a model trains.
 *
 * The prompts are cfg->sample_prompts, or the "prompt" of every line of the one .jsonl file it
 * names (errors name FILE:LINE). Each is encoded once: through the chat template as one user
 * turn with the generation prompt (without special tokens, as apply_chat_template) when the
 * data is not plain text and the model has a template (as lt-dataset renders completions and
 * chat), else with the tokenizer's post-processor. A generation is greedy, at most
 * sample_max_tokens tokens, stopping at an end-of-sequence id, from the model as it is (the
 * caller turns dropout off); it uses its own KV cache and touches nothing the training step
 * reads. */
#pragma once

#include <glib.h>

#include "lt-chat-template.h"
#include "lt-dataset.h"
#include "lt-model.h"
#include "lt-run.h"
#include "lt-tokenizer.h"
#include "lt-vulkan-model.h"

G_BEGIN_DECLS

typedef struct _LtSampler LtSampler;

/* @model, @tok and @tmpl (may be NULL) are borrowed and must outlive the sampler. A sampler
 * with no prompts when cfg->sample_prompts is unset. */
LtSampler *lt_sampler_new (const LtRunConfig *cfg, LtModel *model, LtTokenizer *tok,
                           LtChatTemplate *tmpl, LtDataFormat format, GError **error);
void lt_sampler_free (LtSampler *sampler);

guint lt_sampler_get_n_prompts (LtSampler *sampler);
const char *lt_sampler_get_prompt (LtSampler *sampler, guint i);
/* The greedy generation for prompt @i (its text, without the prompt). */
char *lt_sampler_generate (LtSampler *sampler, guint i, GError **error);
/* Generations on a Vulkan device from now on (@vm: the trainer's, borrowed; its adapters are
 * the device's), with a KV cache in its memory (lt-vulkan-infer); NULL: the CPU. */
void lt_sampler_set_vulkan (LtSampler *sampler, LtVulkanModel *vm);
/* @text cut to @max characters with an ellipsis, on one line (for logs). */
char *lt_sampler_shorten (const char *text, glong max);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LtSampler, lt_sampler_free)

G_END_DECLS
