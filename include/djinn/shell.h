/* shell.h - the djinn shell (the gdb-like REPL and its batch mode), and the
 * other subcommands' entry points.  main() only dispatches to these. */
#ifndef DJINN_SHELL_H
#define DJINN_SHELL_H

/* `djinn [options] [MODEL]`: the interactive shell, or batch mode with
 * -batch / -ex / -x.  Returns the process exit status. */
int djn_shell_main(int argc, char **argv);

/* `djinn connect HOST:PORT [--token-file F] [--resume T] [shell options]`:
 * the shell with `target remote` done first. */
int djn_connect_main(int argc, char **argv);

/* `djinn generate MODEL -p PROMPT ...`: plain generation. */
int djn_generate_main(int argc, char **argv);

/* Apply the model's chat template to one user message (ChatML and Llama-2
 * [INST] families are recognised).  Returns a malloc'd string, or NULL when
 * the model has no template we understand. */
struct djn_model;
char *djn_chat_format(const struct djn_model *m, const char *user_msg);

#endif
