/* SPDX-License-Identifier: GPL-3.0-or-later */
/* lt-output-dir: the output-folder transaction every writer of a model folder uses (the
 * export's MLX, HF and PEFT outputs, `lathe quantize`).
 *
 * Owns: the check that an output may be written (absent, an empty folder, or @force), the
 * temporary hidden sibling ("PARENT/.NAME.tmp-XXXXXX") written into, and the commit that
 * moves an existing output aside (".NAME.old-XXXXXX"), renames the new one into place and
 * removes the old one (or puts it back on failure). Readers never see a half-written folder.
 * A writer killed mid-way (SIGKILL, power loss) leaves at most those hidden siblings; the next
 * check or begin for the same @path cleans them up and, when the kill fell between the
 * commit's two renames, puts the previous output back. Two writers of the same @path at once
 * are not supported (the second would remove the first one's temporary folder). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* TRUE when @path may be written: it does not exist, is an empty folder, or @force. Recovers
 * what a killed writer of @path left (above) first. */
gboolean lt_output_dir_check (const char *path, gboolean force, GError **error);

/* Output folders appear whole or not at all: begin creates an empty hidden sibling of @path
 * (".NAME.tmp-XXXXXX", parents made as needed) to write into; commit renames it into place,
 * moving an existing @path aside first and removing it afterwards (on failure the old output is
 * put back and the temporary folder removed); abort removes the temporary folder. */
char *lt_output_dir_begin (const char *path, GError **error);
gboolean lt_output_dir_commit (const char *tmp, const char *path, GError **error);
void lt_output_dir_abort (const char *tmp);

G_END_DECLS
