/*
 * cli - the subcommands of the mailwarden binary. Each takes the argument
 * vector after the subcommand name and returns the process exit status
 * (sysexits.h values for failures).
 */
#ifndef MW_CLI_CLI_H
#define MW_CLI_CLI_H

int cli_serve(int argc, char **argv);
int cli_spf(int argc, char **argv);
int cli_check(int argc, char **argv);
int cli_dkim(int argc, char **argv);
int cli_verify(int argc, char **argv);

#endif
