/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lathe: the command-line twin of the Lathe app. Dispatches to one subcommand. */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <glib/gi18n.h>

#include "lathe-cli.h"
#include "lt-threads.h"

typedef struct
{
  const char *name;
  int (*run) (int argc, char **argv);
  const char *summary;
} LatheCommand;

static const LatheCommand commands[] = {
  { "train", lathe_cmd_train, "Fine-tune a model (SFT/DPO/ORPO; LoRA, DoRA or full; QAT)" },
  { "estimate", lathe_cmd_estimate, "Estimate the memory a run configuration needs" },
  { "tokenize", lathe_cmd_tokenize, "Encode text with a model's tokenizer" },
  { "eval", lathe_cmd_eval, "Measure a model's perplexity on a JSONL file" },
  { "generate", lathe_cmd_generate, "Generate text from a prompt" },
  { "chat", lathe_cmd_chat, "Talk with a model through its chat template" },
  { "quantize", lathe_cmd_quantize, "Quantize a model and write it in the MLX layout" },
  { "fuse", lathe_cmd_fuse, "Fuse an adapter into its base model and export it" },
  { "export-recipe", lathe_cmd_export_recipe,
    "Write a run as an axolotl, LLaMA-Factory or torchtune config" },
  { "download", lathe_cmd_download, "Download a model from the Hugging Face Hub into its cache" },
  { "devices", lathe_cmd_devices, "List the compute devices: the CPU and each Vulkan GPU" },
  { NULL, NULL, NULL },
};

static void
print_usage (FILE *out)
{
  fprintf (out, "Usage:\n  lathe COMMAND [OPTION…]\n\n"
                "Fine-tune and quantize language models on your own machine.\n\n"
                "Commands:\n");
  for (gsize i = 0; commands[i].name != NULL; i++)
    fprintf (out, "  %-14s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nOptions:\n"
                "  -h, --help     Show this help\n"
                "  --version      Show the version\n\n"
                "Run “lathe COMMAND --help” for a command's options.\n");
}

int
main (int argc, char **argv)
{
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0
      || strcmp (argv[1], "help") == 0)
    {
      print_usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? LATHE_EXIT_BAD_INPUT : LATHE_EXIT_OK;
    }
  if (strcmp (argv[1], "--version") == 0)
    {
      printf ("lathe %s\n", PACKAGE_VERSION);
      return LATHE_EXIT_OK;
    }

  for (gsize i = 0; commands[i].name != NULL; i++)
    if (strcmp (argv[1], commands[i].name) == 0)
      {
        lt_set_threads (0);
        return commands[i].run (argc - 1, argv + 1);
      }

  fprintf (stderr, "lathe: unknown command “%s”\n\n", argv[1]);
  print_usage (stderr);
  return LATHE_EXIT_BAD_INPUT;
}
