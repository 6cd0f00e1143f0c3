/* fuzz-cmdline.c - libFuzzer target for the shell's parser and dispatcher:
 * each input is a few command lines fed to a shell that has stories260K
 * loaded and a run started, so commands do real work (print, steer, step,
 * checkpoint, restore ...).  The shell is sandboxed: no file access, no Lua,
 * runs of at most 8 tokens and a bounded number of engine runs, so an input
 * cannot hang the fuzzer or touch the disk.  A fresh shell per input keeps
 * inputs independent and lets LeakSanitizer see every leak.
 *
 * Build and run: scripts/fuzz.sh (make FUZZ=1 CC=clang fuzz-bins builds it).
 * The models are found through DJINN_MODELS, else by walking up from the
 * binary to a directory holding models/stories260K.bin (fuzz.sh runs the
 * target in a scratch directory).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shell/shell_impl.h"

#define MAX_LINES 32
#define MAX_LINE 400

static FILE *devnull;
static char load_line[600];

/* The models directory: $DJINN_MODELS, or models/ in the first directory up
 * from the executable (or the working directory) that has it. */
static const char *models_dir(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("DJINN_MODELS");
	char probe[PATH_MAX + 32];

	if (env)
		return env;
	for (int from = 0; from < 2; from++) {
		if (from == 0) {
			ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
			if (n <= 0)
				continue;
			buf[n] = '\0';
		} else if (!getcwd(buf, sizeof(buf))) {
			continue;
		}
		for (char *slash; (slash = strrchr(buf, '/')); *slash = '\0') {
			snprintf(probe, sizeof(probe), "%s/models/stories260K.bin", buf);
			if (!access(probe, R_OK)) {
				strcat(buf, "/models");
				return buf;
			}
			if (slash == buf)
				break;
		}
	}
	return "models";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = models_dir();

	(void)argc;
	(void)argv;
	snprintf(load_line, sizeof(load_line), "load \"%s/stories260K.bin\" --tokenizer \"%s/tok512.bin\"",
		 dir, dir);
	devnull = fopen("/dev/null", "w");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct djn_shell *sh = djn_shell_new(devnull, devnull);
	char line[MAX_LINE + 1];
	size_t i = 0;
	int n_lines = 0;

	sh->batch = true;
	if (djn_shell_exec(sh, load_line) != DJN_CMD_OK) {
		fprintf(stderr, "fuzz-cmdline: cannot load the model (%s); set DJINN_MODELS\n",
			sh->errmsg);
		abort();
	}
	djn_shell_exec(sh, "start \"Once upon a time\" -n 8");
	sh->sandbox = true;
	sh->run_budget = 400;
	while (i < size && n_lines < MAX_LINES && !sh->quit) {
		size_t n = 0;
		while (i < size && data[i] != '\n' && n < MAX_LINE) {
			/* a NUL would end the line early; let it be a space */
			line[n++] = data[i] ? (char)data[i] : ' ';
			i++;
		}
		while (i < size && data[i] != '\n')
			i++;
		i++;
		line[n] = '\0';
		djn_shell_exec(sh, line);
		n_lines++;
	}
	djn_shell_finish_input(sh);
	djn_shell_free(sh);
	return 0;
}
