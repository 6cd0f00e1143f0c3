/* main.c - the djinn program: dispatch to a subcommand or the shell. */
#include <stdio.h>
#include <string.h>

#include "djinn/mkmodel.h"
#include "djinn/lua.h"
#include "djinn/server.h"
#include "djinn/shell.h"

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "generate"))
		return djn_generate_main(argc - 1, argv + 1);
	if (argc >= 2 && strlen(argv[1]) > 4 && !strcmp(argv[1] + strlen(argv[1]) - 4, ".lua"))
		return djn_lua_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "serve"))
		return djn_serve_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "connect"))
		return djn_connect_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "mkmodel"))
		return djn_mkmodel_main(argc - 1, argv + 1);
	return djn_shell_main(argc, argv);
}
