#include <sysexits.h>
#include "cli/cli.h"
int cli_user(int argc, char **argv) { return EX_SOFTWARE; }
