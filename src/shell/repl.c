/* repl.c - placeholder until the shell lands. */
#include <stdio.h>

#include "djinn/shell.h"

int djn_shell_main(int argc, char **argv)
{
	fprintf(stderr, "usage: djinn generate MODEL ...\n");
	return 2;
}
