#include <sysexits.h>
#include "cli/cli.h"
int cli_send(int argc, char **argv) { return EX_SOFTWARE; }
