/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe chat: a conversation in the terminal through the model's chat template (lt-chat).
 * Replies stream as they are produced; Ctrl-C stops a reply; /reset starts over; /exit or end
 * of input ends. When stdin is not a terminal every line is one user turn and each reply is
 * printed on its own line(s), nothing else on stdout. */
#include "config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib.h>

#include "lathe-cli.h"
#include "lathe-decode.h"
#include "lt-chat.h"
#include "lt-error.h"

/* Ctrl-C during a reply cancels it; at the prompt it interrupts the read. */
static volatile sig_atomic_t interrupted;

static void
on_sigint (int sig)
{
  (void) sig;
  interrupted = 1;
}

static gboolean
print_piece (const char *text, gpointer user_data)
{
  (void) user_data;
  fputs (text, stdout);
  fflush (stdout);
  return !interrupted;
}

int
lathe_cmd_chat (int argc, char **argv)
{
  g_autofree char *model_dir = NULL;
  g_autofree char *quantization = NULL;
  g_autofree char *adapter = NULL;
  g_autofree char *system = NULL;
  g_autofree char *compute_dtype = NULL;
  int max_tokens = 256, context = 0;
  double temp = 0.0, top_p = 1.0;
  gint64 seed = 0;
  gboolean exact = FALSE;
  int exit_status;
  const GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model_dir,
      LATHE_MODEL_HELP " (it needs a chat template)",
      "DIR|FILE.gguf" },
    { "adapter-path", 'a', 0, G_OPTION_ARG_FILENAME, &adapter, LATHE_ADAPTER_PATH_HELP,
      "PATH" },
    { "quantization", 'q', 0, G_OPTION_ARG_STRING, &quantization,
      "Quantize the model while loading it: none, 4bit, 6bit, 8bit (symmetric, group 128), "
      "mxfp4 (group 32) or nf4 (group 64) (default none)", "Q" },
    { "system", 0, 0, G_OPTION_ARG_STRING, &system,
      "System prompt at the start of the conversation (default none)", "TEXT" },
    { "max-tokens", 'n', 0, G_OPTION_ARG_INT, &max_tokens,
      "Stop each reply after N new tokens (default 256)", "N" },
    { "temp", 't', 0, G_OPTION_ARG_DOUBLE, &temp,
      "Sampling temperature; 0 is greedy (default 0)", "T" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &top_p,
      "Nucleus sampling: keep the most likely tokens up to this mass (default 1)", "P" },
    { "seed", 's', 0, G_OPTION_ARG_INT64, &seed, "Random seed for sampling (default 0)", "S" },
    { "exact", 0, 0, G_OPTION_ARG_NONE, &exact, LATHE_EXACT_HELP, NULL },
    { "context", 'c', 0, G_OPTION_ARG_INT, &context,
      "Tokens the conversation may hold (default: the model's maximum, at most 4096)", "N" },
    { "compute-dtype", 0, 0, G_OPTION_ARG_STRING, &compute_dtype, LATHE_COMPUTE_DTYPE_HELP,
      "auto|f32|bf16" },
    { NULL },
  };
  g_autoptr (GError) error = NULL;

  if (!lathe_cli_parse ("chat", NULL,
                        "Talk with a model through its chat template. Replies stream as they "
                        "are produced; Ctrl-C stops a reply, /reset starts a new conversation, "
                        "/exit or Ctrl-D ends. When standard input is not a terminal, each line "
                        "is one user turn and only the replies are printed.",
                        entries, &argc, &argv, &exit_status))
    return exit_status;
  if (!lathe_cli_apply_compute_dtype ("chat", compute_dtype, FALSE))
    return LATHE_EXIT_BAD_INPUT;
  if (model_dir == NULL)
    {
      g_printerr ("lathe chat: --model is required\n");
      return LATHE_EXIT_BAD_INPUT;
    }
  if (max_tokens < 1 || temp < 0.0 || top_p <= 0.0 || top_p > 1.0 || context < 0)
    {
      g_printerr ("lathe chat: --max-tokens must be ≥ 1, --temp ≥ 0, --top-p in (0, 1] and "
                  "--context ≥ 0\n");
      return LATHE_EXIT_BAD_INPUT;
    }

  g_autoptr (LtModel) model = NULL;
  g_autoptr (LtTokenizer) tok = NULL;
  if (!lathe_decode_load ("chat", model_dir, quantization, adapter, &model, &tok, &exit_status))
    return exit_status;
  model->decode_act8 = !exact;
  g_autoptr (LtChat) chat = lt_chat_new (model, tok, context, &error);
  if (chat == NULL)
    {
      if (g_error_matches (error, LT_ERROR, LT_ERROR_UNSUPPORTED))
        {
          g_printerr ("lathe chat: %s: %s; use “lathe generate” for plain completion\n",
                      model_dir, error->message);
          return LATHE_EXIT_BAD_INPUT;
        }
      return lathe_cli_report_error ("chat", error);
    }
  LtSampling sampling = { .max_tokens = max_tokens, .temperature = (float) temp,
                          .top_p = (float) top_p, .seed = (guint64) seed };
  gboolean interactive = isatty (STDIN_FILENO);
  struct sigaction sa = { 0 };

  lt_chat_set_system (chat, system);
  lt_chat_reset (chat);
  sa.sa_handler = on_sigint;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  if (interactive)
    g_printerr ("lathe chat: %s; Ctrl-C stops a reply, /reset starts over, /exit ends.\n",
                model_dir);

  exit_status = LATHE_EXIT_OK;
  for (;;)
    {
      char line[65536];

      if (interactive)
        {
          fputs ("> ", stdout);
          fflush (stdout);
        }
      interrupted = 0;
      if (fgets (line, sizeof line, stdin) == NULL)
        {
          if (interactive && interrupted)
            {
              /* Ctrl-C at the prompt: a fresh line, keep going */
              clearerr (stdin);
              fputc ('\n', stdout);
              continue;
            }
          if (interactive)
            fputc ('\n', stdout);
          break;
        }
      g_strchomp (line);
      if (line[0] == '\0')
        continue;
      if (strcmp (line, "/exit") == 0 || strcmp (line, "/quit") == 0)
        break;
      if (strcmp (line, "/reset") == 0)
        {
          lt_chat_reset (chat);
          if (interactive)
            g_printerr ("lathe chat: new conversation\n");
          continue;
        }
      interrupted = 0;
      g_autofree char *reply = lt_chat_reply (chat, line, &sampling, print_piece, NULL, NULL,
                                              &error);
      if (reply != NULL)
        {
          fputc ('\n', stdout);
          fflush (stdout);
        }
      else
        {
          exit_status = lathe_cli_report_error ("chat", error);
          g_clear_error (&error);
          if (!interactive)
            break;
          exit_status = LATHE_EXIT_OK;
        }
    }
  return exit_status;
}
